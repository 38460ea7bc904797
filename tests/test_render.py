import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cddpm import cli, data, render
from cddpm import labels as L
from cddpm.render import scenes as S

SIZE = 32


def pixels(root: Path, name: str) -> np.ndarray:
    with Image.open(root / "iclevr" / name) as im:
        assert im.mode == "RGB" and im.size == (SIZE, SIZE)
        return np.asarray(im).astype(int)


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("render") / "root"
    assert cli.main(["render", "--out", str(out), "--scenes", "8", "--size", str(SIZE), "--seed", "3"]) == 0
    return out


def test_layout_and_counts(root):
    assert read(root, "objects.json") == L.objects_dict()
    train = read(root, "train.json")
    names = [f"CLEVR_train_{i:06d}_{k}.png" for i in range(8) for k in range(3)]
    assert list(train) == names and sorted(p.name for p in (root / "iclevr").iterdir()) == names
    for i in range(8):
        a, b, c = (train[f"CLEVR_train_{i:06d}_{k}.png"] for k in range(3))
        assert len(a) == 1 and b[:1] == a and c[:2] == b and len(set(c)) == 3
    for split, lengths in (("test", {1: 6, 2: 12, 3: 14}), ("new_test", {2: 12, 3: 20})):
        conditions = data.load_condition_lists(root, split)
        assert {n: sum(len(c) == n for c in conditions) for n in lengths} == lengths
        assert len({frozenset(c) for c in conditions}) == 32
    truth = read(root, "scenes.json")
    assert list(truth) == names and all([o["label"] for o in truth[n]] == train[n] for n in names)
    meta = read(root, "meta.json")
    assert meta["seed"] == 3 and meta["size"] == SIZE and meta["images"] == 24 and meta["renderer"] == render.VERSION
    assert meta["command"] == f"cddpm render --out {root} --scenes 8 --seed 3 --size {SIZE}"
    assert {p.name for p in root.parent.iterdir()} == {"root"}  # no temporary folder left behind


def read(root: Path, name: str):
    return json.loads((root / name).read_text())


def test_classes_balanced_in_every_slot():
    lists = S.balanced_labels(96, np.random.default_rng(0))
    assert all(len(set(labels)) == 3 for labels in lists)
    for slot in range(3):
        counts = np.bincount([L.INDEX[labels[slot]] for labels in lists], minlength=24)
        assert counts.min() == counts.max() == 4


def test_same_seed_same_bytes_other_seed_differs(root, tmp_path, monkeypatch):
    again = tmp_path / "again"
    assert cli.main(["render", "--out", str(root), "--scenes", "8", "--size", str(SIZE), "--seed", "3",
                     "--force"]) == 0  # same command as the fixture's
    monkeypatch.setattr(render, "CHUNK", 3)  # 3 tasks over 2 processes instead of 1 task in this one
    render.render_dataset(again, scenes=8, seed=3, size=SIZE, workers=2,
                          command=f"cddpm render --out {root} --scenes 8 --seed 3 --size {SIZE}")
    assert files(again) == files(root)
    other = render.render_dataset(tmp_path / "other", scenes=8, seed=4, size=SIZE)
    assert read(other, "train.json") != read(root, "train.json")
    assert read(other, "test.json") != read(root, "test.json")
    assert not np.array_equal(pixels(other, "CLEVR_train_000000_0.png"), pixels(root, "CLEVR_train_000000_0.png"))


def test_each_image_adds_one_object(root):
    truth = read(root, "scenes.json")
    for i in range(8):
        for k in range(2):
            before, after = (f"CLEVR_train_{i:06d}_{j}.png" for j in (k, k + 1))
            same = [{key: o[key] for key in ("label", "material", "size", "floor")} for o in truth[after][:-1]]
            assert same == [{key: o[key] for key in same[0]} for o in truth[before]]
            changed = np.abs(pixels(root, after) - pixels(root, before)).max(-1) > 2
            assert changed.sum() >= 2  # the new object shows
            v, u = np.nonzero(changed)
            nu, nv = truth[after][-1]["position"]
            assert np.hypot(u - nu, v - nv).max() < 0.4 * SIZE  # nothing changes away from it


def test_ground_truth_matches_pixels(root):
    from cddpm.render import raycast as R

    truth = read(root, "scenes.json")
    palette = {c: np.array(rgb, float) / np.linalg.norm(rgb) for c, rgb in S.RGB.items()}
    floor = R.renderer(SIZE, R.SAMPLES).render(R.Scenes.empty(1)).images[0].astype(int)
    for name, objects in truth.items():
        image = pixels(root, name)
        for o in objects:
            assert S.MIN_VISIBLE - 0.1 <= o["visible"] <= 1 and o["material"] in S.MATERIALS
            u, v = o["position"]
            assert np.abs(image[v, u] - floor[v, u]).sum() > 30  # not the empty floor
            rgb = image[v, u] / np.linalg.norm(image[v, u])
            nearest = max(palette, key=lambda c: rgb @ palette[c])
            assert nearest == o["label"].split()[0], (name, o, image[v, u])


def test_root_loads_through_the_dataset(root):
    ds = data.ICLEVRDataset(root, size=SIZE, preload=True)
    assert len(ds) == 24 and ds.images.shape == (24, 3, SIZE, SIZE)
    image, hot = ds[5]
    assert -1 <= image.min() < image.max() <= 1
    assert L.decode(hot) == sorted(read(root, "train.json")["CLEVR_train_000001_2.png"], key=L.INDEX.get)


def test_conditions_output_matches_its_conditions(root, tmp_path):
    conditions = [["red cube"], ["cyan sphere", "gray cylinder", "yellow cube"]]
    path = tmp_path / "c.json"
    path.write_text(json.dumps(conditions))
    out = tmp_path / "gt"
    assert cli.main(["render", "--conditions", str(path), "--per-condition", "2", "--out", str(out),
                     "--size", str(SIZE)]) == 0
    assert data.load_mapping(out) == {f"condition_{i:03d}_{n:03d}.png": c for i, c in enumerate(conditions)
                                      for n in range(2)}
    assert len(data.ICLEVRDataset(out, size=SIZE)) == 4
    assert cli.main(["render", "--split", "new_test", "--data", str(root), "--per-condition", "1",
                     "--out", str(tmp_path / "split"), "--size", str(SIZE)]) == 0
    assert list(data.load_mapping(tmp_path / "split").values()) == data.load_condition_lists(root, "new_test")


def test_twin_keeps_names_and_labels_and_reproduces_a_render(root, tmp_path):
    twin = render.render_twin(data.load_mapping(root), tmp_path / "twin", seed=3, size=SIZE)
    assert all(files(twin)[f"iclevr/{n}"] == files(root)[f"iclevr/{n}"] for n in read(root, "train.json"))
    mapping = {"a.png": ["red cube", "blue sphere"], "CLEVR_train_000123_0.png": ["gray cylinder"]}
    other = render.render_twin(mapping, tmp_path / "other", size=SIZE)
    assert data.load_mapping(other) == mapping


@pytest.fixture(scope="module")
def realistic(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("realistic") / "root"
    assert cli.main(["render", "--out", str(out), "--scenes", "8", "--size", str(SIZE), "--seed", "3",
                     "--realistic"]) == 0
    return out


def test_realistic_renders_the_same_scenes_in_other_pixels(root, realistic):
    for name in ("train.json", "test.json", "new_test.json", "objects.json"):
        assert read(realistic, name) == read(root, name)
    keep = ("label", "material", "size", "floor")
    clean, real = read(root, "scenes.json"), read(realistic, "scenes.json")
    assert {n: [{k: o[k] for k in keep} for o in v] for n, v in real.items()} == \
        {n: [{k: o[k] for k in keep} for o in v] for n, v in clean.items()}
    # the jittered camera moves objects on screen by a few pixels at most
    shift = [np.hypot(*np.subtract(a["position"], b["position"])) for n in clean for a, b in zip(clean[n], real[n])]
    assert 0 < max(shift) <= 0.15 * SIZE
    meta = read(realistic, "meta.json")
    assert meta["realistic"] is True and read(root, "meta.json")["realistic"] is False
    assert meta["command"].endswith(" --realistic")
    names = list(read(root, "train.json"))
    assert all(not np.array_equal(pixels(realistic, n), pixels(root, n)) for n in names)
    # each scene its own light: the floor's corner differs between scenes and (slightly) between a scene's steps
    corner = {n: pixels(realistic, n)[:4, :4].mean() for n in names}
    assert len({round(corner[f"CLEVR_train_{i:06d}_0.png"]) for i in range(8)}) > 4
    assert all(corner[f"CLEVR_train_{i:06d}_0.png"] != corner[f"CLEVR_train_{i:06d}_1.png"] for i in range(8))


def test_realistic_is_deterministic_and_its_twin_reproduces_it(realistic, tmp_path, monkeypatch):
    monkeypatch.setattr(render, "CHUNK", 3)  # other chunks, two processes
    again = render.render_dataset(tmp_path / "again", scenes=8, seed=3, size=SIZE, workers=2, realistic=True,
                                  command=read(realistic, "meta.json")["command"])
    assert files(again) == files(realistic)
    twin = render.render_twin(data.load_mapping(realistic), tmp_path / "twin", seed=3, size=SIZE, realistic=True)
    assert all(files(twin)[f"iclevr/{n}"] == files(realistic)[f"iclevr/{n}"] for n in read(realistic, "train.json"))


def test_official_twin_names(official, tmp_path):
    mapping = dict(list(data.load_mapping(official).items())[:6])
    assert data.load_mapping(render.render_twin(mapping, tmp_path / "twin", size=SIZE)) == mapping


def test_large_size_keeps_the_scenes(root, tmp_path):
    big = render.render_dataset(tmp_path / "big", scenes=1, seed=3, size=256)
    with Image.open(big / "iclevr" / "CLEVR_train_000000_2.png") as im:
        assert im.size == (256, 256)
    floors = lambda r: [o["floor"] for o in read(r, "scenes.json")["CLEVR_train_000000_2.png"]]  # noqa: E731
    assert floors(big) == floors(root)


def test_failed_render_leaves_nothing(tmp_path, monkeypatch):
    def boom(args):
        raise RuntimeError("boom")
    monkeypatch.setattr(render, "_render_chunk", boom)
    with pytest.raises(RuntimeError):
        render.render_dataset(tmp_path / "out", scenes=1, size=SIZE, workers=1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, message", [
    (["--scenes", "0"], "--scenes must be an integer from 1"),
    (["--size", "8"], "--size must be an integer from 16 to 1024"),
    (["--size", "4096"], "--size must be an integer from 16 to 1024"),
    (["--seed", "-1"], "--seed must be an integer from 0"),
    (["--conditions", "{good}", "--per-condition", "0"], "--per-condition must be an integer from 1"),
    (["--conditions", "{missing}"], "missing"),
    (["--conditions", "{not_list}"], "must hold a non-empty list of object lists"),
    (["--conditions", "{bad_json}"], "malformed json"),
    (["--conditions", "{unknown}"], "entry 1: 'pink cube' is not an i-CLEVR object; did you mean 'purple cube'?"),
    (["--conditions", "{duplicate}"], "entry 0: duplicate objects"),
    (["--conditions", "{too_many}"], "exceed the limit of 3"),
    (["--split", "test", "--data", "{missing}"], "does not exist"),
    (["--labels-from", "{missing}"], "does not exist"),
    (["--out", "{full}"], "is not empty and is not a cddpm render"),
    (["--out", "{full}", "--force"], "is not a cddpm render"),
    (["--out", "{good}"], "is a file; choose a folder path"),
])
def test_bad_arguments_give_one_line_errors(argv, message, tmp_path, capsys):
    paths = {"missing": tmp_path / "missing", "full": tmp_path / "full", "good": tmp_path / "good.json",
             "not_list": tmp_path / "not_list.json", "bad_json": tmp_path / "bad.json",
             "unknown": tmp_path / "unknown.json", "duplicate": tmp_path / "dup.json", "too_many": tmp_path / "many.json"}
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    contents = {"good": [["red cube"]], "not_list": {"red cube": 1}, "unknown": [["red cube"], ["pink cube"]],
                "duplicate": [["red cube", "red cube"]], "too_many": [["red cube", "blue cube", "gray cube", "cyan cube"]]}
    for key, content in contents.items():
        paths[key].write_text(json.dumps(content))
    paths["bad_json"].write_text("[[")
    argv = [a.format(**paths) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    assert cli.main(["render", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cddpm render: error: ") and message in err, err
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine" and not (tmp_path / "out").exists()


def test_culling_and_chunking_do_not_change_pixels(monkeypatch):
    from cddpm.render import raycast as R

    lists = S.balanced_labels(6, np.random.default_rng(1))
    images = [things[:k] for things in S.layout([(0, i) for i in range(6)], lists, seed=1) for k in (1, 2, 3)]
    fresh = R.Renderer(SIZE, 2)
    culled = fresh.render(S.batch(images))
    small_chunks = fresh.render(S.batch(images), rays=100)
    assert fresh.tiles(S.batch(images)).mean() < 0.7  # most tiles are skipped
    ids = fresh.render(S.batch(images), shade=False)
    monkeypatch.setattr(R.Renderer, "tiles", lambda self, s, shadows: np.ones((len(s), self.n, self.n), bool))
    everything = fresh.render(S.batch(images))
    assert culled.images.shape == (18, SIZE, SIZE, 3)
    for other in (small_chunks, everything):
        assert np.array_equal(other.images, culled.images) and np.array_equal(other.position, culled.position)
    for other in (small_chunks, everything, ids):
        assert np.array_equal(other.visible, culled.visible) and np.array_equal(other.covered, culled.covered)


def test_pixels_match_the_reference_on_any_machine(tmp_path):
    # pixels and ground truth hashed on the development machine; a mismatch elsewhere means the renderer is
    # not machine-independent (or its output changed: then bump render.VERSION and this hash together)
    out = render.render_dataset(tmp_path / "r", scenes=2, size=SIZE, workers=1)
    digest = hashlib.sha256()
    for name in read(out, "train.json"):
        digest.update(np.asarray(Image.open(out / "iclevr" / name)).tobytes())
    digest.update((out / "scenes.json").read_bytes())
    assert digest.hexdigest() == "2eded95e47c247ebe425f651f0c99302eb669291c855939669fc0d139c271f65"


def test_force_never_deletes_what_a_render_did_not_write(tmp_path, capsys):
    foreign = tmp_path / "x"
    (foreign / "results").mkdir(parents=True)
    (foreign / "meta.json").write_text('{"tool": "other"}')
    (foreign / "thesis.tex").write_text("precious")
    (foreign / "results" / "t.csv").write_text("r")
    assert cli.main(["render", "--out", str(foreign), "--scenes", "2", "--size", str(SIZE), "--force"]) == 2
    assert "is not a cddpm render" in capsys.readouterr().err
    assert (foreign / "thesis.tex").read_text() == "precious" and (foreign / "results" / "t.csv").read_text() == "r"

    ours = tmp_path / "ours"
    render.render_dataset(ours, scenes=2, size=SIZE)
    (ours / "notes.txt").write_text("mine")
    (ours / "iclevr" / "extra.png").write_bytes(b"mine")
    assert cli.main(["render", "--out", str(ours), "--scenes", "2", "--size", str(SIZE), "--force"]) == 2
    err = capsys.readouterr().err
    assert "did not write (iclevr/extra.png, notes.txt)" in err and err.count("\n") == 1
    assert (ours / "notes.txt").read_text() == "mine" and (ours / "iclevr" / "extra.png").read_bytes() == b"mine"
    (ours / "notes.txt").unlink()
    (ours / "iclevr" / "extra.png").unlink()
    (ours / ".cache").mkdir()  # the training loader's cache is ours too
    assert cli.main(["render", "--out", str(ours), "--scenes", "2", "--size", str(SIZE), "--seed", "1", "--force"]) == 0
    assert read(ours, "meta.json")["seed"] == 1


def test_a_killed_render_leaves_nothing_behind_the_next_one(tmp_path):
    out = tmp_path / "root"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".root.{dead.pid}.tmp"
    (stale / "iclevr").mkdir(parents=True)
    live = tmp_path / f".root.{os.getpid()}.tmp-other"  # not a name a render writes: left alone
    live.mkdir()
    render.render_dataset(out, scenes=1, size=SIZE)
    assert not stale.exists() and live.is_dir()


def test_ctrl_c_during_a_render_is_one_line_and_leaves_nothing(tmp_path):
    out = tmp_path / "root"
    # a shell's background job inherits SIGINT ignored; the user at a terminal, whom this test stands for, does not
    proc = subprocess.Popen([sys.executable, "-m", "cddpm", "render", "--out", str(out), "--scenes", "3000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for _ in range(600):  # wait until the render is under way
        if list(tmp_path.glob(".root.*.tmp/iclevr/*.png")):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err and "interrupted" in err, err
    assert not out.exists() and not list(tmp_path.glob(".root.*"))


def test_force_treats_only_the_loaders_cache_files_as_ours(tmp_path, capsys):
    ours = render.render_dataset(tmp_path / "ours", scenes=2, size=SIZE)
    (ours / ".cache").mkdir()
    (ours / ".cache" / "train_64.pt").write_bytes(b"cache")
    (ours / ".cache" / ".new_test_64.pt.4242.tmp").write_bytes(b"a save that died")  # paths.atomic_write's
    (ours / ".cache" / "my-notes.txt").write_text("mine")
    assert cli.main(["render", "--out", str(ours), "--scenes", "2", "--size", str(SIZE), "--force"]) == 2
    err = capsys.readouterr().err
    assert ".cache/my-notes.txt" in err and ".new_test_64.pt.4242.tmp" not in err
    assert (ours / ".cache" / "my-notes.txt").read_text() == "mine"
