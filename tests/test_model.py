"""The model: presets, overrides from the command line, both conditionings and the null label."""
from __future__ import annotations

import pytest
import torch

from cddpm import labels as L
from cddpm.choices import DEFAULT_PRESET
from cddpm.model import PRESETS, ConditionalUNet, ModelConfig, override, parse_overrides, preset

# a whole-scene model small enough to build many times
MICRO = dict(sample_size=16, block_out_channels=(16, 32), attention_levels=(1,), layers_per_block=1, norm_num_groups=8)


def test_parse_overrides_types_each_field():
    parsed = parse_overrides(["block_out_channels=32,64,64", "attention_levels=", "sample_size=48", "dropout=0.1",
                              "conditioning=concat", "layout=false", "canvas=False", "scale_shift=0"])
    assert parsed == {"block_out_channels": (32, 64, 64), "attention_levels": (), "sample_size": 48, "dropout": 0.1,
                      "conditioning": "concat", "layout": False, "canvas": False, "scale_shift": False}
    config = preset("reference", **parsed)
    assert config.block_out_channels == (32, 64, 64) and config.attention_levels == ()
    assert parse_overrides(["canvas=true", "layout=Yes", "scale_shift=1"]) == dict(canvas=True, layout=True,
                                                                                     scale_shift=True)


def test_the_layout_design_without_its_canvas_is_the_measured_whole_scene_model():
    """The p2-embed arm of docs/ablations.md: layout64 with ``--model canvas=false layout=false``; crop64 is layout64
    drawing 32x32 windows unfolded, zoom64 crop64 drawing windows 1.25 times the box at 24x24."""
    assert preset("crop64") == preset("layout64", **parse_overrides(["crop=32", "patch_size=1"]))
    assert preset(DEFAULT_PRESET) == preset("crop64", **parse_overrides(["crop=24", "zoom=1.25"]))
    whole = preset("layout64", **parse_overrides(["canvas=false", "layout=false"]))
    assert whole == ModelConfig(sample_size=64, patch_size=2, scale_shift=True, block_out_channels=(32, 64, 64, 128),
                                attention_levels=(3,), layers_per_block=1, norm_num_groups=16)


@pytest.mark.parametrize("pair, message", [
    ("width=3", "bad model override 'width=3'"),
    ("sample_size", "write FIELD=VALUE"),
    ("layers_per_block=two", "layers_per_block takes a int"),
    ("block_out_channels=32,x", "comma-separated integers"),
    ("canvas=maybe", "canvas takes true or false"),
])
def test_parse_overrides_errors_are_one_line(pair, message):
    with pytest.raises(ValueError, match=message) as err:
        parse_overrides([pair])
    assert "\n" not in str(err.value)


def test_override_and_preset_validate():
    with pytest.raises(ValueError, match="unknown model field"):
        override(ModelConfig(), width=3)
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")
    with pytest.raises(ValueError, match="attention_levels"):
        preset("layout64", attention_levels=(7,))
    with pytest.raises(ValueError, match="not divisible by norm_num_groups"):
        preset("layout64", block_out_channels=(24, 48), attention_levels=())
    with pytest.raises(ValueError, match="unknown conditioning 'tokens'; use one of concat, embed"):
        preset("layout64", conditioning="tokens")
    assert preset("layout64") == PRESETS["layout64"] and preset("layout64") is not PRESETS["layout64"]


def test_presets_are_consistent():
    assert PRESETS["reference"].conditioning == "concat"
    assert PRESETS["reference"].block_out_channels == (128, 128, 256, 256, 512, 512)
    assert PRESETS["reference"].attention_levels == (4,)
    for name, config in PRESETS.items():
        assert config.sample_size % 2 ** (len(config.block_out_channels) - 1) == 0, name


def test_the_default_preset_is_small_and_runs_at_its_sample_size():
    config = preset(DEFAULT_PRESET)
    model = ConditionalUNet(config)
    assert model.num_parameters() < 5_000_000
    x = torch.randn(2, 3, config.sample_size, config.sample_size)
    canvas = torch.zeros(2, model.canvas_channels, config.sample_size, config.sample_size)
    assert model(x, torch.tensor([10, 900]), L.encode_batch([["red sphere"], ["cyan cube"]]), canvas).shape == x.shape


@pytest.mark.parametrize("conditioning", ["concat", "embed"])
def test_both_conditionings_use_the_label_and_accept_the_null_label(conditioning):
    torch.manual_seed(0)
    config = ModelConfig(**MICRO, conditioning=conditioning)
    model = ConditionalUNet(config).eval()
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([500, 500])
    labels = L.encode_batch([["red sphere"], ["red sphere"]])
    with torch.no_grad():
        cond = model(x, t, labels)
        null = model(x, t, torch.zeros_like(labels))
        other = model(x, t, L.encode_batch([["cyan cube"], ["cyan cube"]]))
    assert cond.shape == null.shape == x.shape
    assert not torch.allclose(cond, null) and not torch.allclose(cond, other)
    assert model.unet.config.in_channels == (3 + 24 if conditioning == "concat" else 3)


def test_patched_model_keeps_the_image_shape_and_reads_each_object():
    torch.manual_seed(0)
    config = ModelConfig(**{**MICRO, "sample_size": 32}, patch_size=2, scale_shift=True)
    model = ConditionalUNet(config).eval()
    assert model.unet.config.sample_size == 16 and model.unet.config.in_channels == 12
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([500, 500])
    with torch.no_grad():
        one = model(x, t, L.encode_batch([["red sphere"]] * 2))
        two = model(x, t, L.encode_batch([["red sphere", "cyan cube"]] * 2))
    assert one.shape == x.shape and not torch.allclose(one, two)


def test_patch_size_must_divide_the_sample_size():
    with pytest.raises(ValueError, match="patch_size=3 must be >= 1 and divide sample_size=64"):
        preset("layout64", sample_size=64, patch_size=3)
