"""Self-supervised pretraining objectives: MoCo-v2, DINO, MAE, as pure functions.

Each method is a frozen dataclass of its settings with three parts:

- ``build(backbone, rngs)``: the online network (an NNX module with a ``backbone`` attribute);
- ``init_state(params, rest, key, total_steps)``: what the loss carries besides the trained
  parameters (batch statistics ``rest``, a momentum encoder, a queue, a centre, schedules);
- ``make_loss(mdef)`` and ``make_after_update()``: ``loss(params, state, batch, key) ->
  (loss, (state, metrics))`` and ``after_update(params, state, step) -> state`` for
  :func:`jaxgeo.train.make_train_step`.

Batches are dicts with ``"x"`` (normalised reflectance, ``(b, H, W, bands)``) and optionally
``"x2"``, the same locations on a second date: MoCo then takes its positive pair across dates
(SpectralEarth's multi-temporal positives), each view augmented independently. Augmentations
are spatial only (:mod:`jaxgeo.hsi.augment`).

References: He et al. 2020 and Chen et al. 2020 (MoCo, MoCo-v2); Caron et al. 2021 (DINO);
He et al. 2022 (MAE).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jaxtyping import Array, Float

from jaxgeo.nn import Block, ViT, sincos_pos_embed_2d
from jaxgeo.train import ModuleDef

from .augment import augment_batch
from .backbones import Backbone

__all__ = [
    "DINO",
    "MAE",
    "METHODS",
    "MoCo",
    "dino_loss",
    "ema",
    "infonce_logits",
    "mae_loss",
    "make_method",
    "patchify",
    "random_masking",
    "update_center",
]

PyTree = Any


def ema(teacher: PyTree, student: PyTree, momentum: float | Array) -> PyTree:
    """Exponential moving average ``m * teacher + (1 - m) * student``, leaf by leaf."""
    return jax.tree_util.tree_map(
        lambda t, s: (momentum * t + (1.0 - momentum) * s).astype(t.dtype), teacher, student
    )


def _normalize(z: Array, eps: float = 1e-12) -> Array:
    return z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), eps)


def _cosine_momentum(base: float, step: Array, total_steps: int) -> Array:
    """DINO's teacher momentum schedule: ``base`` rising to 1 along a half cosine."""
    frac = jnp.clip(step.astype(jnp.float32) / max(total_steps, 1), 0.0, 1.0)
    return 1.0 - (1.0 - base) * (jnp.cos(jnp.pi * frac) + 1.0) / 2.0


class MLP(nnx.Module):
    """Linear layers with an activation (and optional batch norm) between them."""

    def __init__(
        self, dims: tuple[int, ...], *, batch_norm: bool = False, act: str = "relu", rngs: nnx.Rngs
    ) -> None:
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims[:-1], dims[1:], strict=True)]
        )
        self.norms = nnx.List(
            [nnx.BatchNorm(b, momentum=0.9, rngs=rngs) for b in dims[1:-1]] if batch_norm else []
        )
        self.act = act

    def __call__(self, x: Array, *, train: bool = False) -> Array:
        act = jax.nn.relu if self.act == "relu" else lambda v: jax.nn.gelu(v, approximate=False)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                if len(self.norms):
                    x = self.norms[i](x, use_running_average=not train)
                x = act(x)
        return x


# ----------------------------------------------------------------------------------------------
# MoCo-v2
# ----------------------------------------------------------------------------------------------


def infonce_logits(
    q: Float[Array, "b d"], k: Float[Array, "b d"], queue: Float[Array, "K d"], temperature: float
) -> Float[Array, "b 1+K"]:
    """MoCo logits: column 0 the positive ``q . k``, then ``q . queue``, all over T."""
    pos = jnp.sum(q * k, axis=-1, keepdims=True)
    neg = q @ queue.T
    return jnp.concatenate([pos, neg], axis=1) / temperature


def enqueue(queue: Array, ptr: Array, keys: Array) -> tuple[Array, Array]:
    """Replace the oldest ``len(keys)`` entries of the ring buffer ``queue`` at ``ptr``."""
    queue = jax.lax.dynamic_update_slice(
        queue, keys.astype(queue.dtype), (ptr, jnp.zeros((), ptr.dtype))
    )
    return queue, (ptr + keys.shape[0]) % queue.shape[0]


def grouped_forward(
    mdef: ModuleDef, params: PyTree, rest: PyTree, x: Array, groups: int
) -> tuple[Array, PyTree]:
    """``model(x, train=True)`` with batch statistics computed over ``groups`` equal,
    consecutive parts of the batch apart (as on that many devices with per-device batch
    norm); the updated running statistics are the mean of the groups'."""
    if groups == 1:
        model = mdef.merge(params, rest)
        return model(x, train=True), mdef.rest(model)

    def one(xg: Array) -> tuple[Array, PyTree]:
        model = mdef.merge(params, rest)
        return model(xg, train=True), mdef.rest(model)

    out, rests = jax.vmap(one)(x.reshape(groups, -1, *x.shape[1:]))

    def mean(a: Array) -> Array:
        return a.mean(0).astype(a.dtype) if jnp.issubdtype(a.dtype, jnp.inexact) else a[0]

    return out.reshape(x.shape[0], *out.shape[2:]), jax.tree_util.tree_map(mean, rests)


class _MoCoNet(nnx.Module):
    def __init__(self, backbone: Backbone, hidden: int, dim: int, *, rngs: nnx.Rngs) -> None:
        self.backbone = backbone
        # MoCo-v2's projector: two linear layers with a ReLU between them.
        self.projector = MLP((backbone.out_features, hidden, dim), rngs=rngs)

    def __call__(self, x: Array, *, train: bool = False) -> Array:
        return _normalize(self.projector(self.backbone(x, train=train), train=train))


@dataclasses.dataclass(frozen=True)
class MoCo:
    """MoCo-v2 settings: InfoNCE against a queue of keys from a momentum encoder.

    Attributes:
        temperature: Softmax temperature (SpectralEarth: 0.1).
        momentum: Key-encoder momentum m in ``k <- m k + (1 - m) q`` (MoCo: 0.999).
        queue_size: Negative keys kept (MoCo: 65,536); must be a multiple of the batch size.
        hidden, dim: Projector widths (MoCo-v2: 2048 -> 128).
        crop_scale: Area range of the random resized crop.
        bn_group: Shuffling batch norm: batches of at least two groups of this many samples
            are split into groups whose batch statistics are computed apart (MoCo's per-GPU
            batch norm, 256 = 8 GPUs x 32); the key encoder sees the batch in a random order
            (restored after it), so a query and its key never share statistics, which would
            let the network cheat on the pretext task. Smaller batches are one group (no
            shuffle); ``0`` turns it off.
    """

    temperature: float = 0.1
    momentum: float = 0.999
    queue_size: int = 65536
    hidden: int = 2048
    dim: int = 128
    crop_scale: tuple[float, float] = (0.2, 1.0)
    bn_group: int = 32

    name = "moco"

    def build(self, backbone: Backbone, rngs: nnx.Rngs) -> nnx.Module:
        return _MoCoNet(backbone, self.hidden, self.dim, rngs=rngs)

    def init_state(
        self, params: PyTree, rest: PyTree, key: jax.Array, total_steps: int = 0
    ) -> dict:
        del total_steps
        queue = _normalize(jax.random.normal(key, (self.queue_size, self.dim), jnp.float32))
        return {
            "rest": rest,
            "key_params": params,
            "key_rest": rest,
            "queue": queue,
            "queue_ptr": jnp.zeros((), jnp.int32),
        }

    def make_loss(self, mdef: ModuleDef) -> Callable:
        temperature = self.temperature

        def loss_fn(params, state, batch, key):
            x = batch["x"]
            x2 = batch.get("x2", x)
            size = x.shape[1]
            k1, k2 = jax.random.split(key)
            v1 = augment_batch(k1, x, size, self.crop_scale)
            v2 = augment_batch(k2, x2, size, self.crop_scale)
            groups = self.groups(x.shape[0])
            q, rest = grouped_forward(mdef, params, state["rest"], v1, groups)
            if groups > 1:  # shuffle BN: the keys' groups mix other samples than the queries'
                perm = jax.random.permutation(jax.random.fold_in(key, 1), x.shape[0])
                k, key_rest = grouped_forward(
                    mdef, state["key_params"], state["key_rest"], v2[perm], groups
                )
                k = k[jnp.argsort(perm)]
            else:
                k, key_rest = grouped_forward(mdef, state["key_params"], state["key_rest"], v2, 1)
            k = jax.lax.stop_gradient(k)
            logits = infonce_logits(q, k, state["queue"], temperature)
            labels = jnp.zeros(x.shape[0], jnp.int32)
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            queue, ptr = enqueue(state["queue"], state["queue_ptr"], k)
            new_state = {**state, "rest": rest, "key_rest": key_rest, "queue": queue,
                         "queue_ptr": ptr}  # fmt: skip
            acc = jnp.mean((jnp.argmax(logits, axis=1) == 0).astype(jnp.float32))
            return loss, (new_state, {"top1": acc})

        return loss_fn

    def groups(self, batch: int) -> int:
        """Batch-norm groups of a batch of ``batch`` samples (see ``bn_group``)."""
        if self.bn_group <= 0 or batch < 2 * self.bn_group:
            return 1
        if batch % self.bn_group:
            raise ValueError(
                f"moco bn_group={self.bn_group}: the batch size {batch} must be a multiple of "
                "it (or set bn_group=0 for one batch-norm group)"
            )
        return batch // self.bn_group

    def make_after_update(self, total_steps: int = 0) -> Callable:
        del total_steps

        def after(params, state, step):
            del step
            return {**state, "key_params": ema(state["key_params"], params, self.momentum)}

        return after


# ----------------------------------------------------------------------------------------------
# DINO
# ----------------------------------------------------------------------------------------------


class _DINOHead(nnx.Module):
    """MLP -> L2-normalised bottleneck -> weight-normalised linear layer (scale fixed at 1)."""

    def __init__(self, cin: int, out_dim: int, hidden: int, bottleneck: int, *, rngs: nnx.Rngs):
        self.mlp = MLP((cin, hidden, hidden, bottleneck), act="gelu", rngs=rngs)
        self.last = nnx.Param(
            nnx.initializers.truncated_normal(0.02)(
                rngs.params(), (bottleneck, out_dim), jnp.float32
            )
        )

    def __call__(self, x: Array, *, train: bool = False) -> Array:
        z = _normalize(self.mlp(x, train=train))
        w = self.last[...]
        return z @ (w / jnp.linalg.norm(w, axis=0, keepdims=True))


class _DINONet(nnx.Module):
    def __init__(self, backbone: Backbone, head: _DINOHead) -> None:
        self.backbone = backbone
        self.head = head

    def __call__(self, x: Array, *, train: bool = False) -> Array:
        return self.head(self.backbone(x, train=train), train=train)


def dino_loss(
    student: Float[Array, "ns b k"],
    teacher: Float[Array, "nt b k"],
    center: Float[Array, " k"],
    student_temp: float,
    teacher_temp: float,
) -> Float[Array, ""]:
    """Cross-entropy between sharpened, centred teacher and student distributions, averaged
    over all (teacher crop, student crop) pairs of different crops; crop i < nt of the student
    is the same view as teacher crop i."""
    t = jax.nn.softmax((teacher - center) / teacher_temp, axis=-1)
    log_s = jax.nn.log_softmax(student / student_temp, axis=-1)
    # ce[i, j] = mean over batch of -sum t_i log s_j
    ce = -jnp.einsum("ibk,jbk->ij", t, log_s) / student.shape[1]
    nt, ns = teacher.shape[0], student.shape[0]
    off_diag = 1.0 - jnp.eye(nt, ns, dtype=ce.dtype)
    return jnp.sum(ce * off_diag) / jnp.sum(off_diag)


def update_center(
    center: Float[Array, " k"], teacher: Float[Array, "nt b k"], momentum: float
) -> Float[Array, " k"]:
    """DINO's centre: ``c <- m c + (1 - m) * mean of the teacher outputs over crops and batch``."""
    new = momentum * center + (1.0 - momentum) * jnp.mean(teacher, axis=(0, 1))
    return new.astype(center.dtype)


@dataclasses.dataclass(frozen=True)
class DINO:
    """DINO settings: self-distillation with a momentum teacher, centering and sharpening.

    Attributes:
        out_dim: Prototypes (DINO: 65,536).
        hidden, bottleneck: Head widths (2048, 256).
        student_temp, teacher_temp: Softmax temperatures (0.1, 0.04).
        center_momentum: ``c <- m c + (1 - m) mean(teacher)`` (0.9).
        momentum: Teacher momentum at the start, rising to 1 along a cosine (0.996).
        n_local: Local crops besides the two global ones (multi-crop).
        global_scale, local_scale: Area ranges of global and local crops.
        local_frac: Local crop side as a fraction of the patch side (96/224 in DINO).
        warmup_teacher_temp, teacher_temp_warmup: The teacher temperature rises linearly
            from ``warmup_teacher_temp`` to ``teacher_temp`` over this fraction of the
            training steps (DINO's ``warmup_teacher_temp_epochs`` / epochs: 0 by default,
            30/300 in its ViT recipes).
        freeze_last_layer: The prototype layer gets no gradient for this fraction of the
            training steps (DINO: its first epoch of 100, which stabilises the start).
    """

    out_dim: int = 65536
    hidden: int = 2048
    bottleneck: int = 256
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    center_momentum: float = 0.9
    momentum: float = 0.996
    n_local: int = 6
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    local_frac: float = 96 / 224
    warmup_teacher_temp: float = 0.04
    teacher_temp_warmup: float = 0.0
    freeze_last_layer: float = 0.01

    name = "dino"

    def schedules(self, step: Array, total_steps: int) -> tuple[Array, Array]:
        """``(teacher temperature, 1.0 while the last layer is frozen else 0.0)`` at ``step``
        of ``total_steps`` (0: unknown length, no warm-up and no freezing)."""
        s = jnp.asarray(step, jnp.float32)
        warm = int(self.teacher_temp_warmup * total_steps)
        temp = jnp.float32(self.teacher_temp)
        if warm > 0:
            ramp = self.warmup_teacher_temp + (self.teacher_temp - self.warmup_teacher_temp) * (
                s / warm
            )
            temp = jnp.where(s < warm, ramp, temp)
        frozen = (s < int(self.freeze_last_layer * total_steps)).astype(jnp.float32)
        return temp.astype(jnp.float32), frozen

    def build(self, backbone: Backbone, rngs: nnx.Rngs) -> nnx.Module:
        head = _DINOHead(
            backbone.out_features, self.out_dim, self.hidden, self.bottleneck, rngs=rngs
        )
        return _DINONet(backbone, head)

    def init_state(
        self, params: PyTree, rest: PyTree, key: jax.Array, total_steps: int = 0
    ) -> dict:
        del key
        temp, frozen = self.schedules(jnp.zeros((), jnp.int32), total_steps)
        return {
            "rest": rest,
            "teacher_params": params,
            "teacher_rest": rest,
            "center": jnp.zeros((self.out_dim,), jnp.float32),
            "teacher_temp": temp,  # at the next step: set by after_update from then on
            "freeze_last": frozen,
        }

    def local_size(self, size: int, multiple: int = 4) -> int:
        """Side of local crops: ``local_frac * size`` rounded down to a multiple of ``multiple``."""
        return max(multiple, int(size * self.local_frac) // multiple * multiple)

    def make_loss(self, mdef: ModuleDef) -> Callable:
        def loss_fn(params, state, batch, key):
            x = batch["x"]
            b, size = x.shape[0], x.shape[1]
            keys = jax.random.split(key, 2 + self.n_local)
            glob = jnp.concatenate(
                [augment_batch(keys[i], x, size, self.global_scale) for i in range(2)]
            )
            # The prototype layer frozen: its gradient is zero (stop_gradient where frozen).
            last = params["head"]["last"]
            frozen = state["freeze_last"] > 0
            params = {**params, "head": {**params["head"],
                      "last": jnp.where(frozen, jax.lax.stop_gradient(last), last)}}  # fmt: skip
            student = mdef.merge(params, state["rest"])
            teacher = mdef.merge(state["teacher_params"], state["teacher_rest"])
            t_out = jax.lax.stop_gradient(teacher(glob, train=True)).reshape(2, b, -1)
            s_out = [student(glob, train=True).reshape(2, b, -1)]
            if self.n_local:
                ls = self.local_size(size)
                loc = jnp.concatenate(
                    [
                        augment_batch(keys[2 + i], x, ls, self.local_scale)
                        for i in range(self.n_local)
                    ]
                )
                s_out.append(student(loc, train=True).reshape(self.n_local, b, -1))
            s_all = jnp.concatenate(s_out)
            loss = dino_loss(s_all, t_out, state["center"], self.student_temp,
                             state["teacher_temp"])  # fmt: skip
            center = update_center(state["center"], t_out, self.center_momentum)
            new_state = {
                **state,
                "rest": mdef.rest(student),
                "teacher_rest": mdef.rest(teacher),
                "center": center,
            }
            return loss, (new_state, {})

        return loss_fn

    def make_after_update(self, total_steps: int = 0) -> Callable:
        def after(params, state, step):
            m = _cosine_momentum(self.momentum, step, total_steps) if total_steps else self.momentum
            temp, frozen = self.schedules(step + 1, total_steps)  # for the next step
            return {**state, "teacher_params": ema(state["teacher_params"], params, m),
                    "teacher_temp": temp, "freeze_last": frozen}  # fmt: skip

        return after


# ----------------------------------------------------------------------------------------------
# MAE
# ----------------------------------------------------------------------------------------------


def patchify(x: Float[Array, "b h w c"], p: int) -> Float[Array, "b n pxpxc"]:
    """Non-overlapping ``p x p`` patches in row-major order, each flattened ``(p, p, c)``."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def n_visible(n_patches: int, mask_ratio: float) -> int:
    """Patches left visible: ``int(n * (1 - mask_ratio))`` as MAE, at least one."""
    return max(1, int(n_patches * (1.0 - mask_ratio)))


def random_masking(key: jax.Array, b: int, n: int, mask_ratio: float) -> tuple[Array, Array, Array]:
    """Per-sample random shuffles of ``n`` patches.

    Returns:
        ``(keep_idx (b, n_keep), restore_idx (b, n), mask (b, n))``: indices of the visible
        patches, the permutation that puts shuffled tokens back in order, and the mask
        (1 = masked, 0 = visible) in the original order.
    """
    n_keep = n_visible(n, mask_ratio)
    noise = jax.random.uniform(key, (b, n), jnp.float32)
    shuffle = jnp.argsort(noise, axis=1)
    restore = jnp.argsort(shuffle, axis=1)
    mask_shuffled = (jnp.arange(n)[None, :] >= n_keep).astype(jnp.float32)
    mask = jnp.take_along_axis(jnp.broadcast_to(mask_shuffled, (b, n)), restore, axis=1)
    return shuffle[:, :n_keep], restore, mask


def mae_loss(
    pred: Float[Array, "b n d"], target: Float[Array, "b n d"], mask: Float[Array, "b n"]
) -> Float[Array, ""]:
    """Mean squared error per patch, averaged over the masked patches only."""
    per_patch = jnp.mean((pred - target) ** 2, axis=-1)
    return jnp.sum(per_patch * mask) / jnp.sum(mask)


def normalized_patches(x: Array, p: int, eps: float = 1e-6) -> Array:
    """MAE's target: each patch's values normalised by its own mean and variance."""
    t = patchify(x, p)
    mean = jnp.mean(t, axis=-1, keepdims=True)
    var = jnp.var(t, axis=-1, keepdims=True)
    return (t - mean) / jnp.sqrt(var + eps)


class _MAENet(nnx.Module):
    def __init__(
        self,
        backbone: Backbone,
        n_bands: int,
        dec_width: int,
        dec_depth: int,
        dec_heads: int,
        *,
        rngs: nnx.Rngs,
    ) -> None:
        if not backbone.is_vit:
            raise ValueError(f"MAE needs a ViT backbone, got {backbone.name}")
        self.backbone = backbone
        vit = backbone.encoder
        assert isinstance(vit, ViT)
        self.patch = vit.patch
        self.dec_width = dec_width
        self.dec_embed = nnx.Linear(vit.width, dec_width, rngs=rngs)
        self.mask_token = nnx.Param(
            0.02 * jax.random.normal(rngs.params(), (1, 1, dec_width), jnp.float32)
        )
        self.dec_blocks = nnx.List(
            [Block(dec_width, dec_heads, rngs=rngs) for _ in range(dec_depth)]
        )
        self.dec_norm = nnx.LayerNorm(dec_width, epsilon=1e-6, rngs=rngs)
        # Reconstruct every band of every pixel of the patch (the input spectra).
        self.dec_pred = nnx.Linear(dec_width, self.patch * self.patch * n_bands, rngs=rngs)

    def __call__(
        self, x: Array, key: jax.Array, mask_ratio: float, *, train: bool = False
    ) -> tuple[Array, Array]:
        vit = self.backbone.encoder
        assert isinstance(vit, ViT)
        tokens, gh, gw = vit.embed_patches(self.backbone.prepare(x, train=train))
        b, n, d = tokens.shape
        keep, restore, mask = random_masking(key, b, n, mask_ratio)
        visible = jnp.take_along_axis(tokens, keep[:, :, None], axis=1)
        latent = vit.encode(visible)  # class token first
        y = self.dec_embed(latent)
        n_mask = n - keep.shape[1]
        masks = jnp.broadcast_to(self.mask_token[...].astype(y.dtype), (b, n_mask, self.dec_width))
        y_ = jnp.concatenate([y[:, 1:], masks], axis=1)
        y_ = jnp.take_along_axis(y_, restore[:, :, None], axis=1)
        y_ = y_ + jnp.asarray(sincos_pos_embed_2d(gh, gw, self.dec_width), y.dtype)[None]
        y = jnp.concatenate([y[:, :1], y_], axis=1)
        for block in self.dec_blocks:
            y = block(y)
        return self.dec_pred(self.dec_norm(y))[:, 1:], mask


@dataclasses.dataclass(frozen=True)
class MAE:
    """MAE settings: reconstruct the normalised spectra of masked patches from visible ones.

    Attributes:
        mask_ratio: Fraction of patches masked (SpectralEarth: 0.9).
        dec_width, dec_depth, dec_heads: Decoder size (MAE: 512, 8, 16).
        crop_scale: Area range of the random resized crop.
    """

    mask_ratio: float = 0.9
    dec_width: int = 512
    dec_depth: int = 8
    dec_heads: int = 16
    crop_scale: tuple[float, float] = (0.2, 1.0)

    name = "mae"

    def build(self, backbone: Backbone, rngs: nnx.Rngs) -> nnx.Module:
        return _MAENet(
            backbone, backbone.n_bands, self.dec_width, self.dec_depth, self.dec_heads, rngs=rngs
        )

    def init_state(
        self, params: PyTree, rest: PyTree, key: jax.Array, total_steps: int = 0
    ) -> dict:
        del params, key, total_steps
        return {"rest": rest}

    def make_loss(self, mdef: ModuleDef) -> Callable:
        def loss_fn(params, state, batch, key):
            x = batch["x"]
            k_aug, k_mask = jax.random.split(key)
            view = augment_batch(k_aug, x, x.shape[1], self.crop_scale)
            model = mdef.merge(params, state["rest"])
            pred, mask = model(view, k_mask, self.mask_ratio, train=True)
            target = normalized_patches(view, model.patch)
            loss = mae_loss(pred, target, mask)
            return loss, ({**state, "rest": mdef.rest(model)}, {})

        return loss_fn

    def make_after_update(self, total_steps: int = 0) -> None:
        del total_steps
        return None


METHODS: tuple[str, ...] = ("moco", "dino", "mae")


def make_method(name: str, **settings: Any) -> MoCo | DINO | MAE:
    """The method called ``name`` with ``settings`` overriding its defaults.

    Raises:
        ValueError: Unknown method or setting.
    """
    classes: dict[str, type] = {"moco": MoCo, "dino": DINO, "mae": MAE}
    if name not in classes:
        raise ValueError(f"unknown SSL method {name!r}; expected one of {', '.join(METHODS)}")
    cls = classes[name]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(settings) - known
    if unknown:
        raise ValueError(
            f"unknown {name} settings {sorted(unknown)}; expected some of {sorted(known)}"
        )
    return cls(**settings)


def backbone_of(params: PyTree, rest: PyTree) -> tuple[PyTree, PyTree]:
    """The backbone's parameters and batch statistics inside an online network's."""
    return params["backbone"], rest.get("backbone", {})
