"""`cddpm batch` in the smoke profile: papermill executes 03_sample per combination, then 04_report."""
import json
import os
from pathlib import Path

import pytest

from cddpm import cli, render
from cddpm.evaluation.training import train_evaluator
from cddpm.train import TrainConfig, train
from cddpm.workflow import batch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def smoke_run(tmp_path, monkeypatch):
    """A tiny rendered root, a 1-epoch evaluator and a 4-step run of the default design, in a temporary working
    folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CDDPM_PROFILE", "smoke")
    render.render_dataset("data", scenes=12, seed=3, command="test")
    train_evaluator("data", "evaluator.pth", epochs=1, batch_size=16, progress=False)
    train(TrainConfig(data="data", out="run", max_steps=4, batch_size=8, save_every=2))
    return tmp_path


@pytest.mark.slow
def test_batch_two_seeds_report(smoke_run, capsys):
    code = cli.main(["batch", "--run", "run", "--name", "b", "--seeds", "0", "1", "--splits", "test",
                     "--steps", "3", "--guidance", "1", "2", "--evaluator", "evaluator.pth",
                     "--notebooks", str(ROOT / "notebooks"), "--device", "cpu"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["failed"] == [] and len(result["done"]) == 4
    executed = sorted(p.name for p in (smoke_run / "outputs/papermill/b").glob("*.ipynb"))
    assert "03_sample__test__seed1__last__dpmsolver3__g2.ipynb" in executed and "04_report.ipynb" in executed
    sampled = json.loads((smoke_run / "outputs/samples/b/test__seed1__last__dpmsolver3__g2/metrics.json").read_text())
    assert sampled["device"] == "cpu"  # --device reached the notebook
    report = smoke_run / "outputs/report/b"
    rows = json.loads((report / "table.json").read_text())
    assert len(rows) == 2 and all(r["seeds"] == 2 for r in rows)  # guidance 1 and 2, each over 2 seeds
    assert (report / "table.md").read_text().count("\n") == 2 + 2
    for png in ("accuracy_vs_guidance.png", "loss.png", "best_grid.png", "worst_grid.png"):
        assert (report / png).stat().st_size > 1000, png
    # a second call skips what is done
    assert cli.main(["batch", "--run", "run", "--name", "b", "--seeds", "0", "1", "--splits", "test", "--steps", "3",
                     "--guidance", "1", "2", "--evaluator", "evaluator.pth", "--notebooks", str(ROOT / "notebooks")]) == 0
    assert len(json.loads(capsys.readouterr().out)["skipped"]) == 4


def test_batch_weights_reach_the_batch(monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(batch, "run_batch", lambda b: seen.append(b) or {"failed": []})
    assert cli.main(["batch", "--run", "r", "--name", "n", "--evaluator", "e.pth", "--weights", "raw", "ema"]) == 0
    assert seen[0].weights == ["raw", "ema"] and [c["weights"] for c in seen[0].combinations()[:2]] == ["raw", "ema"]
    assert cli.main(["batch", "--run", "r", "--name", "n", "--evaluator", "e.pth"]) == 0
    assert seen[1].weights == ["ema"]  # the default: the EMA


def test_batch_missing_run(tmp_path, capsys):
    assert cli.main(["batch", "--run", str(tmp_path / "nope"), "--name", "x", "--evaluator", "e.pth"]) == 2
    assert "not a training run" in capsys.readouterr().err


def test_unknown_notebook_parameter_is_refused(tmp_path):
    # papermill only warns ("Passed unknown parameter") and injects it where nothing reads it; we refuse first
    with pytest.raises(ValueError, match=r"04_report.ipynb has no parameter\(s\) \['split'\]"):
        batch._execute(ROOT / "notebooks" / "04_report.ipynb", tmp_path / "out.ipynb", {"split": "test"})
    assert not (tmp_path / "out.ipynb").exists()


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "steps 0"),
    (["--guidance", "nan"], "guidance nan"),
    (["--guidance", "-2"], "guidance -2.0"),
])
def test_batch_refuses_values_it_cannot_run(tmp_path, capsys, args, message):
    assert cli.main(["batch", "--run", str(tmp_path / "run"), "--name", "x", "--evaluator", "e.pth", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_batch_whose_every_combination_fails_ends_in_its_summary(smoke_run, capsys):
    code = cli.main(["batch", "--run", "run", "--name", "f", "--seeds", "0", "--splits", "test", "--steps", "3",
                     "--checkpoints", "step-99", "--evaluator", "evaluator.pth",
                     "--notebooks", str(ROOT / "notebooks")])
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert code == 1 and result["done"] == [] and result["failed"] == ["test__seed0__step-99__dpmsolver3__g1"]
    assert result["report"] is None and "Traceback" not in captured.err


def test_demo_runs_the_ddpm_arm_after_the_profiles_sampler(tmp_path, monkeypatch):
    import dataclasses

    from cddpm.evaluation import evaluator
    from cddpm.workflow import profiles, steps

    batches = []
    monkeypatch.setattr(batch, "_execute", lambda *args, **kwargs: None)
    monkeypatch.setattr(batch, "run_batch", lambda b: batches.append(b) or {"failed": [], "report": None})
    monkeypatch.setattr(evaluator.Evaluator, "load", staticmethod(lambda *args: None))
    monkeypatch.setattr(steps, "judge_on_ground_truth", lambda p, judge: {})
    monkeypatch.setattr(profiles, "evaluator_path", lambda p: tmp_path / "e.pth")
    smoke = profiles.PROFILES["smoke"]
    monkeypatch.setitem(profiles.PROFILES, "smoke", dataclasses.replace(smoke, seeds=(0, 1, 2)))
    assert batch.run_demo("smoke", outputs=str(tmp_path)) == 0
    assert [(b.samplers, b.steps, b.seeds, b.weights, b.report) for b in batches] == [
        ([smoke.sampler], [smoke.steps], [0, 1, 2], ["raw"], False), (["ddpm"], [smoke.ddpm_steps], [0, 1, 2], ["raw"], True)]
    batches.clear()
    monkeypatch.setitem(profiles.PROFILES, "smoke", dataclasses.replace(smoke, ddpm_steps=None))
    batch.run_demo("smoke", outputs=str(tmp_path))
    assert [b.report for b in batches] == [True]  # no DDPM arm: the profile's sampler reports


def test_the_demo_says_when_its_judge_reads_ground_truth_too_poorly_to_be_trusted(tmp_path, monkeypatch, capsys):
    from cddpm.evaluation import evaluator
    from cddpm.workflow import profiles, steps

    reading = {}
    monkeypatch.setattr(batch, "_execute", lambda *args, **kwargs: None)
    monkeypatch.setattr(batch, "run_batch", lambda b: {"failed": [], "report": None})
    monkeypatch.setattr(evaluator.Evaluator, "load", staticmethod(lambda *args: None))
    monkeypatch.setattr(steps, "judge_on_ground_truth", lambda p, judge: reading)
    monkeypatch.setattr(profiles, "evaluator_path", lambda p: tmp_path / "e.pth")
    for test, new_test, said in ((0.997, 0.95, False), (0.95, 0.435, True), (0.321, 0.435, True)):
        reading.update({f"ground-truth renders of {split}": {"topk": topk, "exact_set": 0.0, "n": 320}
                        for split, topk in (("test", test), ("new_test", new_test))})
        batch.run_demo("smoke", outputs=str(tmp_path))
        out = capsys.readouterr().out
        assert ("note: this judge reads ground truth at top-k" in out) == said, (test, new_test)
        if said:  # the worst split's reading, and where to go from there
            assert f"top-k {min(test, new_test):.2f} (below {steps.TRUSTED_TOPK})" in out
            assert "cddpm evaluate --images FOLDER --evaluator CHECKPOINT" in out


def test_the_demo_prints_its_plan_first_and_shows_its_notebooks_as_they_run(tmp_path, monkeypatch, capsys):
    import dataclasses

    from cddpm.evaluation import evaluator
    from cddpm.workflow import profiles, steps

    monkeypatch.chdir(tmp_path)
    calls = []
    def execute(nb, out, params, stream=False):
        calls.append((nb.name, stream, capsys.readouterr().out))
        root = tmp_path / "out" / "data" / "synthetic-iclevr"  # what 01_data renders: the judge is filed by its key
        root.mkdir(parents=True, exist_ok=True)
        (root / "train.json").write_text(json.dumps({"A_0.png": ["red cube"]}))

    monkeypatch.setattr(batch, "_execute", execute)
    monkeypatch.setattr(batch, "run_batch", lambda b: {"failed": [], "report": None})
    monkeypatch.setattr(evaluator.Evaluator, "load", staticmethod(lambda *args: None))
    monkeypatch.setattr(steps, "judge_on_ground_truth", lambda p, judge: {})
    budgeted = dataclasses.replace(profiles.PROFILES["smoke"], evaluator_minutes=1.5, train=dict(minutes=4),
                                   render_minutes=0.5, sample_minutes=2, seeds=(0, 1, 2), guidance=(3.0,),
                                   ddpm_steps=None)
    monkeypatch.setitem(profiles.PROFILES, "smoke", budgeted)
    assert batch.run_demo("smoke", notebooks=str(ROOT / "notebooks"), outputs="out") == 0
    p = profiles.get("smoke", outputs="out")
    assert [(name, stream) for name, stream, _ in calls] == [("01_data.ipynb", True), ("02_train.ipynb", True)]
    plan = calls[0][2]  # everything printed before the first notebook started
    assert "demo [smoke]: the plan" in plan
    assert f"render 16 scenes into {p.data_root}: 0.5 min (estimated)" in plan
    assert "judge  train a judge of the data: 1.5 min (a budget" in plan  # filed under the key of data not yet there
    assert f"train  train zoom64 into {p.run}: 4 min (a budget" in plan
    assert "6 runs of dpmsolver 3 steps (test + new_test, guidance 3, raw weights)" in plan and ": 2 min (estimated)" in plan
    assert "in all 8 min\n" in plan
    assert "01_data took" in calls[1][2]  # each stage's time, as it ends


def test_the_demo_trains_for_what_its_fixed_work_left_of_its_budget(tmp_path, monkeypatch):
    import dataclasses
    import time

    from cddpm.evaluation import evaluator
    from cddpm.workflow import profiles, steps

    demo = profiles.PROFILES["demo"]  # its estimates add up to its budget: 02_train alone trains for the rest
    assert demo.render_minutes + demo.evaluator_minutes + demo.train["minutes"] + demo.sample_minutes == \
        demo.demo_minutes
    monkeypatch.chdir(tmp_path)
    clock = [0.0]
    params = {}

    def execute(nb, out, given, stream=False):  # 01_data takes 4 minutes of the demo's clock
        params[nb.name] = given
        clock[0] += 240.0 if nb.name == "01_data.ipynb" else 0.0

    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(batch, "_execute", execute)
    monkeypatch.setattr(batch, "run_batch", lambda b: {"failed": [], "report": None})
    monkeypatch.setattr(evaluator.Evaluator, "load", staticmethod(lambda *args: None))
    monkeypatch.setattr(steps, "judge_on_ground_truth", lambda p, judge: {})
    monkeypatch.setattr(profiles, "evaluator_path", lambda p: tmp_path / "e.pth")
    budgeted = dataclasses.replace(profiles.PROFILES["smoke"], demo_minutes=12, sample_minutes=2, ddpm_steps=None)
    monkeypatch.setitem(profiles.PROFILES, "smoke", budgeted)
    assert batch.run_demo("smoke", notebooks=str(ROOT / "notebooks"), outputs="out") == 0
    assert params["02_train.ipynb"]["minutes"] == 12 - 4 - 2 and "minutes" not in params["01_data.ipynb"]
    clock[0] = 0.0
    monkeypatch.setitem(profiles.PROFILES, "smoke", dataclasses.replace(budgeted, demo_minutes=5))
    batch.run_demo("smoke", notebooks=str(ROOT / "notebooks"), outputs="out")
    assert params["02_train.ipynb"]["minutes"] == batch.MIN_TRAIN_MINUTES  # a slow machine still trains
    p = profiles.get("smoke", outputs="out")  # a run that has begun keeps the budget it was sized to
    (Path(p.run) / "checkpoints" / "step-3").mkdir(parents=True)
    (Path(p.run) / "config.json").write_text(json.dumps({"model": {}, "train": {}, "scheduler": {}, "data": "d",
                                                        "budget": {"minutes": 7.25, "steps": 900}}))
    assert batch.training_minutes(p, 999.0) == 7.25
    assert "for what is left of 12 minutes after the stages above, less 2 for sampling: 10 min" in "\n".join(
        batch.demo_plan(dataclasses.replace(budgeted, run="elsewhere", data_root="nowhere", evaluator_minutes=None,
                                            evaluator="e.pth")))


def test_the_plan_says_what_is_already_there(tmp_path, monkeypatch):
    import dataclasses

    from cddpm.workflow import profiles

    monkeypatch.chdir(tmp_path)
    p = dataclasses.replace(profiles.PROFILES["demo"], data_root="mine", evaluator="judge.pth", run="run",
                            train=dict(max_steps=7), demo_minutes=None)
    (tmp_path / "mine").mkdir()
    (tmp_path / "judge.pth").write_bytes(b"")
    plan = "\n".join(batch.demo_plan(p))
    assert "data   use mine: 0 min" in plan and "judge  use judge.pth: 0 min" in plan  # a root we do not render
    assert "train zoom64 into run for 7 steps: not estimated" in plan and "and the stages not estimated" in plan
    (tmp_path / "run" / "checkpoints" / "step-3").mkdir(parents=True)
    assert "train  continue run to the length it started with" in "\n".join(batch.demo_plan(p))


def test_a_streamed_notebook_shows_its_progress_bars_as_text(tmp_path, capsys, monkeypatch):
    import nbformat

    from cddpm import progress

    monkeypatch.delenv(progress.ENV, raising=False)
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("steps = 3", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("from cddpm.progress import tqdm\nfor _ in tqdm(range(steps), desc='probe bar'):\n"
                                  "    pass")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "bar.ipynb")
    batch._execute(tmp_path / "bar.ipynb", tmp_path / "shown.ipynb", {"steps": 4}, stream=True)
    assert "probe bar: 100%" in capsys.readouterr().err and "4/4" in (tmp_path / "shown.ipynb").read_text()
    assert progress.ENV not in os.environ  # only the notebook's kernel saw it
    batch._execute(tmp_path / "bar.ipynb", tmp_path / "quiet.ipynb", {"steps": 4})
    assert "probe bar" not in capsys.readouterr().err
