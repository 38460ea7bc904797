"""The model: presets, overrides from the command line, both conditionings and the null label."""
from __future__ import annotations

import pytest
import torch

from cddpm import labels as L
from cddpm.model import PRESETS, ConditionalUNet, ModelConfig, override, parse_overrides, preset


def test_parse_overrides_types_each_field():
    parsed = parse_overrides(["block_out_channels=32,64,64", "attention_levels=", "sample_size=48", "dropout=0.1",
                              "conditioning=concat"])
    assert parsed == {"block_out_channels": (32, 64, 64), "attention_levels": (), "sample_size": 48, "dropout": 0.1,
                      "conditioning": "concat"}
    config = preset("tiny", **parsed)
    assert config.block_out_channels == (32, 64, 64) and config.attention_levels == ()


@pytest.mark.parametrize("pair, message", [
    ("width=3", "bad model override 'width=3'"),
    ("sample_size", "write FIELD=VALUE"),
    ("layers_per_block=two", "layers_per_block takes a int"),
    ("block_out_channels=32,x", "comma-separated integers"),
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
        preset("tiny", attention_levels=(7,))
    with pytest.raises(ValueError, match="not divisible by norm_num_groups"):
        preset("tiny", block_out_channels=(24, 48), attention_levels=())
    assert preset("tiny") == PRESETS["tiny"] and preset("tiny") is not PRESETS["tiny"]


def test_presets_are_consistent():
    assert PRESETS["reference"].conditioning == "concat"
    assert PRESETS["reference"].block_out_channels == (128, 128, 256, 256, 512, 512)
    assert PRESETS["reference"].attention_levels == (4,)
    for name, config in PRESETS.items():
        assert config.sample_size % 2 ** (len(config.block_out_channels) - 1) == 0, name


def test_tiny_preset_is_small_and_runs_at_its_sample_size():
    config = preset("tiny")
    model = ConditionalUNet(config)
    assert model.num_parameters() < 5_000_000
    x = torch.randn(2, 3, config.sample_size, config.sample_size)
    assert model(x, torch.tensor([10, 900]), L.encode_batch([["red sphere"], ["cyan cube"]])).shape == x.shape


@pytest.mark.parametrize("conditioning", ["concat", "embed"])
def test_both_conditionings_use_the_label_and_accept_the_null_label(conditioning):
    torch.manual_seed(0)
    config = preset("tiny", sample_size=16, block_out_channels=(16, 32), attention_levels=(1,), norm_num_groups=8,
                    conditioning=conditioning)
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
