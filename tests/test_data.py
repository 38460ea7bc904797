import json

import pytest
import torch
from PIL import Image

from cddpm import data
from cddpm import labels as L


def test_dataset_shapes_ranges_labels(tiny_root):
    ds = data.ICLEVRDataset(tiny_root, size=16)
    assert len(ds) == 4
    image, hot = ds[1]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert -1 <= image.min() and image.max() <= 1 and image.min() < 0 < image.max()
    assert L.decode(hot) == sorted(["red sphere", "cyan cube"], key=L.INDEX.get)


def test_direct_resize_without_crop(tmp_path):
    # a 320x240 image with a red left edge: a resize keeps it, a centre crop would cut it off
    root = data.Path(tmp_path)
    from conftest import make_root
    make_root(root / "r", {"a.png": ["red cube"]}, size=(320, 240), mode="RGB")
    im = Image.new("RGB", (320, 240), (128, 128, 128))
    im.paste((255, 0, 0), (0, 0, 20, 240))
    im.save(root / "r" / "iclevr" / "a.png")
    image, _ = data.ICLEVRDataset(root / "r", size=64)[0]
    assert image[0, 32, 0] > 0.9 and image[1, 32, 0] < -0.9


def test_preload_cache_identical_and_rebuilt(tiny_root):
    lazy = data.ICLEVRDataset(tiny_root, size=16)
    pre = data.ICLEVRDataset(tiny_root, size=16, preload=True)
    assert (tiny_root / ".cache" / "train_16.pt").is_file()
    assert pre.images.dtype == torch.uint8 and pre.images.shape == (4, 3, 16, 16)
    for i in range(len(lazy)):
        assert torch.equal(lazy[i][0], pre[i][0]) and torch.equal(lazy[i][1], pre[i][1])
    again = data.ICLEVRDataset(tiny_root, size=16, preload=True)
    assert torch.equal(again.images, pre.images)
    # change one file: the cache is rebuilt, not trusted
    Image.new("RGB", (40, 30), (0, 0, 255)).save(tiny_root / "iclevr" / "CLEVR_train_000001_0.png")
    changed = data.ICLEVRDataset(tiny_root, size=16, preload=True)
    assert changed.images[3, 2].min() == 255 and changed.images[3, 0].max() == 0


def test_load_conditions(tiny_root):
    test = data.load_conditions(tiny_root, "test")
    assert test.shape == (2, 24)
    assert L.decode(test[0]) == ["red cube"]
    new = data.load_conditions(tiny_root, "new_test")
    assert new.shape == (1, 24) and new.sum() == 3


def one_line_error(exc, func, *args, match):
    with pytest.raises(exc) as err:
        func(*args)
    text = str(err.value)
    assert "\n" not in text and match in text, text
    return text


def test_missing_root(tmp_path):
    text = one_line_error(FileNotFoundError, data.ICLEVRDataset, tmp_path / "nope", match="does not exist")
    assert "cddpm render" in text


def test_missing_json(tiny_root):
    (tiny_root / "train.json").unlink()
    one_line_error(FileNotFoundError, data.ICLEVRDataset, tiny_root, match="train.json")


def test_malformed_json(tiny_root):
    (tiny_root / "test.json").write_text("[[\"red cube\"")
    one_line_error(ValueError, data.load_conditions, tiny_root, "test", match="malformed json")


def test_wrong_objects_json(tiny_root):
    (tiny_root / "objects.json").write_text(json.dumps({"red cube": 0}))
    one_line_error(ValueError, data.ICLEVRDataset, tiny_root, match="differs from the i-CLEVR class order")


def test_missing_image(tiny_root):
    (tiny_root / "iclevr" / "CLEVR_train_000000_1.png").unlink()
    one_line_error(FileNotFoundError, data.ICLEVRDataset(tiny_root).__getitem__, 1, match="CLEVR_train_000000_1.png")
    one_line_error(FileNotFoundError, data.ICLEVRDataset, tiny_root, "train", 64, True, match="missing")


def test_corrupt_image(tiny_root):
    (tiny_root / "iclevr" / "CLEVR_train_000000_2.png").write_bytes(b"not a png")
    one_line_error(ValueError, data.ICLEVRDataset(tiny_root).__getitem__, 2, match="corrupt image")
    one_line_error(ValueError, data.ICLEVRDataset, tiny_root, "train", 64, True, match="CLEVR_train_000000_2.png")


def test_unknown_label(tiny_root):
    mapping = json.loads((tiny_root / "train.json").read_text())
    mapping["CLEVR_train_000001_0.png"] = ["pink cube"]
    (tiny_root / "train.json").write_text(json.dumps(mapping))
    one_line_error(ValueError, data.ICLEVRDataset, tiny_root, match="did you mean 'purple cube'")


def test_unknown_condition_split(tiny_root):
    one_line_error(ValueError, data.load_conditions, tiny_root, "val", match="unknown condition split")


def test_official_files(official):
    mapping = data.load_mapping(official, "train")
    assert len(mapping) == 18009
    assert data.load_conditions(official, "test").shape == (32, 24)
    assert data.load_conditions(official, "new_test").shape == (32, 24)
    assert all(1 <= len(v) <= 3 for v in mapping.values())
