"""``ConditionalUNet``: a diffusers ``UNet2DModel`` conditioned on the 24-class multi-hot label (``concat`` or
``embed``), optionally a canvas model that adds one object to an image (``canvas``, ``layout``); see
docs/training-and-sampling.md."""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin, UNet2DModel
from diffusers.configuration_utils import register_to_config
from torch import nn

from .choices import CONDITIONINGS
from .labels import NUM_CLASSES

LAYOUT_PER_CLASS = 256  # boxes a layout model keeps per class (a fixed buffer shape, so saved models load)


@dataclass
class ModelConfig:
    """Architecture of a ``ConditionalUNet``; saved in every run's ``config.json``."""

    sample_size: int = 64  # the training resolution; sampling resizes its images to 64x64 for the course outputs
    patch_size: int = 1    # p x p pixels folded into channels around the UNet, which runs at sample_size / p
    block_out_channels: tuple[int, ...] = (64, 128, 128, 256)
    attention_levels: tuple[int, ...] = (2, 3)  # indices into block_out_channels that get self-attention
    layers_per_block: int = 2
    conditioning: str = "embed"
    attention_head_dim: int = 8
    norm_num_groups: int = 32
    dropout: float = 0.0
    scale_shift: bool = False  # AdaGN: the time/label embedding scales and shifts each block's features
    canvas: bool = False       # add one object to a canvas image (i-CLEVR's one-object-at-a-time structure)
    layout: bool = False       # canvas models: also take the object's box as one more input channel
    crop: int = 0              # layout models: draw each object in a crop x crop window around its box, told where
                               # the window lies (2 position channels); 0: the whole frame
    zoom: float = 0.0          # crop models: the window spans zoom times the box's longer side, resampled to crop x
                               # crop (cddpm.canvas.zoomed); 0: crop x crop pixels of the frame as they are

    def __post_init__(self):
        self.block_out_channels = tuple(int(c) for c in self.block_out_channels)
        self.attention_levels = tuple(int(i) for i in self.attention_levels)
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"unknown conditioning {self.conditioning!r}; use one of {', '.join(CONDITIONINGS)}")
        bad = [i for i in self.attention_levels if not 0 <= i < len(self.block_out_channels)]
        if bad:
            raise ValueError(f"attention_levels {bad} outside 0..{len(self.block_out_channels) - 1}; "
                             "index the levels of block_out_channels")
        if self.patch_size < 1 or self.sample_size % self.patch_size:
            raise ValueError(f"patch_size={self.patch_size} must be >= 1 and divide sample_size={self.sample_size}")
        if self.layout and not self.canvas:
            raise ValueError("layout=True needs canvas=True: the box says where a canvas model adds its object")
        if self.crop and not (self.layout and 0 < self.crop <= self.sample_size and self.crop % self.patch_size == 0):
            raise ValueError(f"crop={self.crop} needs layout=True and a side from 1 to sample_size={self.sample_size} "
                             f"that patch_size={self.patch_size} divides; 0 draws whole frames")
        if self.zoom < 0 or self.zoom and not self.crop:
            raise ValueError(f"zoom={self.zoom} needs crop > 0 and zoom >= 0; 0 cuts crop x crop pixels as they are")
        odd = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if odd:
            raise ValueError(f"block_out_channels {odd} not divisible by norm_num_groups={self.norm_num_groups}; "
                             "change one of them")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# CPU widths at 64x64 (a 2x2 pixel-unshuffle stem: the UNet runs on a 32x32 grid), AdaGN scale-shift, drawing one
# object at a time onto a canvas
_CANVAS64 = ModelConfig(sample_size=64, patch_size=2, scale_shift=True, canvas=True,
                        block_out_channels=(32, 64, 64, 128), attention_levels=(3,), layers_per_block=1,
                        norm_num_groups=16)
PRESETS: dict[str, ModelConfig] = {
    "canvas64": _CANVAS64,
    # canvas64 told where each object goes (a box from the training layouts of its class)
    "layout64": dataclasses.replace(_CANVAS64, layout=True),
    # layout64 drawing each object in a 32x32 window around its box at full resolution, told where the window lies:
    # the same UNet grid, so about the same cost per step (docs/ablations.md)
    "crop64": dataclasses.replace(_CANVAS64, layout=True, patch_size=1, crop=32),
    # crop64 drawing each object in a window 1.25 times its box, resampled to 24x24: every object at about one size,
    # whole, at 0.6 of the cost per step (docs/ablations.md): the default
    "zoom64": dataclasses.replace(_CANVAS64, layout=True, patch_size=1, crop=24, zoom=1.25),
    # the layout design at GPU widths, full resolution; fits a 16 GB T4 at batch 64 in fp16
    "colab": ModelConfig(block_out_channels=(64, 128, 256, 256), attention_levels=(2, 3), layers_per_block=2,
                         scale_shift=True, canvas=True, layout=True),
    # the course reference: 6 levels, attention at the fifth, 24 concatenated label channels
    "reference": ModelConfig(block_out_channels=(128, 128, 256, 256, 512, 512), attention_levels=(4,),
                             layers_per_block=2, conditioning="concat"),
}


def override(config: ModelConfig, **overrides) -> ModelConfig:
    """``config`` with some fields replaced; unknown field names give a one-line error."""
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown model field(s) {unknown}; valid fields: {', '.join(sorted(fields))}")
    return dataclasses.replace(config, **overrides)


def preset(name: str, **overrides) -> ModelConfig:
    """A preset's config with any fields overridden."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
    return override(PRESETS[name], **overrides)


_BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def parse_overrides(pairs: list[str]) -> dict:
    """``["block_out_channels=32,64,64", "canvas=false"]`` -> typed field values (tuples split on commas)."""
    defaults = ModelConfig()
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not hasattr(defaults, key):
            fields = ", ".join(f.name for f in dataclasses.fields(ModelConfig))
            raise ValueError(f"bad model override {pair!r}; write FIELD=VALUE with FIELD one of {fields}")
        kind, value = type(getattr(defaults, key)), value.strip()
        try:
            out[key] = (tuple(int(v) for v in value.split(",") if v.strip()) if kind is tuple
                        else value if kind is str else _BOOLS[value.lower()] if kind is bool else kind(value))
        except (ValueError, KeyError):
            takes = {tuple: "comma-separated integers", bool: "true or false"}.get(kind, f"a {kind.__name__}")
            raise ValueError(f"bad value in model override {pair!r}; {key} takes {takes}") from None
    return out


def _accepts_spec(init: Callable) -> Callable:
    """Let ``ConditionalUNet(spec)`` stand for ``ConditionalUNet(**spec.to_dict())``; the signature that diffusers
    reads (``inspect.signature`` follows ``__wrapped__``) stays the keyword fields."""

    @functools.wraps(init)
    def wrapper(self, spec: ModelConfig | None = None, /, **fields) -> None:
        init(self, **{**(spec.to_dict() if spec is not None else {}), **fields})

    return wrapper


class ConditionalUNet(ModelMixin, ConfigMixin):
    """Predicts the noise (or v) of ``x_t`` at timestep ``t`` given multi-hot ``labels`` (zeros = null) and, for a
    canvas model, the ``canvas`` that ``x_0`` adds the labelled object to; a diffusers ``ModelMixin``."""

    @_accepts_spec
    @register_to_config
    def __init__(self, sample_size: int = ModelConfig.sample_size, patch_size: int = ModelConfig.patch_size,
                 block_out_channels: tuple[int, ...] = ModelConfig.block_out_channels,
                 attention_levels: tuple[int, ...] = ModelConfig.attention_levels,
                 layers_per_block: int = ModelConfig.layers_per_block, conditioning: str = ModelConfig.conditioning,
                 attention_head_dim: int = ModelConfig.attention_head_dim,
                 norm_num_groups: int = ModelConfig.norm_num_groups, dropout: float = ModelConfig.dropout,
                 scale_shift: bool = ModelConfig.scale_shift, canvas: bool = ModelConfig.canvas,
                 layout: bool = ModelConfig.layout, crop: int = ModelConfig.crop, zoom: float = ModelConfig.zoom):
        super().__init__()
        # register_to_config has stored the arguments in self.config; ModelConfig validates them
        self.spec = config = ModelConfig(**{f.name: self.config[f.name] for f in dataclasses.fields(ModelConfig)})
        levels = range(len(config.block_out_channels))
        attn = set(config.attention_levels)
        channels = 3 * config.patch_size ** 2
        common = dict(
            sample_size=(config.crop or config.sample_size) // config.patch_size,
            in_channels=(channels + self.canvas_channels * config.patch_size ** 2
                         + (NUM_CLASSES if config.conditioning == "concat" else 0)),
            out_channels=channels,
            block_out_channels=config.block_out_channels,
            layers_per_block=config.layers_per_block,
            norm_num_groups=config.norm_num_groups,
            dropout=config.dropout,
            resnet_time_scale_shift="scale_shift" if config.scale_shift else "default",
            class_embed_type=None if config.conditioning == "concat" else "identity",
        )
        self.unet = UNet2DModel(
            down_block_types=tuple("AttnDownBlock2D" if i in attn else "DownBlock2D" for i in levels),
            up_block_types=tuple("AttnUpBlock2D" if i in attn else "UpBlock2D" for i in reversed(levels)),
            attention_head_dim=config.attention_head_dim, **common)
        time_dim = config.block_out_channels[0] * 4
        self.label_proj = None if config.conditioning == "concat" else nn.Linear(NUM_CLASSES, time_dim)
        if config.canvas:  # the empty floor, in [-1, 1]; training sets it from the data (cddpm.canvas.background)
            self.register_buffer("background", torch.zeros(3, config.sample_size, config.sample_size))
        if config.layout:  # per class, training boxes to place objects from (cddpm.canvas.layout_table)
            self.register_buffer("layout_boxes", torch.zeros(NUM_CLASSES, LAYOUT_PER_CLASS, 4, dtype=torch.long))

    @property
    def canvas_channels(self) -> int:
        """Channels of the ``canvas`` input: the image (3), for a layout model the box (1) and for a crop model the
        window's position (2, :func:`cddpm.canvas.position`); 0 for other models."""
        return (3 + self.spec.layout + 2 * bool(self.spec.crop)) if self.spec.canvas else 0

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor,
                canvas: torch.Tensor | None = None) -> torch.Tensor:
        p = self.config.patch_size
        labels = labels.to(x.dtype)
        if self.config.canvas:
            if canvas is None or canvas.shape[1] != self.canvas_channels:
                raise ValueError(f"a canvas model needs canvas=(N, {self.canvas_channels}, H, W): the image to add the "
                                 f"object to{' and the box mask (cddpm.canvas.box_mask)' if self.spec.layout else ''}"
                                 f"{', cut around the box with its position (cddpm.canvas.around)' if self.spec.crop else ''}")
            x = torch.cat([x, canvas.to(x.dtype)], dim=1)
        if p > 1:
            x = F.pixel_unshuffle(x, p)
        if self.label_proj is None:
            x = torch.cat([x, labels[:, :, None, None].expand(-1, -1, *x.shape[-2:])], dim=1)
            out = self.unet(x, t).sample
        else:
            out = self.unet(x, t, class_labels=self.label_proj(labels)).sample
        return F.pixel_shuffle(out, p) if p > 1 else out
