"""Hyperspectral backbones: spectral adapter + ResNet-50 / ViT, and no-adapter baselines.

``make_backbone(name, n_bands, rngs=...)`` builds one by name:

================== ======================================================================
name               model
================== ======================================================================
spec-resnet50      adapter (128 ch) -> stride-2 bottleneck 128 -> 256 (replaces the stem)
                   -> ResNet-50 stages; 2048 features, output stride 16
spec-vit-t/s/b     adapter -> ViT-T/S/B, patch 4 (32 x 32 tokens on 128 x 128 patches)
resnet50           ResNet-50 with the ImageNet stem taking all bands; output stride 32
vit-t/s/b          ViT-T/S/B, patch 4, patch embedding taking all bands
spec-vit-tiny      adapter -> ViT width 32, depth 2, 2 heads (tests, CI)
vit-tiny           the same without adapter
spec-resnet-tiny   adapter -> bottleneck stem -> two one-block stages of width 8 (tests, CI)
resnet-tiny        the same with the ImageNet stem on all bands
================== ======================================================================

Every backbone is channels-last: ``backbone(x, train=...)`` gives a pooled embedding
``(b, out_features)`` (ViT: the class token; ResNet: global average pool),
``backbone.feature_map(x, train=...)`` a map ``(b, H/stride, W/stride, out_features)``
for dense heads. Spectral backbones have the same parameters for every band count, so one
pretrained on EnMAP's 202 bands runs on DESIS's 235 (cross-sensor transfer); the baselines'
first layer depends on the band count.
"""

from __future__ import annotations

import dataclasses

from flax import nnx
from jaxtyping import Array, Float

from jaxgeo.nn import VIT_SIZES, ResNet, ViT

from .adapter import ADAPTER_CHANNELS, SpectralAdapter

__all__ = ["BACKBONES", "Backbone", "BackboneSpec", "make_backbone"]


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """How to build a named backbone."""

    kind: str  # "vit" | "resnet"
    adapter: bool
    size: str = "s"  # ViT size key in jaxgeo.nn.VIT_SIZES
    blocks: tuple[int, ...] = (3, 4, 6, 3)
    width: int = 64
    patch: int = 4


_SPECS: dict[str, BackboneSpec] = {}
for _size in ("t", "s", "b"):
    _SPECS[f"spec-vit-{_size}"] = BackboneSpec("vit", True, _size)
    _SPECS[f"vit-{_size}"] = BackboneSpec("vit", False, _size)
_SPECS["spec-vit-tiny"] = BackboneSpec("vit", True, "tiny")
_SPECS["vit-tiny"] = BackboneSpec("vit", False, "tiny")
_SPECS["spec-resnet50"] = BackboneSpec("resnet", True)
_SPECS["resnet50"] = BackboneSpec("resnet", False)
_SPECS["spec-resnet-tiny"] = BackboneSpec("resnet", True, blocks=(1, 1), width=8)
_SPECS["resnet-tiny"] = BackboneSpec("resnet", False, blocks=(1, 1), width=8)

BACKBONES: tuple[str, ...] = tuple(_SPECS)


class Backbone(nnx.Module):
    """Optional spectral adapter followed by an encoder (:class:`ViT` or :class:`ResNet`)."""

    def __init__(self, name: str, spec: BackboneSpec, n_bands: int, *, rngs: nnx.Rngs) -> None:
        self.name = name
        self.spec = spec
        self.n_bands = n_bands
        self.adapter = SpectralAdapter(rngs=rngs) if spec.adapter else None
        cin = ADAPTER_CHANNELS if spec.adapter else n_bands
        self.encoder: ViT | ResNet
        if spec.kind == "vit":
            self.encoder = ViT(cin, VIT_SIZES[spec.size], spec.patch, rngs=rngs)
        else:
            # SpectralEarth replaces the 7x7 stem + max pool by one stride-2 bottleneck
            # 128 -> 256 after the adapter; the baseline keeps the ImageNet stem.
            stem = "bottleneck" if spec.adapter else "image"
            self.encoder = ResNet(cin, spec.blocks, spec.width, stem=stem, rngs=rngs)
        self.out_features = self.encoder.out_features
        self.stride = self.encoder.stride

    @property
    def is_vit(self) -> bool:
        return self.spec.kind == "vit"

    def prepare(self, x: Float[Array, "b h w bands"], *, train: bool = False) -> Array:
        """The encoder's input: the adapter's 128 channels, or the bands themselves."""
        return x if self.adapter is None else self.adapter(x, train=train)

    def feature_map(self, x: Float[Array, "b h w bands"], *, train: bool = False) -> Array:
        return self.encoder.feature_map(self.prepare(x, train=train), train=train)

    def __call__(
        self, x: Float[Array, "b h w bands"], *, train: bool = False
    ) -> Float[Array, "b d"]:
        return self.encoder(self.prepare(x, train=train), train=train)


def make_backbone(name: str, n_bands: int, *, rngs: nnx.Rngs) -> Backbone:
    """The backbone called ``name`` (see the module docstring) for ``n_bands`` input bands.

    Raises:
        ValueError: Unknown name, or too few bands for the spectral adapter.
    """
    if name not in _SPECS:
        raise ValueError(f"unknown backbone {name!r}; expected one of {', '.join(BACKBONES)}")
    spec = _SPECS[name]
    from .adapter import MIN_BANDS

    if spec.adapter and n_bands < MIN_BANDS:
        raise ValueError(
            f"backbone {name} has a spectral adapter, which needs at least {MIN_BANDS} bands; "
            f"got {n_bands}"
        )
    return Backbone(name, spec, n_bands, rngs=rngs)
