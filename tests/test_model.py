"""The model: presets, overrides from the command line, both conditionings and the null label."""
from __future__ import annotations

import pytest
import torch

from cddpm import labels as L
from cddpm.model import PRESETS, ConditionalUNet, ModelConfig, object_indices, override, parse_overrides, preset


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


def test_object_indices_lists_requested_classes_padded_with_no_object():
    labels = torch.cat([L.encode_batch([["red sphere"], ["cyan cube", "gray cube", "red cylinder"]]),
                        torch.zeros(1, L.NUM_CLASSES)])
    idx = object_indices(labels)
    assert idx.shape == (3, 3)
    assert set(idx[1].tolist()) == {L.CLASSES.index(n) for n in ("cyan cube", "gray cube", "red cylinder")}
    assert idx[0].tolist().count(L.NUM_CLASSES) == 2 and idx[2].tolist() == [L.NUM_CLASSES] * 3
    assert object_indices(torch.zeros(2, L.NUM_CLASSES)).tolist() == [[L.NUM_CLASSES], [L.NUM_CLASSES]]


@pytest.mark.parametrize("conditioning", ["embed", "tokens"])
def test_patched_64px_model_keeps_the_image_shape_and_reads_each_object(conditioning):
    torch.manual_seed(0)
    config = preset("tiny", sample_size=32, patch_size=2, scale_shift=True, block_out_channels=(16, 32),
                    attention_levels=(1,), norm_num_groups=8, conditioning=conditioning)
    model = ConditionalUNet(config).eval()
    assert model.unet.config.sample_size == 16 and model.unet.config.in_channels == 12
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([500, 500])
    with torch.no_grad():
        one = model(x, t, L.encode_batch([["red sphere"]] * 2))
        two = model(x, t, L.encode_batch([["red sphere", "cyan cube"]] * 2))
    assert one.shape == x.shape and not torch.allclose(one, two)


def test_patch_size_must_divide_the_sample_size():
    with pytest.raises(ValueError, match="patch_size=3 must be >= 1 and divide sample_size=64"):
        preset("tiny", sample_size=64, patch_size=3)
