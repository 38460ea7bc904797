"""Hostile but realistic use of the newer surfaces: every case ends in the right behaviour or a one-line error naming
the option or file and the fix, nothing is touched before every input is checked, and no command writes over its own
inputs or (without --force) over a file it did not write."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_root
from PIL import Image
from test_sample import make_run, small_model
from test_train import MICRO_ARGS, root

from cddpm import data, runs, sample
from cddpm import labels as L
from cddpm.cli import main
from cddpm.diffusion import train_scheduler
from cddpm.evaluation.evaluator import Evaluator, build_network
from cddpm.model import preset
from cddpm.pipeline import CddpmPipeline
from cddpm.train import TrainConfig, train
from cddpm.workflow import batch


def one_line_error(capsys, argv: list[str], *needles: str) -> str:
    """Run the CLI, expect exit 2 and one stderr line holding every needle."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(n in err for n in needles), err
    return err


@pytest.fixture
def judge(tmp_path) -> Path:
    torch.manual_seed(0)
    return Evaluator(build_network()).save(tmp_path / "judge" / "checkpoint.pth")


# --- 1. evaluate --json -------------------------------------------------------------------------

def test_evaluate_json_never_replaces_an_input_nor_a_file_it_did_not_write(tiny_root, tmp_path, judge, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):  # tiny_root's test.json holds two conditions
        Image.new("RGB", (64, 64), (10 * i, 50, 90)).save(images / f"{i}.png")
    conditions = tmp_path / "c.json"
    conditions.write_text(json.dumps([["red cube"], ["cyan cube"]]))
    before = {p: p.read_bytes() for p in (judge, conditions, tiny_root / "test.json", images / "0.png")}
    base = ["evaluate", "--images", str(images), "--data", str(tiny_root), "--evaluator", str(judge)]
    for argv, target in ((base, judge), (base + ["--conditions", str(conditions)], conditions),
                         (base, tiny_root / "test.json"), (base, images / "0.png")):
        one_line_error(capsys, argv + ["--json", str(target), "--force"], f"--json {target} would overwrite")
    link = tmp_path / "link.json"
    os.link(conditions, link)  # another name of an input is the input
    one_line_error(capsys, base + ["--conditions", str(conditions), "--json", str(link), "--force"],
                   f"--json {link} would overwrite the command's input {conditions}")
    assert {p: p.read_bytes() for p in before} == before
    one_line_error(capsys, ["evaluate", "--root", str(tiny_root), "--evaluator", str(judge), "--json",
                            str(tiny_root / "train.json")], "would overwrite the command's input")

    mine = tmp_path / "notes.json"
    mine.write_text('{"mine": 1}')
    one_line_error(capsys, base + ["--json", str(mine)], "cddpm did not write it; pass --force")
    assert mine.read_text() == '{"mine": 1}'
    assert main(base + ["--json", str(tmp_path / "scores.json")]) == 0
    assert main(base + ["--json", str(tmp_path / "scores.json")]) == 0  # its own earlier output: replaced
    assert main(base + ["--json", str(mine), "--force"]) == 0
    assert json.loads(mine.read_text())["n"] == 2


# --- 2. train-evaluator's report beside --out ---------------------------------------------------

def test_train_evaluator_never_writes_over_the_roots_files_or_a_foreign_report(tiny_root, tmp_path, capsys):
    test_json = (tiny_root / "test.json").read_text()
    base = ["train-evaluator", "--data", str(tiny_root), "--epochs", "1"]
    one_line_error(capsys, base + ["--out", str(tiny_root / "test.pth"), "--force"],
                   f"{tiny_root / 'test.json'} would overwrite the command's input")
    assert (tiny_root / "test.json").read_text() == test_json
    one_line_error(capsys, base + ["--out", str(tmp_path / "ev.json")], "name the checkpoint like NAME.pth")
    nowhere = ["train-evaluator", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "ev.pth")]
    (tmp_path / "ev.json").write_text('{"mine": 1}')
    one_line_error(capsys, nowhere, "ev.json exists and cddpm did not write it; pass --force")
    # a report train-evaluator wrote is its own: the check passes, and the next problem is said
    (tmp_path / "ev.json").write_text(json.dumps({"checkpoint": "ev.pth", "train_images": 3, "validation": {},
                                                  "history": []}))
    one_line_error(capsys, nowhere, "nowhere does not exist")


# --- 3. and 8. sample: every value is checked before --out is touched ------------------------------

@pytest.mark.parametrize("flag, value, message", [
    ("--edit-threshold", "-1", "--edit-threshold -1.0 must lie in [0, 2)"),
    ("--edit-threshold", "nan", "--edit-threshold nan must lie in [0, 2)"),
    ("--edit-threshold", "5", "--edit-threshold 5.0 must lie in [0, 2)"),
    ("--seed", "-5", "--seed -5 must be an integer >= 0"),
    ("--batch-size", "0", "--batch-size 0 must be an integer >= 1"),
    ("--frames", "1", "--frames 1 must be an integer >= 2"),
])
def test_a_bad_sample_value_leaves_the_previous_output_whole(tiny_root, tmp_path, capsys, flag, value, message):
    run, out = make_run(tmp_path / "run", tiny_root), tmp_path / "s"
    argv = ["sample", "--run", str(run), "--labels", "red sphere", "cyan cube", "--steps", "2", "--frames", "2",
            "--out", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    one_line_error(capsys, argv + [flag, value], message)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_resampling_a_conditions_file_with_a_space_and_a_dot_in_its_name(tiny_root, tmp_path):
    run, out = make_run(tmp_path / "run", tiny_root), tmp_path / "s"
    conditions = tmp_path / "my probes.v2.json"
    conditions.write_text(json.dumps([["red cube"], ["gray sphere", "cyan cube"]]))
    argv = ["sample", "--run", str(run), "--conditions", str(conditions), "--steps", "2", "--frames", "2",
            "--out", str(out)]
    assert main(argv) == 0 and main(argv + ["--seed", "1"]) == 0
    assert json.loads((out / "metrics.json").read_text())["seed"] == 1
    assert (out / "grid_my probes.v2.png").is_file()


# --- 4. one trainer per run folder --------------------------------------------------------------

@pytest.mark.slow
def test_a_second_trainer_of_a_run_refuses_and_a_crashed_one_leaves_it_free(tmp_path, capsys):
    data_root, run = root(tmp_path / "data"), tmp_path / "run"
    argv = ["train", "--data", str(data_root), "--out", str(run), *MICRO_ARGS, "--batch-size", "4",
            "--log-every", "1", "--save-every", "1", "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-m", "cddpm", *argv, "--max-steps", "100000"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not runs.checkpoints(run) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert runs.checkpoints(run), first.stderr.read() if first.poll() is not None else "no checkpoint in 120 s"
        one_line_error(capsys, argv + ["--resume", "--max-steps", "100000"], f"--out {run} is being trained by "
                       "another process", "wait for it to finish")
        one_line_error(capsys, argv + ["--max-steps", "5"], "is being trained by another process")
    finally:
        first.send_signal(signal.SIGKILL)  # a crash: the system releases the lock
        first.wait()
    steps = [r["step"] for r in runs.read_metrics(run)]
    assert steps == sorted(set(steps))  # one writer only
    last = runs.read_state(runs.checkpoints(run)[-1])["step"]
    assert main(argv + ["--resume", "--max-steps", str(last + 1)]) == 0


def test_a_refused_training_leaves_no_folder_behind(tmp_path, capsys):
    data_root = root(tmp_path / "data")
    out = tmp_path / "new" / "run"
    one_line_error(capsys, ["train", "--data", str(data_root), "--out", str(out), *MICRO_ARGS, "--max-steps", "1",
                            "--batch-size", "64"], "lower --batch-size")
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    one_line_error(capsys, ["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "empty"),
                            "--max-steps", "1"], "does not exist")
    assert list((tmp_path / "empty").iterdir()) == []


# --- 5. and 8. resume compares the images; a shorter schedule is refused --------------------------

def test_resume_refuses_other_images_under_the_same_names_and_a_run_that_kept_no_hash(tmp_path, capsys):
    data_root, run = root(tmp_path / "data"), tmp_path / "run"
    base = ["train", "--data", str(data_root), "--out", str(run), *MICRO_ARGS, "--batch-size", "4"]
    assert main(base + ["--max-steps", "2"]) == 0
    capsys.readouterr()
    twin = tmp_path / "twin"
    make_root(twin, data.load_mapping(data_root), size=(16, 16), mode="RGB")
    for png in sorted((twin / "iclevr").iterdir())[:1]:  # one image differs, names and labels do not
        Image.fromarray(255 - np.asarray(Image.open(png))).save(png)
    one_line_error(capsys, ["train", "--out", str(run), "--resume", "--data", str(twin), "--max-steps", "3"],
                   "dataset.images_sha1 (run ")
    config = run / "config.json"
    before = config.read_text()
    one_line_error(capsys, ["train", "--out", str(run), "--resume", "--max-steps", "1"],
                   "is at step 2, past the 1 steps", "give a larger value")
    assert config.read_text() == before
    stored = json.loads(before)
    del stored["dataset"]["images_sha1"]  # as a run written before the hash was kept
    config.write_text(json.dumps(stored))
    one_line_error(capsys, ["train", "--out", str(run), "--resume", "--max-steps", "3"],
                   "dataset.images_sha1 (run unset, now ")


# --- 6. canvas training says what it uses --------------------------------------------------------

def test_canvas_training_says_and_records_how_many_images_it_uses_and_why(tmp_path, capsys):
    mapping = {"A_0.png": ["red cube"], "A_1.png": ["red cube", "blue sphere"],
               "A_2.png": ["red cube", "blue sphere", "gray cylinder"],
               "B_0.png": ["cyan cube"], "B_2.png": ["cyan cube", "red sphere", "gray cube"],  # B_1 is missing
               "C_0.png": ["red sphere"], "C_1.png": ["blue cube", "gray sphere"],  # not C_0 plus one
               "photo.png": ["yellow cube", "purple sphere"], "single.png": ["green cylinder"]}
    data_root = make_root(tmp_path / "data", mapping, size=(16, 16), mode="RGB")
    canvas = preset("canvas64", sample_size=16, patch_size=2, block_out_channels=(16, 32), attention_levels=(1,),
                    norm_num_groups=8)
    train(TrainConfig(data=str(data_root), out=str(tmp_path / "run"), model=canvas, max_steps=1, batch_size=2))
    err = capsys.readouterr().err
    assert f"canvas training uses 6 of 9 images in {data_root}/train.json; left out:" in err
    record = json.loads((tmp_path / "run" / "config.json").read_text())["dataset"]
    assert record["images"] == 9 and record["used"] == 6
    assert record["unused"] == {"are not their NAME_{k-1}.png plus one object": 1,
                                "hold several objects and are not named NAME_k.png": 1,
                                "hold several objects and their NAME_{k-1}.png is not in train.json": 1}


# --- 7. render --labels-from copies the root's condition lists ------------------------------------

def test_a_twin_keeps_the_roots_test_lists_and_never_replaces_its_input(tiny_root, tmp_path, capsys):
    twin = tmp_path / "twin"
    assert main(["render", "--labels-from", str(tiny_root), "--out", str(twin), "--size", "16", "--seed", "4"]) == 0
    for split in ("test", "new_test"):
        assert data.load_condition_lists(twin, split) == data.load_condition_lists(tiny_root, split)
    assert data.load_mapping(twin) == data.load_mapping(tiny_root)
    one_line_error(capsys, ["render", "--labels-from", str(twin), "--out", str(twin), "--size", "16", "--force"],
                   f"--out {twin} holds the input {twin}")
    (tmp_path / "afile").write_text("mine")
    one_line_error(capsys, ["render", "--out", str(tmp_path / "afile" / "x"), "--scenes", "1"],
                   "lies under the file", "give a path inside a folder")


# --- 8. probes need pairs to rank -----------------------------------------------------------------

@pytest.mark.parametrize("mapping", [{}, {"a.png": ["red cube"], "b.png": ["blue sphere"]}], ids=["empty", "single"])
def test_probes_refuse_a_train_json_without_pairs(tmp_path, capsys, mapping):
    data_root = make_root(tmp_path / "data", mapping)
    one_line_error(capsys, ["probes", "--data", str(data_root), "--out", str(tmp_path / "p")],
                   "holds no image of two or more objects")
    assert not (tmp_path / "p").exists()
    one_line_error(capsys, ["probes", "--data", str(data_root), "--out", str(tmp_path / "p"), "--seed", "-5"],
                   "--seed -5 must be an integer >= 0")


# --- 10. errors that name the option and the fix ---------------------------------------------------

def test_train_seed_out_of_range_names_the_option(tmp_path, capsys):
    one_line_error(capsys, ["train", "--data", str(root(tmp_path / "data")), "--out", str(tmp_path / "run"),
                            *MICRO_ARGS, "--max-steps", "1", "--seed", "-5"], "seed=-5 must be an integer from 0",
                   "(--seed)")
    assert not (tmp_path / "run").exists()


def test_demo_and_batch_refuse_a_bad_device_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(batch, "run_demo", lambda **kw: pytest.fail("the demo started"))
    monkeypatch.setattr(batch, "run_batch", lambda *a, **kw: pytest.fail("the batch started"))
    one_line_error(capsys, ["demo", "--device", "banana"], "unknown device 'banana'")
    one_line_error(capsys, ["batch", "--run", "r", "--name", "n", "--evaluator", "e.pth", "--device", "banana"], "unknown device 'banana'")


@pytest.fixture(scope="module")
def pipe() -> CddpmPipeline:
    pipe = CddpmPipeline(unet=small_model(), scheduler=sample.make_sampler("dpmsolver", dict(train_scheduler().config)))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_pipeline_takes_a_bare_string_and_works_through_many_prompts_in_batches(pipe, monkeypatch):
    one = pipe("red sphere, cyan cube", num_inference_steps=2, seed=1, output_type="pt").images
    listed = pipe(["red sphere, cyan cube"], num_inference_steps=2, seed=1, output_type="pt").images
    assert one.shape == (1, 3, 64, 64) and torch.equal(one, listed)
    prompts = [L.CLASSES[i % 24] for i in range(5)]
    whole = pipe(prompts, num_inference_steps=2, seed=1, output_type="pt").images
    sizes, draw = [], sample.draw
    monkeypatch.setattr(sample, "draw", lambda model, sampler, conditions, *a, **kw:
                        sizes.append(len(conditions)) or draw(model, sampler, conditions, *a, **kw))
    batched = pipe(prompts, num_inference_steps=2, seed=1, output_type="pt", batch_size=2).images
    assert sizes == [2, 2, 1]
    torch.testing.assert_close(batched, whole, rtol=0, atol=1e-5)  # per-image generators: batching changes nothing


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_inference_steps=1.5), "num_inference_steps=1.5 must be a whole number"),
    (dict(num_inference_steps=None), "num_inference_steps=None must be a whole number"),
    (dict(guidance_scale=None), "guidance_scale=None must be a finite number"),
    (dict(seed=-5), "seed=-5 must be an integer >= 0"),
    (dict(seed=0.5), "seed=0.5 must be a whole number"),
    (dict(batch_size=0), "batch_size=0 must be an integer >= 1"),
])
def test_bad_pipeline_numbers_are_one_line_errors(pipe, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")) as err:
        pipe(["red sphere"], **kwargs)
    assert "\n" not in str(err.value)


def test_a_config_made_in_code_checks_its_seed():
    with pytest.raises(ValueError, match="seed=4294967296 must be an integer from 0 to 4294967295"):
        dataclasses.replace(TrainConfig(max_steps=1), seed=2**32)
