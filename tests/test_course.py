"""The user's own data (the course's files) through every entry point: one outputs layout, derived outputs keyed by
the data they came from, held-out scenes on roots we did not render, and refusals of mismatched judges and samples."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from cddpm import cli, data, folders, provenance, render
from cddpm.data import held_out
from cddpm.evaluation import evaluator as E
from cddpm.evaluation.training import train_evaluator
from cddpm.workflow import batch, profiles, report, steps

ROOT = Path(__file__).resolve().parents[1]


def not_ours(root: Path) -> Path:
    """Make a render look like the course's files: no meta.json or scenes.json of ours."""
    (root / "meta.json").unlink()
    (root / "scenes.json").unlink()
    return root


@pytest.fixture
def course(tmp_path) -> Path:
    """A stand-in for the course's folder: 8 rendered scenes (24 images) without our render's records."""
    return not_ours(render.render_dataset(tmp_path / "course", scenes=8, seed=5, command="test"))


def test_the_outputs_layout_has_one_home():
    # profiles, the workflow, the batches and the notebooks name no outputs/ path of their own
    sources = [ROOT / "lib/cddpm/workflow" / f for f in ("profiles.py", "steps.py", "batch.py")]
    sources += sorted((ROOT / "notebooks").glob("*.ipynb"))
    code = {p.name: "\n".join("".join(c["source"]) for c in json.loads(p.read_text())["cells"] if c["cell_type"] == "code")
            if p.suffix == ".ipynb" else p.read_text() for p in sources}
    assert {name: re.findall(r"[\"']outputs/", text) for name, text in code.items()} == {n: [] for n in code}


def test_a_profile_on_other_data_gets_its_own_run_batch_and_judge(tmp_path, course):
    demo = profiles.get("demo")
    assert (demo.data_root, demo.run, demo.batch) == ("data/synthetic-iclevr", "outputs/runs/demo", "demo")
    moved = profiles.get("demo", outputs=str(tmp_path / "o"))  # another outputs folder: the data goes in it too
    assert Path(moved.data_root) == tmp_path / "o/data/synthetic-iclevr" and Path(moved.run) == tmp_path / "o/runs/demo"
    p = profiles.get("demo", data_root=str(course), outputs=str(tmp_path / "o"))
    key = provenance.data_key(course)
    assert p.batch == f"demo-{key}" and Path(p.run) == tmp_path / "o/runs" / p.batch
    assert profiles.evaluator_path(p) == tmp_path / "o/evaluator" / key / "minutes2.pth"  # the demo judge's 2-minute budget
    assert profiles.evaluator_path(dataclasses.replace(p, evaluator_epochs=None, evaluator_minutes=None)).name == "checkpoint.pth"
    with pytest.raises(FileNotFoundError, match="nowhere/train.json"):
        profiles.get("demo", data_root=str(tmp_path / "nowhere"))


def test_the_data_key_follows_every_file_that_makes_the_data(tmp_path, course):
    key = provenance.data_key(course)
    twin = render.render_twin(data.load_mapping(course), tmp_path / "twin", seed=5)
    for name in ("test.json", "new_test.json"):
        shutil.copy(course / name, twin / name)
    assert provenance.train_sha(twin) == provenance.train_sha(course)  # the same labels...
    assert provenance.data_key(twin) != key  # ...but our render's images: another data set
    copy = shutil.copytree(course, tmp_path / "copy" / course.name)
    assert provenance.data_key(copy) == key
    (copy / "test.json").write_text(json.dumps([["red cube"]]))
    assert provenance.data_key(copy) != key


def test_a_judge_records_the_train_json_it_learned(tmp_path, course):
    report_ = train_evaluator(course, tmp_path / "j.pth", epochs=1, batch_size=8, progress=False, hold_out=True)
    judge = E.Evaluator.load(tmp_path / "j.pth")
    assert judge.trained_on == provenance.train_sha(course) == report_["train_json_sha1"]
    assert torch.load(tmp_path / "j.pth", weights_only=True)[E.TRAINED_ON] == judge.trained_on
    held = int(held_out(list(data.load_mapping(course))).sum())
    assert report_["val_images"] == held == 3 and report_["train_images"] == 21  # validated on the held-out scene
    # the course's own format, {'model': state_dict} alone, still loads: it records nothing
    torch.save({"model": judge.network.state_dict()}, tmp_path / "course.pth")
    assert E.Evaluator.load(tmp_path / "course.pth").trained_on is None


def test_the_workflow_never_reuses_a_judge_or_ground_truth_across_data(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    a = render.render_dataset(tmp_path / "a", scenes=6, seed=1, command="test")
    b = render.render_dataset(tmp_path / "b", scenes=6, seed=2, command="test")
    pa, pb = (profiles.get("smoke", data_root=str(r), evaluator_epochs=1) for r in (a, b))
    judge = steps.ensure_evaluator(pa)
    assert judge.trained_on == provenance.train_sha(a) and judge.path == profiles.evaluator_path(pa)
    assert profiles.evaluator_path(pb) != profiles.evaluator_path(pa)
    assert steps.ground_truth(pa, "test") == folders.ground_truth(pa.outputs, provenance.data_key(a), "test")
    assert steps.ground_truth(pb, "test") == folders.ground_truth(pb.outputs, provenance.data_key(b), "test")
    # a judge of other data filed under b's key is refused; an older one that records nothing passes with a note
    profiles.evaluator_path(pb).parent.mkdir(parents=True)
    shutil.copy(profiles.evaluator_path(pa), profiles.evaluator_path(pb))
    with pytest.raises(ValueError, match="learned another train.json"):
        steps.ensure_evaluator(pb)
    torch.save({"model": judge.network.state_dict()}, profiles.evaluator_path(pb))
    capsys.readouterr()
    assert steps.ensure_evaluator(pb).trained_on is None and "records no train.json" in capsys.readouterr().err
    # ground truth of other conditions or counts is rendered again, not reused
    gt = steps.ground_truth(pa, "test")
    stamp = (gt / "train.json").stat().st_mtime_ns
    assert steps.ground_truth(pa, "test") == gt and (gt / "train.json").stat().st_mtime_ns == stamp
    more = dataclasses.replace(pa, gt_per_condition=2)
    assert len(data.load_mapping(steps.ground_truth(more, "test"))) == 2 * len(data.load_condition_lists(a, "test"))


def test_ground_truth_of_a_realistic_root_is_rendered_realistic(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    clean = render.render_dataset(tmp_path / "clean", scenes=4, seed=1, size=32, command="test")
    real = render.render_dataset(tmp_path / "real", scenes=4, seed=1, size=32, command="test", realistic=True)
    kinds = [data.read_json(steps.ground_truth(profiles.get("smoke", data_root=str(r)), "test") / "meta.json")
             ["realistic"] for r in (clean, real)]
    assert kinds == [False, True]  # the judge check and the fidelity reference look like the root's own images


def test_on_a_root_we_did_not_render_the_judge_is_checked_on_its_held_out_scenes(tmp_path, monkeypatch, course):
    monkeypatch.chdir(tmp_path)
    p = profiles.get("smoke", data_root=str(course))
    judge = E.Evaluator(E.build_network().eval())
    (what, scores), = steps.judge_on_ground_truth(p, judge).items()
    assert "3 held-out images" in what and "not our render" in what and scores["n"] == 3
    assert not (tmp_path / p.outputs / "gt").exists()  # nothing rendered for data that is not ours
    rendered = profiles.get("smoke", data_root=str(render.render_dataset(tmp_path / "ours", scenes=4, command="t")))
    assert set(steps.judge_on_ground_truth(rendered, judge)) == {"ground-truth renders of test",
                                                                    "ground-truth renders of new_test"}


def test_training_on_a_root_we_did_not_render_leaves_its_held_out_scenes_out(tmp_path, monkeypatch, course):
    from cddpm import train

    seen = []
    real = train.Trainer
    monkeypatch.setattr(train, "Trainer", lambda config, images, *a: seen.append(images) or real(config, images, *a))
    p = profiles.get("smoke", data_root=str(course), run=str(tmp_path / "run"), max_steps=1)
    config = profiles.train_config(p)
    assert config.hold_out
    train.train(dataclasses.replace(config, mixed_precision="no"))  # one accelerate state per test process
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["train"]["hold_out"] is True and stored["dataset"]["held_out_images"] == 3
    ds = data.ICLEVRDataset(course, size=config.model.sample_size, preload=True)
    held = held_out([f.name for f in ds.files])
    assert len(seen[0]) == 21 and torch.equal(seen[0], ds.images[~held])  # the held-out scene never reaches it
    ours = profiles.get("smoke", data_root=str(render.render_dataset(tmp_path / "ours", scenes=4, command="t")))
    assert not profiles.train_config(ours).hold_out  # on our renders, ground truth is rendered instead


def test_held_out_scenes_of_the_course_labels_are_whole_and_a_twentieth(official):
    names = list(data.load_mapping(official))
    held = held_out(names)
    scenes = {data.scene_step(n)[0] for n in names}
    held_scenes = {data.scene_step(n)[0] for n, h in zip(names, held.tolist()) if h}
    assert len(held_scenes) == round(0.05 * len(scenes))
    assert all(data.scene_step(n)[0] not in held_scenes for n, h in zip(names, held.tolist()) if not h)
    assert torch.equal(held, held_out(names))  # the same set for every caller


def fake_run(path: Path, root: Path) -> Path:
    """A run folder with only a config.json: enough for a batch's checks."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model": {}, "train": {}, "scheduler": {}, "data": str(root)}))
    return path


def test_a_batch_refuses_folders_of_another_run_or_judge_before_it_runs(tmp_path, monkeypatch, course):
    executed = []
    monkeypatch.setattr(batch, "_execute", lambda nb, out, params: executed.append(params))
    judge = E.Evaluator(E.build_network()).save(tmp_path / "j.pth")
    b = batch.Batch(run=str(fake_run(tmp_path / "run", course)), name="b", evaluator=str(judge), seeds=[0],
                    splits=["test"], outputs=str(tmp_path / "o"), notebooks=str(ROOT / "notebooks"), report=False)
    (tag,) = [c["tag"] for c in b.combinations()]
    folder = b.samples_dir / tag
    folder.mkdir(parents=True)
    good = dict(run_path=str(Path(b.run).resolve()), evaluator_sha256=E.Evaluator.load(judge).digest(),
                conditions_sha1=provenance.conditions_sha(data.load_condition_lists(course, "test")))
    (folder / "metrics.json").write_text(json.dumps(good))
    assert batch.run_batch(b)["skipped"] == [tag] and not executed
    for key in good:
        (folder / "metrics.json").write_text(json.dumps({**good, key: "other"}))
        with pytest.raises(FileExistsError, match=f"another {key.split('_')[0]} than this batch's; pass --force"):
            batch.run_batch(b)
    assert not executed
    (folder / "metrics.json").write_text(json.dumps({"topk": 0.5}))  # sampled by an older cddpm: refused alike
    with pytest.raises(FileExistsError, match="samples that record no run, evaluator or conditions; pass --force"):
        batch.run_batch(b)
    assert batch.run_batch(dataclasses.replace(b, force=True))["done"] == [tag]
    assert executed[0]["evaluator"] == str(judge) and executed[0]["outputs"] == str(tmp_path / "o")


def test_cddpm_batch_names_its_judge(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["batch", "--run", str(tmp_path), "--name", "x"])
    assert "--evaluator" in capsys.readouterr().err


def test_a_report_mixes_no_judges(tmp_path):
    judge = E.Evaluator(E.build_network()).save(tmp_path / "j.pth")
    digest = E.Evaluator.load(judge).digest()
    base = dict(split="test", checkpoint="last", sampler="ddim", steps=2, guidance=1.0, seed=0, topk=0.5,
                exact_set=0.1, extra_object_rate=0.2)
    for name, sha in (("a", digest), ("b", digest), ("c", None)):
        (tmp_path / "batch" / name).mkdir(parents=True)
        (tmp_path / "batch" / name / "metrics.json").write_text(json.dumps({**base, "evaluator_sha256": sha}))
    assert report.build(tmp_path / "batch", tmp_path / "r", evaluator=judge)["records"] == 3
    (tmp_path / "batch" / "b" / "metrics.json").write_text(json.dumps({**base, "evaluator_sha256": "f" * 64}))
    with pytest.raises(ValueError, match="a table mixes no judges") as err:
        report.build(tmp_path / "batch", tmp_path / "r2", evaluator=judge)
    assert "\n" not in str(err.value) and not (tmp_path / "r2").exists()


def test_the_demo_checks_the_users_root_and_judge_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(batch, "_execute", lambda *a: pytest.fail("a notebook ran"))
    with pytest.raises(FileNotFoundError, match="--evaluator .*none.pth not found"):
        batch.run_demo("smoke", outputs=str(tmp_path), evaluator=str(tmp_path / "none.pth"))
    with pytest.raises(FileNotFoundError, match="nowhere/train.json"):
        batch.run_demo("smoke", outputs=str(tmp_path), data=str(tmp_path / "nowhere"))
    bad = render.render_dataset(tmp_path / "bad", scenes=2, command="t")
    (bad / "new_test.json").write_text(json.dumps([["pink cube"]]))
    with pytest.raises(ValueError, match="new_test.json entry 0"):
        batch.run_demo("smoke", outputs=str(tmp_path), data=str(bad))


def test_the_demo_hands_the_users_root_judge_and_outputs_to_every_notebook(tmp_path, monkeypatch, capsys, course):
    import papermill

    calls, batches = {}, []

    def execute(notebook, output, parameters, stream=False):  # what _execute checks, without running the notebook
        assert set(parameters) <= set(papermill.inspect_notebook(str(notebook))), notebook.name
        calls[notebook.stem] = parameters

    monkeypatch.setattr(batch, "_execute", execute)
    monkeypatch.setattr(batch, "run_batch", lambda b: batches.append(b) or {"failed": [], "report": None})
    monkeypatch.setattr(steps, "judge_on_ground_truth", lambda p, judge: {"the held-out scenes": dict(
        topk=1.0, exact_set=1.0, n=3)})
    judge = E.Evaluator(E.build_network()).save(tmp_path / "checkpoint.pth")
    out = str(tmp_path / "out")
    assert cli.main(["demo", "--profile", "smoke", "--data", str(course), "--evaluator", str(judge),
                     "--outputs", out]) == 0
    expected = dict(profile="smoke", outputs=out, data_root=str(course))
    assert calls == {"01_data": {**expected, "evaluator": str(judge)}, "02_train": expected}
    key = provenance.data_key(course)
    assert {(b.run, b.name, b.evaluator, b.data, b.outputs) for b in batches} == {
        (str(Path(out) / "runs" / f"smoke-{key}"), f"smoke-{key}", str(judge), str(course), out)}
    printed = capsys.readouterr()
    assert "held-out scenes stay out of training" in printed.out and "the judge on the held-out scenes" in printed.out
    assert "records no train.json" in printed.err  # the course's checkpoint: accepted, with a note
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):  # every notebook takes the data and outputs on
        names = set(papermill.inspect_notebook(str(path)))
        assert {"profile", "outputs", "data_root"} <= names and (path.stem == "02_train" or "evaluator" in names)


def test_make_demo_passes_the_data_and_judge_on():
    done = subprocess.run(["make", "-n", "demo", "DATA=my data", "EVALUATOR=c.pth", "OUTPUTS=o"], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    assert 'cddpm demo --data "my data" --evaluator "c.pth" --outputs "o"' in done.stdout


@pytest.mark.slow
def test_the_demo_on_a_users_root_writes_everything_under_outputs(tmp_path, monkeypatch, capsys, course):
    """`cddpm demo --data ROOT --evaluator PATH --outputs DIR` end to end, in the smoke profile cut to one batch."""
    monkeypatch.chdir(tmp_path)
    smoke = profiles.PROFILES["smoke"]
    monkeypatch.setitem(profiles.PROFILES, "smoke", dataclasses.replace(smoke, seeds=(0,), splits=("test",),
                                                                        guidance=(2.0,), ddpm_steps=None))
    judge = train_evaluator(course, tmp_path / "judge.pth", epochs=1, batch_size=8, progress=False)["checkpoint"]
    out = tmp_path / "elsewhere"
    assert cli.main(["demo", "--profile", "smoke", "--data", str(course), "--evaluator", judge,
                     "--outputs", str(out), "--notebooks", str(ROOT / "notebooks"), "--device", "cpu"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["course", "elsewhere", "judge.json", "judge.pth"]
    assert sorted(p.name for p in out.iterdir()) == ["figures", "papermill", "report", "runs", "samples"]
    name = f"smoke-{provenance.data_key(course)}"
    stored = json.loads((out / "runs" / name / "config.json").read_text())
    assert stored["data"] == str(course.resolve()) and stored["dataset"]["held_out_images"] == 3
    (sample_dir,) = (out / "samples" / name).iterdir()
    record = json.loads((sample_dir / "metrics.json").read_text())
    assert record["conditions"] == data.load_condition_lists(course, "test") and record["data"] == str(course.resolve())
    assert record["evaluator_sha256"] == E.Evaluator.load(judge).digest() and record["device"] == "cpu"
    assert (out / "report" / name / "table.md").is_file() and (out / "figures" / "01_data" / name).is_dir()
    assert "the judge on 3 held-out images of" in capsys.readouterr().out
