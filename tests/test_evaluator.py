import inspect
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from torch import nn
from torchvision.models import resnet18, resnet34

from cddpm import cli, data
from cddpm import labels as L
from cddpm.evaluation import evaluator as E
from cddpm.evaluation import training as ET

# a toy i-CLEVR: flat coloured squares (cube), discs (sphere) and triangles (cylinder) of 6 classes,
# so that a ResNet18 learns it in seconds and the evaluate tests can tell right labels from wrong ones
TOY_CLASSES = ["red cube", "blue sphere", "green cylinder", "yellow cube", "cyan sphere", "purple cylinder"]
RGB = {"red": (173, 35, 35), "blue": (42, 75, 215), "green": (29, 105, 20), "yellow": (255, 238, 51),
       "cyan": (41, 208, 208), "purple": (129, 38, 192)}


def draw(objects: list[str], rng: random.Random) -> Image.Image:
    """One 64x64 toy scene: each object a flat shape in its own quadrant, jittered."""
    im = Image.new("RGB", (64, 64), (150, 150, 150))
    pen = ImageDraw.Draw(im)
    for j, name in enumerate(objects):
        colour, shape = name.split()
        x, y = 16 + 32 * (j % 2) + rng.randint(-4, 4), 16 + 32 * (j // 2) + rng.randint(-4, 4)
        fill = RGB[colour]
        if shape == "cube":
            pen.rectangle((x - 12, y - 12, x + 12, y + 12), fill=fill)
        elif shape == "sphere":
            pen.ellipse((x - 12, y - 12, x + 12, y + 12), fill=fill)
        else:
            pen.polygon([(x, y - 12), (x - 12, y + 12), (x + 12, y + 12)], fill=fill)
    return im


def toy_root(path: Path, n: int, seed: int) -> Path:
    """A labelled root of ``n`` toy images (3 per scene) with 24 test conditions."""
    rng = random.Random(seed)
    (path / "iclevr").mkdir(parents=True)
    mapping = {}
    for i in range(n):
        name = f"CLEVR_train_{i // 3:06d}_{i % 3}.png"
        mapping[name] = rng.sample(TOY_CLASSES, rng.randint(1, 2))
        draw(mapping[name], rng).save(path / "iclevr" / name)
    conditions = [rng.sample(TOY_CLASSES, rng.randint(1, 2)) for _ in range(24)]
    (path / "objects.json").write_text(json.dumps(L.objects_dict()))
    (path / "train.json").write_text(json.dumps(mapping))
    (path / "test.json").write_text(json.dumps(conditions))
    (path / "new_test.json").write_text(json.dumps(conditions[:4]))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, dict]:
    """(toy root, checkpoint, training report): one short training run shared by the module."""
    base = tmp_path_factory.mktemp("toy")
    root = toy_root(base / "root", 240, seed=0)
    report = ET.train_evaluator(root, base / "ev" / "checkpoint.pth", epochs=4, batch_size=16, val_fraction=0.2, progress=False)
    return root, base / "ev" / "checkpoint.pth", report


def write_folder(folder: Path, conditions: list[list[str]], seed: int, order=None, size: int = 64) -> Path:
    """Ground truth of ``conditions`` as folder/{i}.png; ``order`` puts condition order[i]'s image at i."""
    rng = random.Random(seed)
    images = [draw(c, rng) for c in conditions]
    folder.mkdir(parents=True)
    for i, j in enumerate(order or range(len(images))):
        images[j].resize((size, size), Image.NEAREST).save(folder / f"{i}.png")
    return folder


def one_line(exc, func, *args, match: str, **kwargs) -> str:
    with pytest.raises(exc) as err:
        func(*args, **kwargs)
    text = str(err.value)
    assert "\n" not in text and match in text, text
    return text


# --- format ----------------------------------------------------------------------------------------

def test_official_format_round_trip(tmp_path):
    net = E.build_network()
    assert isinstance(net.fc, nn.Sequential) and isinstance(net.fc[1], nn.Sigmoid) and net.fc[0].out_features == 24
    torch.nn.init.normal_(net.fc[0].bias)  # not the default init, so a failed load would show
    images = torch.rand(5, 3, 64, 64) * 2 - 1
    ours = E.Evaluator(net.eval())
    path = ours.save(tmp_path / "sub" / "checkpoint.pth")
    # the course's loading code, step by step
    course = resnet18(weights=None)
    course.fc = nn.Sequential(nn.Linear(512, 24), nn.Sigmoid())
    course.load_state_dict(torch.load(path, weights_only=True)["model"])
    loaded = E.Evaluator.load(path)
    assert not loaded.network.training and loaded.path == path
    with torch.no_grad():
        expected = course.eval()(images)
    assert torch.allclose(loaded.scores(images), expected, atol=1e-6)
    assert torch.allclose(ours.scores(images, batch_size=2), expected, atol=1e-6)
    assert not list(path.parent.glob("*.tmp"))  # the atomic write left nothing behind
    (path.parent / "plain").write_text("")
    assert path.stat().st_mode == (path.parent / "plain").stat().st_mode  # usual permissions, not mkstemp's 0600


@pytest.mark.parametrize("content, match", [
    ({"model": resnet18(weights=None).state_dict()}, "fc.weight"),          # plain resnet18: fc is Linear(512, 1000)
    ({"model": resnet34(weights=None).state_dict()}, "unexpected keys"),
    ({"state_dict": E.build_network().state_dict()}, "no 'model' entry"),
    ({"model": [1, 2]}, "not a state dict"),
    (b"this is not a checkpoint", "not a readable torch checkpoint"),
])
def test_load_rejects_other_files(tmp_path, content, match):
    path = tmp_path / "checkpoint.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    text = one_line(ValueError, E.Evaluator.load, path, match=match)
    assert str(path) in text and "Sequential(Linear(512, 24), Sigmoid())" in text


def as_numpy1_pickle(path: Path) -> None:
    """Rewrite ``path`` as numpy 1 pickled its scalars (``numpy.core.multiarray.scalar``; numpy 2: ``numpy._core``)."""
    import zipfile

    with zipfile.ZipFile(path) as zin:
        entries = [(info, zin.read(info.filename)) for info in zin.infolist()]
    assert any(b"numpy._core.multiarray" in data for _, data in entries)
    with zipfile.ZipFile(path, "w") as zout:
        for info, data in entries:
            zout.writestr(info, data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))


@pytest.mark.parametrize("numpy1", [False, True], ids=["numpy2", "numpy1"])
def test_course_checkpoints_with_wrapper_prefixes_and_numpy_scalars_load(tmp_path, numpy1):
    torch.manual_seed(0)
    net = E.build_network().eval()
    images = torch.rand(3, 3, 64, 64) * 2 - 1
    expected = E.Evaluator(net).scores(images)
    wrapped = nn.DataParallel(net).state_dict()  # module.conv1.weight, ... (DataParallel keeps the CPU without GPUs)
    assert all(k.startswith("module.") for k in wrapped)
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": wrapped, "epoch": np.int64(3), "acc": np.float64(0.9), "best": np.float32(0.8),
                "done": np.bool_(True), "optimizer": {"lr": 1e-3}}, path)
    if numpy1:
        as_numpy1_pickle(path)
    assert torch.allclose(E.Evaluator.load(path).scores(images), expected)
    compiled = {f"_orig_mod.{k}": v for k, v in net.state_dict().items()}  # a torch.compile'd network's keys
    torch.save({"model": compiled}, path)
    assert torch.allclose(E.Evaluator.load(path).scores(images), expected)


class Payload:
    def __reduce__(self):  # what a malicious pickle does: call something on load
        return (print, ("payload ran",))


def test_other_pickled_objects_are_refused_whole_with_the_fix(tmp_path, capsys):
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": E.build_network().state_dict(), "extra": Payload()}, path)
    text = one_line(ValueError, E.Evaluator.load, path, match="a safe load refuses it: Unsupported global: GLOBAL ")
    assert "print was not an allowed global" in text  # what it refused, not torch's first line of advice
    assert f"torch.save({{'model': torch.load('{path}', weights_only=False)['model']}}, '{path}')" in text
    assert "payload ran" not in capsys.readouterr().out
    torch.save({"model": E.build_network().state_dict(), "array": np.zeros(3)}, path)  # arrays: not scalars
    one_line(ValueError, E.Evaluator.load, path, match="_reconstruct")


def test_load_missing_file_names_the_fix(tmp_path):
    one_line(FileNotFoundError, E.Evaluator.load, tmp_path / "nope.pth", match="cddpm train-evaluator")


# --- scores ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def untrained() -> E.Evaluator:
    return E.Evaluator(E.build_network().eval())


@pytest.mark.parametrize("make, match", [
    (lambda x: x[:, :, :32, :32], "shape (N, 3, 64, 64)"),
    (lambda x: x[0], "shape (N, 3, 64, 64)"),
    (lambda x: (x + 1) / 2, "[0, 1] images"),
    (lambda x: (x + 1) * 127.5, "[0, 255] pixels"),
    (lambda x: data.to_uint8(x), "torch.uint8"),
    (lambda x: x * 1.2, "outside [-1, 1]"),
    (lambda x: x.masked_fill(x > 0.9, float("nan")), "NaN"),
])
def test_scores_refuses_wrong_input(untrained, make, match):
    images = torch.rand(3, 3, 64, 64) * 2 - 1
    one_line(ValueError, untrained.scores, make(images), match=match)


def test_scores_shape_range_and_logits(untrained, tmp_path):
    images = torch.rand(5, 3, 64, 64) * 2 - 1
    scores = untrained.scores(images, batch_size=2)
    assert scores.shape == (5, 24) and scores.min() >= 0 and scores.max() <= 1 and not scores.requires_grad
    assert untrained.scores(images[:0]).shape == (0, 24)
    # a real scene in [-1, 1] mapped from uint8 with a mid-grey background passes the [0, 1] rule
    draw(["red cube"], random.Random(0)).save(tmp_path / "scene.png")
    scene = data.to_float(torch.from_numpy(data.read_image(tmp_path / "scene.png", 64)))
    assert untrained.scores(scene[None]).shape == (1, 24)
    x = images.clone().requires_grad_(True)
    logits = untrained(x)
    assert torch.allclose(torch.sigmoid(logits), scores, atol=1e-5)
    logits.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


# --- training --------------------------------------------------------------------------------------

def test_augment_moves_and_mirrors_but_keeps_colours():
    image = torch.full((1, 3, 64, 64), -0.2)
    image[0, :, 30, 20] = torch.tensor([0.9, -0.5, 0.1])  # one coloured pixel left of centre
    batch = image.repeat(64, 1, 1, 1)
    out = ET.augment(batch, torch.Generator().manual_seed(0), max_shift=4)
    assert out.shape == batch.shape
    assert set(out.reshape(-1).unique().tolist()) == set(image.reshape(-1).unique().tolist())  # no new values
    ys, xs = [], []
    for img in out:
        hit = torch.nonzero(img[0] > 0.5)
        assert len(hit) == 1 and torch.equal(img[:, hit[0, 0], hit[0, 1]], image[0, :, 30, 20])
        ys.append(hit[0, 0].item())
        xs.append(hit[0, 1].item())
    assert all(abs(y - 30) <= 4 for y in ys) and len(set(ys)) > 3
    near_left, near_right = [x for x in xs if abs(x - 20) <= 4], [x for x in xs if abs(x - 43) <= 4]
    assert len(near_left) + len(near_right) == 64 and near_left and near_right  # shifted, sometimes mirrored


def test_split_keeps_scenes_whole():
    names = [f"CLEVR_train_{s:06d}_{i}.png" for s in range(40) for i in range(3)]
    train, val = data.split_scenes(names, 0.1, seed=0)
    assert len(val) == 12 and len(train) == 108 and set(train.tolist()).isdisjoint(val.tolist())
    scene = lambda i: names[i].rsplit("_", 1)[0]  # noqa: E731
    assert {scene(i) for i in train.tolist()}.isdisjoint(scene(i) for i in val.tolist())
    assert torch.equal(data.split_scenes(names, 0.1, seed=0)[1], val)


def test_training_learns_and_writes_the_official_format(trained):
    root, checkpoint, report = trained
    losses = [row["train_loss"] for row in report["history"]]
    assert losses[-1] < 0.2 * losses[0], losses
    assert report["validation"]["topk"] >= 0.9 and report["val_images"] == 48 and report["train_images"] == 192
    saved = json.loads(checkpoint.with_suffix(".json").read_text())
    assert saved["validation"] == report["validation"] and saved["epochs"] == 4
    assert set(torch.load(checkpoint, weights_only=True)) == {"model", E.TRAINED_ON}  # the course's format, plus
    one_line(FileExistsError, ET.train_evaluator, root, checkpoint, epochs=1, match="--force")


# --- evaluate --------------------------------------------------------------------------------------

def run_cli(capsys, *args) -> tuple[int, dict | None, str]:
    code = cli.main(["evaluate", *map(str, args)])
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else None, err


def test_evaluate_ground_truth_high_and_shuffled_low(trained, tmp_path, capsys):
    root, checkpoint, _ = trained
    conditions = data.load_condition_lists(root, "test")
    good = write_folder(tmp_path / "good", conditions, seed=1)
    shuffled = write_folder(tmp_path / "shuffled", conditions, seed=1, order=[(i + 5) % 24 for i in range(24)])
    code, result, _ = run_cli(capsys, "--images", good, "--data", root, "--split", "test", "--evaluator", checkpoint,
                              "--per-image", "--json", tmp_path / "out" / "m.json")
    assert code == 0 and result["n"] == 24 and result["split"] == "test" and result["evaluator"] == str(checkpoint)
    assert result["topk"] >= 0.9 and result["exact_set"] >= 0.7, result
    assert json.loads((tmp_path / "out" / "m.json").read_text()) == result
    rows = result["per_image"]
    assert len(rows) == 24 and rows[3]["requested"] == sorted(conditions[3], key=L.INDEX.get)
    assert sum(r["exact"] for r in rows) == round(result["exact_set"] * 24)
    code, bad, _ = run_cli(capsys, "--images", shuffled, "--data", root, "--evaluator", checkpoint)
    assert code == 0 and bad["topk"] < 0.5 and bad["exact_set"] < 0.3, bad
    # the same numbers from the library on an in-memory batch
    images = torch.stack([data.to_float(torch.from_numpy(data.read_image(good / f"{i}.png", 64))) for i in range(24)])
    direct = E.evaluate_images(E.Evaluator.load(checkpoint), images, L.encode_batch(conditions))
    assert set(direct) == {"topk", "exact_set", "extra_object_rate", "n"} and direct["topk"] == result["topk"]


def test_evaluate_labelled_root(trained, capsys):
    root, checkpoint, report = trained
    code, result, _ = run_cli(capsys, "--root", root, "--evaluator", checkpoint)
    assert code == 0 and result["n"] == 240 and result["topk"] >= 0.9
    shuffled = Path(str(root) + "-shuffled")
    shuffled.mkdir()
    (shuffled / "iclevr").symlink_to(root / "iclevr")
    (shuffled / "objects.json").write_text((root / "objects.json").read_text())
    mapping = data.load_mapping(root)
    names = list(mapping)
    (shuffled / "train.json").write_text(json.dumps({n: mapping[names[i - 7]] for i, n in enumerate(names)}))
    code, result, _ = run_cli(capsys, "--root", shuffled, "--evaluator", checkpoint)
    assert code == 0 and result["topk"] < 0.5


def test_evaluate_resizes_with_a_note(trained, tmp_path, capsys):
    root, checkpoint, _ = trained
    conditions = data.load_condition_lists(root, "new_test")
    folder = write_folder(tmp_path / "big", conditions, seed=2, size=128)
    code, result, err = run_cli(capsys, "--images", folder, "--data", root, "--split", "new_test",
                                "--evaluator", checkpoint)
    assert code == 0 and result["resized"] == 4 and "resized 4 images" in err and result["topk"] >= 0.75


def test_evaluate_folder_errors(trained, tmp_path, capsys):
    root, checkpoint, _ = trained
    conditions = data.load_condition_lists(root, "new_test")
    folder = write_folder(tmp_path / "f", conditions, seed=3)
    Image.new("RGB", (64, 64)).save(folder / "grid.png")  # other files are ignored
    common = ("--data", root, "--split", "new_test", "--evaluator", checkpoint)
    assert run_cli(capsys, "--images", folder, *common)[0] == 0
    Image.new("RGB", (64, 64)).save(folder / "4.png")
    code, _, err = run_cli(capsys, "--images", folder, *common)
    assert code == 2 and "4.png and beyond are extra" in err and err.count("\n") == 1
    (folder / "4.png").unlink()
    (folder / "2.png").unlink()
    code, _, err = run_cli(capsys, "--images", folder, *common)
    assert code == 2 and "lacks 1 of the 4 images" in err and "2.png" in err
    (folder / "2.png").write_bytes(b"not a png")
    code, _, err = run_cli(capsys, "--images", folder, *common)
    assert code == 2 and "unreadable image" in err and err.count("\n") == 1
    code, _, err = run_cli(capsys, "--images", tmp_path / "nowhere", *common)
    assert code == 2 and "does not exist" in err
    code, _, err = run_cli(capsys, "--images", folder, "--data", root, "--evaluator", tmp_path / "none.pth")
    assert code == 2 and "train-evaluator" in err


def test_train_evaluator_cli_defaults_are_the_library_defaults(monkeypatch, tmp_path, capsys):
    # the CLI repeats the defaults for --help; the measured README numbers are for train_evaluator's
    library = inspect.signature(ET.train_evaluator).parameters
    seen = {}
    monkeypatch.setattr(ET, "train_evaluator", lambda root, out, **kw: seen.update(kw) or {"checkpoint": str(out)})
    assert cli.main(["train-evaluator", "--data", str(tmp_path), "--out", str(tmp_path / "e.pth")]) == 0
    assert seen and seen == {k: library[k].default for k in seen}


def test_train_evaluator_mixed_precision(monkeypatch, tmp_path, capsys):
    # one flag with the diffusion trainer: --mixed-precision {auto,no,fp16,bf16}
    seen = {}
    monkeypatch.setattr(ET, "train_evaluator", lambda root, out, **kw: seen.update(kw) or {"checkpoint": str(out)})
    base = ["train-evaluator", "--data", str(tmp_path), "--out", str(tmp_path / "e.pth")]
    for value in ("no", "bf16"):
        assert cli.main(base + ["--mixed-precision", value]) == 0 and seen["mixed_precision"] == value
    with pytest.raises(SystemExit):
        cli.main(["train-evaluator", "--help"])
    assert "--mixed-precision {auto,no,fp16,bf16}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(base + ["--mixed-precision", "fp32"])


def test_nan_weights_are_refused_and_digest_follows_the_weights(tmp_path):
    torch.manual_seed(0)
    net = E.build_network()
    path = E.Evaluator(net).save(tmp_path / "a.pth")
    copy = tmp_path / "copy.pth"
    copy.write_bytes(path.read_bytes())
    assert E.Evaluator.load(path).digest() == E.Evaluator.load(copy).digest()
    torch.manual_seed(1)
    assert E.Evaluator(E.build_network()).digest() != E.Evaluator.load(path).digest()
    with torch.no_grad():
        net.fc[0].weight[0, 0] = float("nan")
    bad = E.Evaluator(net).save(tmp_path / "nan.pth")
    one_line(ValueError, E.Evaluator.load, bad, match="NaN or infinite weights (fc.0.weight)")


def test_a_16_bit_png_is_read_at_its_brightness_not_white(tmp_path):
    grey = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    Image.fromarray(grey).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    pixels = data.read_image(tmp_path / "g16.png", 64)
    assert pixels.min() == 0 and pixels.max() == 255 and 120 < pixels.mean() < 135


def test_output_paths_are_checked_before_the_work(tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    assert cli.main(["train-evaluator", "--data", str(tmp_path / "nodata"), "--out", str(tmp_path / "folder"),
                     "--force"]) == 2
    assert "is a folder; give the checkpoint's file path" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert cli.main(["evaluate", "--images", str(tmp_path), "--json", str(tmp_path / "file" / "x.json")]) == 2
    assert "--json" in capsys.readouterr().err


@pytest.mark.parametrize("where, message", [
    ("file/x.pth", "lies under the file"),
    ("json-folder/x.pth", "x.json is a folder"),
])
def test_every_output_path_of_train_evaluator_is_checked_before_training(tmp_path, capsys, where, message):
    (tmp_path / "file").write_text("x")
    (tmp_path / "json-folder" / "x.json").mkdir(parents=True)
    assert cli.main(["train-evaluator", "--data", str(tmp_path / "nodata"), "--out", str(tmp_path / where)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_an_unreadable_image_says_permission_denied(tmp_path, monkeypatch):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(data.Image, "open", denied)
    one_line(PermissionError, data.read_image, tmp_path / "a.png", 64, match="permission denied")


def test_a_course_style_judge_learns_from_blurred_images(tmp_path, monkeypatch):
    root = toy_root(tmp_path / "root", 64, seed=1)
    seen = {}

    def record(size):
        def keep(images, generator=None):
            seen.setdefault(size, []).append(images)
            return images
        return keep

    for size in (64, 32):
        monkeypatch.setattr(ET, "augment", record(size))
        report = ET.train_evaluator(root, tmp_path / f"judge{size}.pth", epochs=1, batch_size=16, progress=False,
                                    train_size=size)
        assert report["train_size"] == size and all(x.shape[-2:] == (64, 64) for x in seen[size])

    def edges(batches):  # energy of the differences between neighbouring pixels: upsampling turns steps into ramps
        x = torch.cat(batches)
        return (x[..., 1:] - x[..., :-1]).square().mean()

    assert edges(seen[32]) < 0.8 * edges(seen[64])
    one_line(ValueError, ET.train_evaluator, root, tmp_path / "x.pth", train_size=65, match="--train-size")


@pytest.mark.parametrize("native", [True, False])
def test_train_evaluator_takes_its_precision_from_the_hardware_and_records_it(tmp_path, monkeypatch, capsys, native):
    from cddpm import device

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: native)
    autocast, real = [], torch.autocast
    monkeypatch.setattr(torch, "autocast", lambda *a, **k: autocast.append(k) or real(*a, **k))
    root = toy_root(tmp_path / "toy", n=18, seed=0)
    report = ET.train_evaluator(root, tmp_path / "judge.pth", epochs=1, batch_size=8, progress=False)
    used = "bf16" if native else "no"
    assert report["mixed_precision"] == "auto" and report["precision"] == used
    assert report["precision_reason"].startswith("auto: this CPU")
    assert {(k["dtype"], k["enabled"]) for k in autocast} == {(torch.bfloat16, True) if native else (None, False)}
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("precision:")]
    assert said == [device.describe_precision(used, report["precision_reason"])]


def test_a_minutes_budget_sets_the_judges_steps_from_its_measured_speed(tmp_path, monkeypatch):
    from cddpm import budget

    root = toy_root(tmp_path / "root", 24, seed=1)  # 24 images, 8 a batch: 2 full batches an epoch
    probes, real = [], budget.measure
    for name, value in (("WARMUP_STEPS", 0), ("MIN_STEPS", 1), ("MIN_SECONDS", 0.0)):  # a one-step probe
        monkeypatch.setattr(budget, name, value)

    def at(steps_per_s):  # the probe still runs; it reports this speed
        monkeypatch.setattr(budget, "measure", lambda step: probes.append(
            __import__("dataclasses").replace(real(step), steps_per_s=steps_per_s)) or probes[-1])

    plain = ET.train_evaluator(root, tmp_path / "plain.pth", epochs=2, batch_size=8, progress=False)
    per_epoch = plain["steps"] // 2
    at((2 * per_epoch + 0.99) / 600)  # 10 minutes hold 2 epochs' steps, whatever the seconds spent before (< 30)
    sized = ET.train_evaluator(root, tmp_path / "sized.pth", batch_size=8, progress=False, minutes=10)
    assert len(probes) == 1 and probes[0].steps == 1
    assert sized["steps"] == 2 * per_epoch and sized["epochs"] == 2 and len(sized["history"]) == 2
    assert sized["budget"]["minutes"] == 10 and sized["budget"]["images_per_s"] == pytest.approx(probes[0].steps_per_s * 8)
    # the probe leaves no trace: the same seed and steps give the same judge as the plain 2-epoch run
    a, b = (torch.load(tmp_path / f"{name}.pth")["model"] for name in ("plain", "sized"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    at((per_epoch + 1.99) / 600)  # one epoch and 1 step: the one-cycle schedule ends inside the second epoch
    partial = ET.train_evaluator(root, tmp_path / "partial.pth", batch_size=8, progress=False, minutes=10)
    assert partial["steps"] == per_epoch + 1 and [r["epoch"] for r in partial["history"]] == [1, 2]
    assert partial["epochs"] == round((per_epoch + 1) / per_epoch, 3)
    capped = ET.train_evaluator(root, tmp_path / "capped.pth", epochs=1, batch_size=8, progress=False, minutes=10)
    assert capped["steps"] == per_epoch  # epochs cap the budget
    one_line(ValueError, ET.train_evaluator, root, tmp_path / "x.pth", minutes=0, match="minutes > 0")
