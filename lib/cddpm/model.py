"""``ConditionalUNet``: a diffusers ``UNet2DModel`` conditioned on the 24-class multi-hot label.

Two conditionings: ``concat`` (the course reference: the multi-hot broadcast to 24 extra input
channels) and ``embed`` (a learned projection of the multi-hot added to the timestep embedding
through the UNet's class-embedding hook). The all-zero label is the null condition used by
classifier-free guidance, so one network gives both conditional and unconditional predictions.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from diffusers import UNet2DModel
from torch import nn

from .labels import NUM_CLASSES

CONDITIONINGS = ("concat", "embed")


@dataclass
class ModelConfig:
    """Architecture of a ``ConditionalUNet``; saved in every run's ``config.json``."""

    sample_size: int = 64  # the training resolution; sampling resizes its images to 64x64 for the course outputs
    block_out_channels: tuple[int, ...] = (64, 128, 128, 256)
    attention_levels: tuple[int, ...] = (2, 3)  # indices into block_out_channels that get self-attention
    layers_per_block: int = 2
    conditioning: str = "embed"
    attention_head_dim: int = 8
    norm_num_groups: int = 32
    dropout: float = 0.0

    def __post_init__(self):
        self.block_out_channels = tuple(int(c) for c in self.block_out_channels)
        self.attention_levels = tuple(int(i) for i in self.attention_levels)
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"unknown conditioning {self.conditioning!r}; use one of {', '.join(CONDITIONINGS)}")
        bad = [i for i in self.attention_levels if not 0 <= i < len(self.block_out_channels)]
        if bad:
            raise ValueError(f"attention_levels {bad} outside 0..{len(self.block_out_channels) - 1}; "
                             "index the levels of block_out_channels")
        odd = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if odd:
            raise ValueError(f"block_out_channels {odd} not divisible by norm_num_groups={self.norm_num_groups}; "
                             "change one of them")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESETS: dict[str, ModelConfig] = {
    # trains on 2 CPU cores in minutes (the demo): at 32x32, 4x fewer pixels than 64x64, sampled then upsampled
    "tiny": ModelConfig(sample_size=32, block_out_channels=(32, 64, 64, 128), attention_levels=(3,),
                        layers_per_block=1, norm_num_groups=16),
    # fits a 16 GB T4 at batch 64 in fp16
    "colab": ModelConfig(block_out_channels=(64, 128, 256, 256), attention_levels=(2, 3), layers_per_block=2),
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


def parse_overrides(pairs: list[str]) -> dict:
    """``["block_out_channels=32,64,64", "dropout=0.1"]`` -> typed field values (tuples split on commas)."""
    defaults = ModelConfig()
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not hasattr(defaults, key):
            fields = ", ".join(f.name for f in dataclasses.fields(ModelConfig))
            raise ValueError(f"bad model override {pair!r}; write FIELD=VALUE with FIELD one of {fields}")
        kind = type(getattr(defaults, key))
        try:
            out[key] = (tuple(int(v) for v in value.split(",") if v.strip()) if kind is tuple
                        else value.strip() if kind is str else kind(value))
        except ValueError:
            raise ValueError(f"bad value in model override {pair!r}; {key} takes "
                             f"{'comma-separated integers' if kind is tuple else 'a ' + kind.__name__}") from None
    return out


class ConditionalUNet(nn.Module):
    """Predicts the noise (or v) of ``x_t`` given timestep ``t`` and multi-hot ``labels`` (zeros = null)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        levels = range(len(config.block_out_channels))
        attn = set(config.attention_levels)
        concat = config.conditioning == "concat"
        self.unet = UNet2DModel(
            sample_size=config.sample_size,
            in_channels=3 + (NUM_CLASSES if concat else 0),
            out_channels=3,
            block_out_channels=config.block_out_channels,
            layers_per_block=config.layers_per_block,
            down_block_types=tuple("AttnDownBlock2D" if i in attn else "DownBlock2D" for i in levels),
            up_block_types=tuple("AttnUpBlock2D" if i in attn else "UpBlock2D" for i in reversed(levels)),
            attention_head_dim=config.attention_head_dim,
            norm_num_groups=config.norm_num_groups,
            dropout=config.dropout,
            class_embed_type=None if concat else "identity",
        )
        time_dim = config.block_out_channels[0] * 4
        self.label_proj = None if concat else nn.Linear(NUM_CLASSES, time_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = labels.to(x.dtype)
        if self.label_proj is None:
            x = torch.cat([x, labels[:, :, None, None].expand(-1, -1, *x.shape[-2:])], dim=1)
            return self.unet(x, t).sample
        return self.unet(x, t, class_labels=self.label_proj(labels)).sample

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
