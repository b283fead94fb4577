"""jaxgeo.nn: shared model pieces (Flax NNX, channels-last)."""

from .heads import FCNHead as FCNHead
from .heads import LinearHead as LinearHead
from .heads import LinearSegHead as LinearSegHead
from .heads import MLPHead as MLPHead
from .heads import upsample_to as upsample_to
from .resnet import Bottleneck as Bottleneck
from .resnet import ResNet as ResNet
from .swin import SWIN_SIZES as SWIN_SIZES
from .swin import Swin as Swin
from .swin import SwinSize as SwinSize
from .unet import UNet as UNet
from .vit import VIT_SIZES as VIT_SIZES
from .vit import Block as Block
from .vit import PatchEmbed as PatchEmbed
from .vit import ViT as ViT
from .vit import ViTSize as ViTSize
from .vit import sincos_pos_embed_2d as sincos_pos_embed_2d
