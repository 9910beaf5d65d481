"""DAN+ (Zhang et al., ECCVW'16) on a VGG16-topology backbone, as docs/method.md §1.

The backbone is VGG16's 13 conv layers (optionally with batch norm, optionally with every
channel width divided by ``width_divisor`` for CPU demos). The head takes relu5_2 and
pool5, pools each by average AND max, L2-normalises the four vectors, concatenates them,
and maps them with one linear layer and a sigmoid to the five traits.

The CAM variant (:class:`DanCam`, ``head: cam``; docs/method.md §2) keeps the backbone up to
relu5_3, adds one 3x3 conv layer (``cam_channels`` maps A_k, ReLU), averages each map
globally and maps the averages with one linear layer and a sigmoid to the traits, so
that trait t's class activation map is CAM_t = sum_k w_{k,t} A_k (Zhou et al. CVPR'16).

Layers are named like the paper's MatConvNet net (conv1_1 ... conv5_3, relu*, pool1 ...
pool5) so activations can be asked for by name; "conv5_3" in :meth:`VggBackbone.run`
means that layer's output after its ReLU, the activation the interpretability analyses use.

Input: RGB images N x 3 x S x S, uint8 or float in 0..255; the model subtracts the mean
and scales itself, so loaders and analyses hand it raw pixels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from traitlens.core.config import from_section
from traitlens.ingest.labels import BIG_FIVE

# (convs per block, channels) of VGG16
VGG16_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
CONV_LAYERS = tuple(
    f"conv{b + 1}_{i + 1}" for b, (n, _) in enumerate(VGG16_BLOCKS) for i in range(n)
)
TRAIT_ORDER = BIG_FIVE  # the order of the outputs
# VGG-Face's RGB training mean (the authors' input normalisation)
VGG_FACE_MEAN = (129.1863, 104.7624, 93.5940)


@dataclass(frozen=True)
class DanConfig:
    """Architecture and input normalisation (config ``models.visual``)."""

    width_divisor: int = 1  # 1 = VGG16; 4 = every conv has a quarter of the channels
    batch_norm: bool = False
    input_size: int = 224
    mean_rgb: tuple[float, float, float] = VGG_FACE_MEAN
    input_scale: float = 1.0  # (pixel - mean) * input_scale
    # dataset_mean: subtract mean_rgb (the paper); per_image: remove each image's own mean
    # and contrast instead, so global lighting changes need not be learned from few examples
    input_norm: str = "dataset_mean"
    head: str = "dan_plus"  # dan_plus (docs/method.md §1) | cam (docs/method.md §2)
    cam_channels: int = 1024  # maps of the CAM variant's extra conv layer (before width_divisor)
    # input pixels per CAM cell: 16 = VGG16 to conv5_3 (Zhou et al.), 8 = pool4 dropped too
    cam_map_stride: int = 16
    n_outputs: int = len(TRAIT_ORDER)

    @classmethod
    def from_mapping(cls, values: Mapping) -> DanConfig:
        """From a model's validated settings (models.visual with models.<model> on top)."""
        return from_section(cls, values, "models.<model>")

    def widths(self) -> list[int]:
        return [max(1, c // self.width_divisor) for _, c in VGG16_BLOCKS]

    def cam_width(self) -> int:
        return max(1, self.cam_channels // self.width_divisor)


def _backbone_layers(widths: list[int], batch_norm: bool) -> list[tuple[str, nn.Module]]:
    layers: list[tuple[str, nn.Module]] = []
    in_ch = 3
    for b, ((n_convs, _), out_ch) in enumerate(zip(VGG16_BLOCKS, widths, strict=True)):
        for i in range(n_convs):
            name = f"{b + 1}_{i + 1}"
            layers.append((f"conv{name}", nn.Conv2d(in_ch, out_ch, 3, padding=1)))
            if batch_norm:
                layers.append((f"bn{name}", nn.BatchNorm2d(out_ch)))
            layers.append((f"relu{name}", nn.ReLU(inplace=False)))
            in_ch = out_ch
        layers.append((f"pool{b + 1}", nn.MaxPool2d(2, 2)))
    return layers


class VggBackbone(nn.Sequential):
    """VGG16 conv layers with named children (conv1_1, relu1_1, ..., pool5)."""

    def __init__(self, widths: list[int], batch_norm: bool):
        from collections import OrderedDict

        super().__init__(OrderedDict(_backbone_layers(widths, batch_norm)))

    def run(self, x: torch.Tensor, wanted: Iterable[str]) -> dict[str, torch.Tensor]:
        """Activations at the ``wanted`` layers (a conv name means its ReLU output); stops
        after the last one needed."""
        wanted = {_child_name(w) for w in wanted}
        out: dict[str, torch.Tensor] = {}
        for name, module in self.named_children():
            x = module(x)
            if name in wanted:
                out[name] = x
                if len(out) == len(wanted):
                    break
        return {_public_name(k): v for k, v in out.items()}


def _child_name(layer: str) -> str:
    return "relu" + layer[4:] if layer.startswith("conv") else layer


def _public_name(child: str) -> str:
    return "conv" + child[4:] if child.startswith("relu") else child


class DanPlus(nn.Module):
    """DAN+: VGG16 backbone, avg+max pooling of relu5_2 and pool5, L2-norm, linear, sigmoid."""

    def __init__(self, cfg: DanConfig):
        super().__init__()
        self.cfg = cfg
        widths = cfg.widths()
        self.backbone = VggBackbone(widths, cfg.batch_norm)
        self.register_buffer(
            "mean", torch.tensor(cfg.mean_rgb, dtype=torch.float32).view(1, 3, 1, 1)
        )
        self.input_scale = float(cfg.input_scale)
        self.head = nn.Linear(4 * widths[-1], cfg.n_outputs)

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.float()
        if self.cfg.input_norm == "per_image":  # mean_rgb and input_scale do not apply
            x = x - x.mean(dim=(1, 2, 3), keepdim=True)
            return x / x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
        return (x - self.mean) * self.input_scale

    def pooled(self, pixels: torch.Tensor) -> torch.Tensor:
        """The 4*C descriptor: [avg(relu5_2), max(relu5_2), avg(pool5), max(pool5)], each
        L2-normalised."""
        acts = self.backbone.run(self.normalise(pixels), ("conv5_2", "pool5"))
        parts = []
        for name in ("conv5_2", "pool5"):
            a = acts[name]
            parts.append(F.normalize(a.mean(dim=(2, 3)), dim=1))
            parts.append(F.normalize(a.amax(dim=(2, 3)), dim=1))
        return torch.cat(parts, dim=1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.pooled(pixels)))

    def activations(self, pixels: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """Backbone activations by layer name (conv names mean post-ReLU)."""
        return self.backbone.run(self.normalise(pixels), layers)


class DanCam(DanPlus):
    """The CAM variant: backbone to relu5_3, a 3x3 conv + ReLU to ``cam_width`` maps,
    global average pooling, linear, sigmoid. Same input contract as :class:`DanPlus`.
    With ``cam_map_stride`` 8, pool4 is an identity: conv5 runs at twice the resolution,
    as Zhou et al. remove layers so that the maps stay fine enough to localise."""

    def __init__(self, cfg: DanConfig):
        super().__init__(cfg)
        if cfg.cam_map_stride not in (8, 16):
            raise ValueError(f"cam_map_stride must be 8 or 16, got {cfg.cam_map_stride}")
        if cfg.cam_map_stride == 8:
            # no parameters in a pool layer: weights files load the same either way
            self.backbone.pool4 = nn.Identity()
        width = cfg.cam_width()
        self.cam_conv = nn.Conv2d(cfg.widths()[-1], width, 3, padding=1)
        self.head = nn.Linear(width, cfg.n_outputs)

    def cam_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """A_k: the extra conv layer's maps after its ReLU, N x K x h x w (h = S /
        cam_map_stride)."""
        a = self.backbone.run(self.normalise(pixels), ("conv5_3",))["conv5_3"]
        return F.relu(self.cam_conv(a))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.cam_features(pixels).mean(dim=(2, 3))))

    def class_activation_maps(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(CAM_t = sum_k w_{k,t} A_k as N x T x h x w, predictions N x T). The mean of
        CAM_t plus the bias is trait t's logit, so the map splits the score over space."""
        a = self.cam_features(pixels)
        cams = torch.einsum("tk,nkhw->nthw", self.head.weight, a)
        pred = torch.sigmoid(cams.mean(dim=(2, 3)) + self.head.bias)
        return cams, pred


HEADS = {"dan_plus": DanPlus, "cam": DanCam}


def make_model(cfg: DanConfig) -> DanPlus:
    """The network ``cfg.head`` names (freshly initialised)."""
    if cfg.head not in HEADS:
        raise ValueError(f"unknown head {cfg.head!r}; expected one of {sorted(HEADS)}")
    return HEADS[cfg.head](cfg)
