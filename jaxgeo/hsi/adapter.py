"""The spectral adapter of SpectralEarth (Braham et al. 2025): any band count -> 128 channels.

Each pixel's spectrum is treated as a 1-D signal with one channel and passed through three
1-D convolutions along the spectral axis only (the same weights for every pixel):

    1 -> 32 (kernel 7, stride 5), 32 -> 64 (kernel 7, stride 5), 64 -> 128 (kernel 5, stride 3),

each with padding 1, then batch norm and ReLU; the spectral axis that is left is averaged
away. The output length of a convolution is ``floor((L + 2 - k) / s) + 1``, so EnMAP's 202
bands become 40 -> 8 -> 2 -> (pooled) 1, DESIS's 235 become 47 -> 9 -> 3, Hyperion's 198 become
39 -> 7 -> 2. Below 75 bands the last convolution has no output position left, so 75 is the
smallest band count the adapter takes.

Parameter count: 56,192 = convolution weights and biases (224 + 32, 14,336 + 64, 40,960 +
128) plus the batch-norm scale and bias (2 x (32 + 64 + 128) = 448). This is what PyTorch's
``sum(p.numel() for p in model.parameters())`` reports for the published module (running
means and variances are buffers, not parameters); in NNX they are ``BatchStat`` variables and
are not counted either.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

__all__ = ["ADAPTER_CHANNELS", "MIN_BANDS", "SpectralAdapter", "adapter_lengths"]

ADAPTER_CHANNELS = 128
# (out channels, kernel, stride) of the three spectral convolutions; padding 1 each.
_LAYERS = ((32, 7, 5), (64, 7, 5), (128, 5, 3))
_PAD = 1
MIN_BANDS = 75  # fewest bands leaving one output position after the third convolution


def adapter_lengths(n_bands: int) -> tuple[int, ...]:
    """Spectral lengths after each convolution, e.g. ``202 -> (40, 8, 2)``."""
    lengths = []
    length = n_bands
    for _, k, s in _LAYERS:
        length = (length + 2 * _PAD - k) // s + 1
        lengths.append(length)
    return tuple(lengths)


class SpectralAdapter(nnx.Module):
    """Per-pixel spectral 1-D CNN: ``(batch, H, W, bands) -> (batch, H, W, 128)``.

    Args:
        rngs: Initialisation randomness.

    Call with ``train=True`` to normalise with batch statistics (and update the running
    averages), ``train=False`` (default) to use the running averages. Batch statistics are
    taken over batch, pixels and spectral positions, as ``BatchNorm1d`` does for
    ``(pixels, channels, length)`` inputs.
    """

    def __init__(self, *, rngs: nnx.Rngs) -> None:
        convs, norms = [], []
        cin = 1
        for cout, k, s in _LAYERS:
            convs.append(
                nnx.Conv(cin, cout, (k,), strides=(s,), padding=((_PAD, _PAD),), rngs=rngs)
            )
            norms.append(nnx.BatchNorm(cout, momentum=0.9, epsilon=1e-5, rngs=rngs))
            cin = cout
        self.convs = nnx.List(convs)
        self.norms = nnx.List(norms)
        self.out_features = ADAPTER_CHANNELS

    def __call__(
        self, x: Float[Array, "b h w bands"], *, train: bool = False
    ) -> Float[Array, "b h w 128"]:
        b, h, w, n = x.shape
        if adapter_lengths(n)[-1] < 1:
            raise ValueError(f"the spectral adapter needs at least {MIN_BANDS} bands, got {n}")
        y = x.reshape(b * h * w, n, 1)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            y = jax.nn.relu(norm(conv(y), use_running_average=not train))
        return jnp.mean(y, axis=1).reshape(b, h, w, ADAPTER_CHANNELS)
