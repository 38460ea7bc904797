"""Training: the loss falls, resume is exact, runs refuse to mix, checkpoints are atomic, the CLI and accelerate launch."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from conftest import make_root
from safetensors.torch import load_file

from cddpm import labels as L
from cddpm import runs
from cddpm.cli import main
from cddpm.model import ModelConfig
from cddpm.train import TrainConfig, load_config, train, warmup_steps

# a whole-scene model small enough for many short runs, and the --model flags that give exactly it
MICRO = ModelConfig(sample_size=16, block_out_channels=(16, 32), attention_levels=(1,), layers_per_block=1,
                    norm_num_groups=8)
MICRO_ARGS = ["--model", *(f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
                           for k, v in MICRO.to_dict().items())]


def root(path: Path, n: int = 16, side: int = 16) -> Path:
    """An i-CLEVR root of ``n`` random side x side images (read back at 16x16) with 1-3 objects each."""
    mapping = {f"CLEVR_train_{i:06d}_0.png": [L.CLASSES[(7 * i + k) % 24] for k in range(1 + i % 3)] for i in range(n)}
    return make_root(path, mapping, size=(side, side), mode="RGB")


@pytest.fixture
def data(tmp_path) -> Path:
    return root(tmp_path / "data")


def config(data: Path, out: Path, **overrides) -> TrainConfig:
    settings = dict(data=str(data), out=str(out), model=MICRO, max_steps=6, batch_size=4, warmup=2, log_every=1,
                    save_every=3, keep=5)
    return TrainConfig(**{**settings, **overrides})


def weights(folder: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(folder / name)


# v-prediction's loss falls more slowly at first: halved after about 100 steps (bf16, seeds 0-2) where epsilon's is by 40
@pytest.mark.parametrize("recipe", [{"prediction_type": "epsilon", "max_steps": 40},
                                    {"model": dataclasses.replace(MICRO, scale_shift=True), "max_steps": 120}],
                         ids=["epsilon", "adagn-v"])
def test_loss_falls_when_overfitting_a_batch(tmp_path, recipe):
    small = root(tmp_path / "data", n=4, side=4)  # 4x4 noise upsampled: smooth images a tiny net can fit
    losses = []
    train(config(small, tmp_path / "run", lr=3e-3, warmup=5, p_uncond=0.0, save_every=1000, **recipe),
          on_log=lambda r: losses.append(r["loss"]))
    assert len(losses) == recipe["max_steps"]
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < 0.5 * first, (first, last)


class Crash(Exception):
    pass


def crashed_after_step_4(one_go, out) -> object:
    """``one_go`` trained into ``out`` until step 4 is logged, after step-3 was saved: the process "dies" there."""
    def crash_after_checkpoint(record):
        if record["step"] == 4:
            raise Crash

    pieces = dataclasses.replace(one_go, out=str(out))
    with pytest.raises(Crash):
        train(pieces, on_log=crash_after_checkpoint)
    return pieces


def test_resume_continues_exactly(tmp_path, data):
    one_go = config(data, tmp_path / "a", hflip=True, max_steps=8, batch_size=6)  # 2 batches per epoch: crosses epochs
    train(one_go)

    pieces = crashed_after_step_4(one_go, tmp_path / "b")
    assert [p.name for p in runs.checkpoints(pieces.out)] == ["step-3"]
    train(dataclasses.replace(pieces, resume=True))

    for name in (runs.MODEL_FILE, runs.EMA_FILE):
        a, b = weights(tmp_path / "a/checkpoints/step-8", name), weights(tmp_path / "b/checkpoints/step-8", name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    logs = [[json.loads(line)["loss"] for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
            for run in "ab"]
    assert logs[0] == logs[1] and len(logs[0]) == 8  # the crashed run's extra record was dropped on resume


@pytest.mark.parametrize("damage, message", [
    ("random_states_0.pkl:missing", "cannot resume exactly: {ckpt}/random_states_0.pkl is missing"),
    ("random_states_0.pkl:garbage", "cannot resume exactly: {ckpt}/random_states_0.pkl is unreadable"),
    ("model.safetensors:truncated", "{ckpt}/model.safetensors is unreadable"),
    ("ema.safetensors:truncated", "{ckpt}/ema.safetensors is unreadable"),
    ("optimizer.bin:empty", "{ckpt}/optimizer.bin is unreadable"),
])
def test_a_resume_is_exact_or_refuses_in_one_line(tmp_path, data, damage, message):
    first = config(data, tmp_path / "run", max_steps=6, save_every=3)
    train(first)
    ckpt = tmp_path / "run" / "checkpoints" / "step-6"
    name, how = damage.split(":")
    path = ckpt / name
    if how == "missing":
        path.unlink()
    elif how == "garbage":
        path.write_bytes(b"not a pickle")
    else:
        path.write_bytes(path.read_bytes()[:50] if how == "truncated" else b"")
    longer = dataclasses.replace(first, resume=True, max_steps=8)
    with pytest.raises(ValueError) as err:
        train(longer)
    text = str(err.value)
    assert message.format(ckpt=ckpt) in text and "\n" not in text
    assert f"move {ckpt} aside and --resume again to continue from step-3" in text
    if name.startswith("random_states"):  # the user may go on anyway, knowingly
        assert "--inexact-resume" in text
        assert train(dataclasses.replace(longer, inexact_resume=True))["step"] == 8


def test_a_partial_last_metrics_line_is_tolerated(tmp_path, data):
    first = config(data, tmp_path / "run", max_steps=3)
    train(first)
    with (tmp_path / "run" / "metrics.jsonl").open("a") as f:
        f.write('{"step": 4, "lo')  # killed while writing
    assert len(runs.read_metrics(tmp_path / "run")) == 3
    assert train(dataclasses.replace(first, resume=True, max_steps=4))["step"] == 4
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 1}\ngarbage\n{"step": 2}\n')
    with pytest.raises(ValueError, match="metrics.jsonl line 2 is not json"):
        runs.read_metrics(tmp_path / "run")


def test_a_malformed_config_names_the_file(tmp_path, data):
    train(config(data, tmp_path / "run", max_steps=1))
    (tmp_path / "run" / "config.json").write_text("{broken")
    with pytest.raises(ValueError, match=r"config.json is not valid json .*restore it from a copy"):
        runs.read_config(tmp_path / "run")


def test_resume_refuses_a_different_model_data_or_recipe(tmp_path, data):
    first = config(data, tmp_path / "run", max_steps=2)
    train(first)
    with pytest.raises(FileExistsError, match="--resume"):
        train(first)
    other_model = dataclasses.replace(first, resume=True, model=dataclasses.replace(MICRO, block_out_channels=(8, 16)))
    with pytest.raises(ValueError, match=r"model\.block_out_channels \(run \[16, 32\], now \[8, 16\]\)") as err:
        train(other_model)
    assert "\n" not in str(err.value)
    other_data = dataclasses.replace(first, resume=True, data=str(root(tmp_path / "other", n=12)))
    with pytest.raises(ValueError, match=r"dataset\.images \(run 16, now 12\).*dataset\.train_json_sha1"):
        train(other_data)
    with pytest.raises(ValueError, match=r"train\.lr"):
        train(dataclasses.replace(first, resume=True, lr=0.5))
    # a longer schedule, other logging and a moved data root are fine
    longer = train(dataclasses.replace(first, resume=True, max_steps=3, log_every=2))
    assert longer["step"] == 3 and load_config(first.out).max_steps == 3


def test_checkpoints_are_complete_pruned_and_loadable(tmp_path, data, umask_022):
    run = tmp_path / "run"
    result = train(config(data, run, max_steps=5, save_every=1, keep=2))
    assert [p.name for p in runs.checkpoints(run)] == ["step-4", "step-5"]
    assert not list((run / "checkpoints").glob(".step-*"))
    folder = runs.resolve(run, "last")
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "ema.safetensors", "state.json", "optimizer.bin",
                                                  "scheduler.bin", "random_states_0.pkl"}
    for path in (run / "config.json", run / "metrics.jsonl", folder / "state.json"):  # umask's mode, not mkstemp's 0600
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert not [p.name for p in run.rglob("*.tmp")]
    state = runs.read_state(folder)
    assert state["step"] == 5 and state["ema"]["optimization_step"] == 5
    assert result["checkpoint"] == str(folder) and (run / "loss.png").stat().st_size > 0

    cfg = runs.read_config(run)
    assert cfg["model"]["block_out_channels"] == [16, 32] and cfg["train"]["max_steps"] == 5
    assert cfg["scheduler"]["beta_schedule"] == "squaredcos_cap_v2" and cfg["scheduler"]["num_train_timesteps"] == 1000
    assert Path(cfg["data"]) == data.resolve() and cfg["dataset"]["images"] == 16
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    assert {"step", "loss", "lr", "images_per_s", "epoch"} <= records[0].keys()

    ema, _, _ = runs.load_model(run, "last", ema=True)
    raw, _, _ = runs.load_model(run, "step-4", ema=False)
    assert all(torch.equal(v, weights(folder, runs.EMA_FILE)[k]) for k, v in ema.state_dict().items())
    assert all(torch.equal(v, weights(run / "checkpoints/step-4", runs.MODEL_FILE)[k]) for k, v in raw.state_dict().items())

    stale = run / "checkpoints" / ".step-9.4242.tmp"  # a save that died half-way
    stale.mkdir()
    assert runs.resolve(run, "last").name == "step-5"
    assert stale in runs.prune(run, keep=1) and not stale.exists()
    assert [p.name for p in runs.checkpoints(run)] == ["step-5"]


def test_epochs_options_and_tensorboard(tmp_path, data):
    out = train(config(data, tmp_path / "a", max_steps=None, epochs=2, grad_accum=2, batch_size=2, hflip=True,
                       prediction_type="epsilon", channels_last=True,
                       model=dataclasses.replace(MICRO, conditioning="concat")))
    assert out["step"] == 8 and out["epoch"] == 2.0  # 16 images / (2 x 2) per step
    assert torch.isfinite(torch.tensor(out["loss"]))
    logged = train(config(data, tmp_path / "b", max_steps=2, log_every=2, tensorboard=True))
    assert logged["step"] == 2 and [p.name for p in runs.checkpoints(tmp_path / "b")] == ["step-2"]
    assert list((tmp_path / "b" / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_ctrl_c_saves_a_checkpoint(tmp_path, data):
    def interrupt(record):
        if record["step"] == 2:
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)  # Python's default handler, or SIG_IGN in a shell's background job
    with pytest.raises(KeyboardInterrupt, match="stopped at step"):
        train(config(data, tmp_path / "run", max_steps=100, save_every=50), on_log=interrupt)
    assert [p.name for p in runs.checkpoints(tmp_path / "run")] in (["step-2"], ["step-3"])
    assert signal.getsignal(signal.SIGINT) is before  # the handler is given back


def test_cli_trains_then_resumes_with_the_stored_settings(tmp_path, data, capsys):
    run = tmp_path / "run"
    argv = ["train", "--data", str(data), "--out", str(run), *MICRO_ARGS, "--batch-size", "4", "--max-steps", "2",
            "--lr", "2e-3", "--log-every", "1"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 2
    assert main(["train", "--out", str(run), "--resume", "--max-steps", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 3
    stored = load_config(run)
    assert stored.model == MICRO and stored.lr == 2e-3 and stored.batch_size == 4


@pytest.mark.parametrize("extra, message", [
    (["--max-steps", "0"], "max_steps=0 must be positive"),
    (["--max-steps", "2", "--p-uncond", "1.5"], "p_uncond=1.5"),
    (["--max-steps", "2", "--model", "channels=3"], "bad model override 'channels=3'"),
    (["--max-steps", "2", "--model", "sample_size=big"], "sample_size takes a int"),
    (["--max-steps", "2", "--preset", "huge"], "unknown preset 'huge'"),
    (["--max-steps", "2", "--mixed-precision", "fp16"], "fp16 mixed precision needs a CUDA GPU"),
    ([], "the run has no length"),
    (["--max-steps", "2", "--batch-size", "64"], "exceeds the 16 training images"),
])
def test_cli_bad_arguments_give_one_line_errors(tmp_path, data, capsys, extra, message):
    if "fp16" in extra and torch.cuda.is_available():
        pytest.skip("fp16 works on this machine")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), *MICRO_ARGS, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("cddpm train: error:")


def test_cli_missing_data_and_foreign_out(tmp_path, data, capsys):
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"), "--max-steps", "1"]) == 2
    assert "does not exist" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert main(["train", "--data", str(data), "--out", str(busy), *MICRO_ARGS, "--max-steps", "1",
                 "--batch-size", "4"]) == 2
    assert "is not empty and is not a training run" in capsys.readouterr().err


def launch_two_cpu_processes(data: Path, run: Path, *flags: str) -> None:
    """`accelerate launch` of `cddpm train` in two CPU processes (batch 2 each); fails the test if it fails."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "cddpm", "train",
           "--data", str(data), "--out", str(run), *MICRO_ARGS, "--batch-size", "2", *flags]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes(tmp_path, data):
    run = tmp_path / "run"
    launch_two_cpu_processes(data, run, "--max-steps", "3", "--save-every", "2", "--log-every", "1", "--save-minutes",
                             "1e-9")
    assert [p.name for p in runs.checkpoints(run)] == ["step-1", "step-2", "step-3"]  # the processes agree when
    folder = runs.resolve(run, "last")
    assert folder.name == "step-3" and (folder / "random_states_1.pkl").is_file()
    assert runs.read_state(folder)["num_processes"] == 2
    assert runs.read_state(folder)["epoch"] == 0.75  # 3 steps x 2 processes x 2 images of 16


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes_agree_on_a_budget(tmp_path, data):
    run = tmp_path / "run"
    launch_two_cpu_processes(data, run, "--minutes", "0.25", "--max-steps", "20", "--log-every", "1")
    steps = runs.read_config(run)["budget"]["steps"]  # both processes probed together and took the same steps
    assert [p.name for p in runs.checkpoints(run)] == [f"step-{steps}"]
    assert (runs.checkpoint_dir(run, steps) / "random_states_1.pkl").is_file()
    assert [r["step"] for r in runs.read_metrics(run)] == list(range(1, steps + 1))


def test_a_profile_becomes_a_train_config_in_one_place(tmp_path, data):
    from cddpm.workflow import profiles

    p = profiles.get("smoke", data_root=str(data), run=str(tmp_path / "run"), max_steps=8)
    assert p.train == {**profiles.PROFILES["smoke"].train, "max_steps": 8}
    config = profiles.train_config(p, **{**MICRO.to_dict(), "conditioning": "concat"})
    assert (config.max_steps, config.batch_size, config.save_every, config.resume) == (8, p.train["batch_size"], 2, False)
    assert config.model == dataclasses.replace(MICRO, conditioning="concat")
    assert (config.preset, config.warmup, config.lr) == (TrainConfig.preset, TrainConfig.warmup, TrainConfig.lr)
    train(dataclasses.replace(config, max_steps=2, mixed_precision="no"))  # one precision per test process
    assert profiles.train_config(p).resume  # the run has checkpoints now: continued, not refused
    assert not profiles.train_config(p, resume=False).resume


def test_ordinary_mistakes_are_one_line_errors(tmp_path, data, capsys):
    (tmp_path / "file").write_text("mine")
    assert main(["train", "--out", str(tmp_path / "file"), "--data", str(data), "--max-steps", "1", *MICRO_ARGS]) == 2
    assert "is a file; choose a folder path" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "file" / "run"), "--data", str(data), "--max-steps", "1",
                 *MICRO_ARGS]) == 2
    assert "lies under the file" in capsys.readouterr().err
    empty = root(tmp_path / "empty", n=2)
    (empty / "train.json").write_text("{}")
    assert main(["train", "--out", str(tmp_path / "r1"), "--data", str(empty), "--max-steps", "1", *MICRO_ARGS]) == 2
    assert "train.json lists no images" in capsys.readouterr().err
    escape = root(tmp_path / "escape", n=2)
    (escape / "train.json").write_text(json.dumps({"../../secret.png": ["red cube"]}))
    assert main(["train", "--out", str(tmp_path / "r2"), "--data", str(escape), "--max-steps", "1", *MICRO_ARGS]) == 2
    err = capsys.readouterr().err
    assert "'../../secret.png', which is not a plain file name" in err and err.count("\n") == 1


def test_a_full_disk_while_saving_leaves_no_half_checkpoint(tmp_path, data, monkeypatch, capsys):
    import errno

    from accelerate import Accelerator

    def full(self, output_dir=None, **kwargs):
        os.makedirs(output_dir, exist_ok=True)
        (Path(output_dir) / "optimizer.bin").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", output_dir)

    monkeypatch.setattr(Accelerator, "save_state", full)
    code = main(["train", "--out", str(tmp_path / "run"), "--data", str(data), "--max-steps", "2", "--batch-size", "4",
                 *MICRO_ARGS])
    err = capsys.readouterr().err
    assert code == 1 and "No space left on device" in err and "Traceback" not in err
    assert not list((tmp_path / "run" / "checkpoints").glob(".step-*"))


def test_workflow_steps_do_their_work_once(tmp_path, monkeypatch):
    from cddpm import folders, provenance
    from cddpm.workflow import profiles, steps

    monkeypatch.chdir(tmp_path)
    p = profiles.get("smoke", scenes=4, evaluator_epochs=1)
    root = steps.ensure_data(p, command="test")
    assert (root / "train.json").is_file() and len(json.loads((root / "train.json").read_text())) == 12
    stamp = (root / "train.json").stat().st_mtime_ns
    assert steps.ensure_data(p) == root and (root / "train.json").stat().st_mtime_ns == stamp  # not rendered again
    judge = steps.ensure_evaluator(p)
    scores = steps.judge_on_ground_truth(p, judge)
    assert set(scores) == {f"ground-truth renders of {split}" for split in p.splits}
    assert all(0 <= s["topk"] <= 1 for s in scores.values())
    assert (folders.ground_truth(p.outputs, provenance.data_key(root), "test") / "train.json").is_file()


@pytest.mark.parametrize("damage, message", [
    (lambda c: c.pop("data"), "needs model, train and scheduler objects and a data path"),
    (lambda c: c["train"].update(colour="red"), "unknown training settings ['colour']"),
    (lambda c: c["model"].update(wings=2), "unknown model fields ['wings']"),
])
def test_a_config_json_of_the_wrong_shape_is_one_line(tmp_path, data, capsys, damage, message):
    run = tmp_path / "run"
    train(config(data, run, max_steps=1, save_every=1))
    capsys.readouterr()  # the training's progress bar
    stored = json.loads((run / "config.json").read_text())
    damage(stored)
    (run / "config.json").write_text(json.dumps(stored))
    assert main(["train", "--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_train_takes_a_device_like_every_computing_command(tmp_path, data, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--data", str(data), "--max-steps", "1", "--batch-size", "4",
                 "--device", "cpu", *MICRO_ARGS]) == 0
    stored = json.loads((run / "config.json").read_text())
    assert stored["device"] == "cpu" and stored["train"]["device"] == "cpu"
    capsys.readouterr()
    assert main(["train", "--out", str(tmp_path / "r2"), "--data", str(data), "--max-steps", "1", "--batch-size",
                 "4", "--device", "banana", *MICRO_ARGS]) == 2
    assert "unknown device 'banana'" in capsys.readouterr().err


def test_a_run_written_before_a_field_existed_is_refused_in_one_line(tmp_path, data):
    first = config(data, tmp_path / "run", max_steps=2)
    train(first)
    path = tmp_path / "run" / "config.json"
    stored = json.loads(path.read_text())
    del stored["model"]["layout"], stored["train"]["hflip"]  # as an older cddpm wrote it
    path.write_text(json.dumps(stored))
    with pytest.raises(ValueError, match=r"cannot resume .*: model\.layout \(run unset, now False\); "
                                         r"train\.hflip \(run unset, now False\); use the run's settings "
                                         r"\(a field it lacks: the cddpm version"):
        train(dataclasses.replace(first, resume=True, max_steps=3))


def test_a_resume_with_another_fixed_training_setting_is_refused_and_a_resumable_one_is_taken(tmp_path, data):
    first = config(data, tmp_path / "run", max_steps=2)
    train(first)
    with pytest.raises(ValueError, match=r"cannot resume .*: train\.hflip \(run False, now True\); use the run's"):
        train(dataclasses.replace(first, resume=True, max_steps=4, hflip=True))
    assert train(dataclasses.replace(first, resume=True, max_steps=3, log_every=1))["step"] == 3


def test_a_run_of_cddpm_0_1_0_is_refused_in_one_line(tmp_path, data, capsys):
    first = config(data, tmp_path / "run", max_steps=2)
    train(first)
    path = tmp_path / "run" / "config.json"
    stored = json.loads(path.read_text())
    stored["model"]["align_channels"] = 0  # as cddpm 0.1.0 wrote every run
    path.write_text(json.dumps(stored))
    capsys.readouterr()
    for argv in (["train", "--out", first.out, "--resume", "--max-steps", "4"],
                 ["sample", "--run", first.out, "--labels", "red cube", "--steps", "1", "--out", str(tmp_path / "s")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "has unknown model fields ['align_channels'] (written by another cddpm version?)" in err \
               and err.count("\n") == 1, err


def test_precision_follows_the_hardware_is_said_once_and_recorded(tmp_path, data, capsys, monkeypatch):
    from accelerate.state import AcceleratorState

    from cddpm import device

    run = tmp_path / "run"
    argv = ["train", "--data", str(data), "--out", str(run), *MICRO_ARGS, "--batch-size", "4", "--max-steps", "1"]
    for native, used, steps in ((False, "no", "1"), (True, "bf16", "2")):  # the same run resumed on another CPU
        AcceleratorState._reset_state(reset_partial_state=True)  # as in a new process
        monkeypatch.setattr(device, "cpu_has_native_bf16", lambda native=native: native)
        assert main([*argv[:-1], steps, *(["--resume"] if steps == "2" else [])]) == 0
        stored = json.loads((run / "config.json").read_text())
        assert stored["train"]["mixed_precision"] == "auto"  # what was asked for: a resume asks again
        assert stored["precision"]["used"] == used and stored["precision"]["reason"].startswith("auto: this CPU")
        said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("precision:")]
        assert said == [device.describe_precision(used, stored["precision"]["reason"])]


def test_bf16_asked_for_on_a_cpu_without_it_warns_in_one_line(tmp_path, data, capsys, monkeypatch):
    from cddpm import device

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), *MICRO_ARGS, "--batch-size", "4",
                 "--max-steps", "1", "--mixed-precision", "bf16"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warned) == 1 and "several times slower" in warned[0] and "--mixed-precision auto or no" in warned[0]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["precision"]["used"] == "bf16"


def test_save_minutes_checkpoints_by_training_time(tmp_path, data):
    train(config(data, tmp_path / "a", max_steps=5, save_every=100, log_every=2, save_minutes=1e-9))
    assert [p.name for p in runs.checkpoints(tmp_path / "a")] == ["step-2", "step-4", "step-5"]
    train(config(data, tmp_path / "b", max_steps=5, save_every=100, log_every=2, save_minutes=60))
    assert [p.name for p in runs.checkpoints(tmp_path / "b")] == ["step-5"]
    with pytest.raises(ValueError, match="save_minutes=0 must be positive"):
        config(data, tmp_path / "c", save_minutes=0)


def test_a_checkpoint_without_a_loss_scale_resumes_in_fp16(tmp_path, data, monkeypatch):
    # a run saved in bf16 or fp32 (no scaler.pt) continued on a GPU that autocasts fp16 (a T4): a fresh loss scale
    import cddpm.train as T

    first = config(data, tmp_path / "run", max_steps=2)
    train(first)
    assert not (runs.checkpoint_dir(first.out, 2) / "scaler.pt").exists()
    make = T.make_accelerator

    def with_a_loss_scale(cfg):
        acc = make(cfg)
        acc.scaler = torch.amp.GradScaler("cpu")
        return acc

    monkeypatch.setattr(T, "make_accelerator", with_a_loss_scale)
    assert train(dataclasses.replace(first, resume=True, max_steps=3))["step"] == 3
    assert (runs.checkpoint_dir(first.out, 3) / "scaler.pt").is_file()


def at_a_tenth_of_a_step_per_second(monkeypatch) -> list:
    """Make every speed probe (which still runs its steps) report 0.1 steps/s: a 1-minute budget is then 5 steps
    (6 minus the seconds spent before training, which are more than 0 and far less than 10). Returns the probes."""
    from cddpm import budget

    probes, real = [], budget.measure
    monkeypatch.setattr(budget, "MIN_SECONDS", 0.0)
    monkeypatch.setattr(budget, "measure", lambda step, agree: probes.append(
        dataclasses.replace(real(step, agree), steps_per_s=0.1)) or probes[-1])
    return probes


def test_a_budget_sizes_the_run_so_its_lr_schedule_ends_on_time(tmp_path, data, monkeypatch):
    probes = at_a_tenth_of_a_step_per_second(monkeypatch)
    result = train(config(data, tmp_path / "budget", max_steps=None, minutes=1.0))
    assert len(probes) == 1 and probes[0].steps >= 3  # the probe ran steps of its own
    stored = runs.read_config(tmp_path / "budget")
    assert stored["train"]["minutes"] == 1.0 and stored["train"]["max_steps"] is None
    assert stored["budget"]["steps"] == result["step"] == 5 and stored["budget"]["steps_per_s"] == 0.1
    assert result["budget"] == stored["budget"] and 0 < stored["budget"]["seconds_before_training"] < 10
    lrs = [r["lr"] for r in runs.read_metrics(tmp_path / "budget")]
    assert len(lrs) == 5 and max(lrs) > 1e-4 and lrs[-1] == pytest.approx(0, abs=1e-12)  # cosine ends at step 5
    # the probe leaves no trace: the same seed and step count give the same weights as a plain 5-step run
    train(config(data, tmp_path / "steps", max_steps=5))
    for name in (runs.MODEL_FILE, runs.EMA_FILE):
        a, b = (weights(tmp_path / run / "checkpoints/step-5", name) for run in ("budget", "steps"))
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_a_probe_that_misread_the_speed_is_corrected_by_the_runs_own_steps(tmp_path, data, monkeypatch):
    from cddpm import budget

    assert budget.retimed_steps(30, 1.0, 570.0) == 600 and budget.retimed_steps(30, 1.0, 570.0, cap=100) == 100
    assert budget.retimed_steps(30, 2.0, 15.0) == 60 and budget.retimed_steps(30, 1.0, 0.0) == 31
    real = budget.measure  # the probe reads 0.5 steps/s: a 30-second budget would be at most 15 steps
    monkeypatch.setattr(budget, "measure", lambda step, agree: dataclasses.replace(real(step, agree), steps_per_s=0.5))
    monkeypatch.setattr(budget, "RETIME_AFTER", 0.0)  # re-time as soon as MIN_STEPS steps are timed
    result = train(config(data, tmp_path / "run", max_steps=50, minutes=0.5, save_every=10**6))
    sized = runs.read_config(tmp_path / "run")["budget"]
    assert sized == result["budget"] and sized["retimed_at_step"] == budget.MIN_STEPS
    assert sized["probed_steps"] <= 15 and result["step"] == sized["steps"] == 50  # what the budget holds, to the cap
    lrs = [r["lr"] for r in runs.read_metrics(tmp_path / "run")]
    assert len(lrs) == 50 and lrs[-1] == pytest.approx(0, abs=1e-12)  # the new schedule ends at its last step
    # a re-timed run resumes exactly: the new length is recorded before the first checkpoint
    one_go = config(data, tmp_path / "a", max_steps=20, minutes=0.5, save_every=10)
    train(one_go)

    def crash_after_step_12(record):
        if record["step"] == 12:
            raise Crash

    pieces = dataclasses.replace(one_go, out=str(tmp_path / "b"))
    with pytest.raises(Crash):
        train(pieces, on_log=crash_after_step_12)
    assert train(dataclasses.replace(pieces, resume=True))["step"] == 20
    for name in (runs.MODEL_FILE, runs.EMA_FILE):
        a, b = (weights(tmp_path / run / "checkpoints/step-20", name) for run in "ab")
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_a_budget_is_capped_by_max_steps_and_short_runs_still_decay(tmp_path, data, monkeypatch):
    at_a_tenth_of_a_step_per_second(monkeypatch)
    assert train(config(data, tmp_path / "capped", max_steps=3, minutes=1.0))["step"] == 3
    # a warm-up longer than the run takes half of it, so the LR still reaches 0 at the last step
    lrs = [r["lr"] for r in runs.read_metrics(train(config(data, tmp_path / "short", max_steps=4, warmup=200))["run"])]
    assert lrs[1] == max(lrs) and lrs[-1] == pytest.approx(0, abs=1e-12)


def test_the_default_warm_up_is_a_tenth_of_the_run_at_most_200_steps(tmp_path, data):
    assert [warmup_steps(None, n) for n in (4, 637, 2000, 10054)] == [0, 63, 200, 200]
    assert [warmup_steps(w, 637) for w in (0, 50, 200, 1000)] == [0, 50, 200, 318]
    lrs = [r["lr"] for r in runs.read_metrics(train(config(data, tmp_path / "run", max_steps=20, warmup=None))["run"])]
    assert lrs[0] < lrs[1] == max(lrs) and lrs[-1] == pytest.approx(0, abs=1e-12)  # 2 steps up, then down to 0


def test_a_budgeted_run_resumes_exactly_or_refuses(tmp_path, data, monkeypatch):
    probes = at_a_tenth_of_a_step_per_second(monkeypatch)
    one_go = config(data, tmp_path / "a", max_steps=None, minutes=1.0, batch_size=6)  # crosses epochs
    train(one_go)

    pieces = crashed_after_step_4(one_go, tmp_path / "b")
    assert len(probes) == 2
    with pytest.raises(ValueError, match=r"sized for 1 minutes \(5 steps\); resume with its own settings") as err:
        train(dataclasses.replace(pieces, resume=True, minutes=2.0))
    assert "\n" not in str(err.value)
    assert train(dataclasses.replace(pieces, resume=True))["step"] == 5
    assert len(probes) == 2  # the resume kept the step count it was sized to, without measuring again
    for name in (runs.MODEL_FILE, runs.EMA_FILE):
        a, b = (weights(tmp_path / run / "checkpoints/step-5", name) for run in "ab")
        assert all(torch.equal(a[k], b[k]) for k in a), name
    # a longer run in steps may follow; a run in steps is not resumed by a budget
    assert train(dataclasses.replace(pieces, resume=True, minutes=None, max_steps=6))["step"] == 6
    with pytest.raises(ValueError, match=r"cannot resume .* with a 1-minute budget: its length was set in steps"):
        train(dataclasses.replace(pieces, resume=True))


def test_cli_budget_and_a_length_given_on_resume(tmp_path, data, capsys, monkeypatch):
    from cddpm import budget

    monkeypatch.setattr(budget, "MIN_SECONDS", 0.0)
    run = tmp_path / "run"
    base = ["train", "--data", str(data), "--out", str(run), *MICRO_ARGS, "--batch-size", "4"]
    assert main([*base, "--minutes", "5", "--max-steps", "3"]) == 0  # the real probe; 3 steps fit easily in 5 min
    captured = capsys.readouterr()
    sized = json.loads(captured.out)["budget"]
    assert sized["steps"] == 3 and sized["max_steps"] == 3 and sized["probe_steps"] >= 3 and sized["steps_per_s"] > 0
    assert "5-minute budget" in captured.err and "-> 3 steps (the max_steps cap)" in captured.err
    assert main([*base, "--minutes", "5", "--epochs", "2"]) == 2
    assert "give minutes with max_steps as its cap, not with epochs" in capsys.readouterr().err
    assert main(["train", "--out", str(run), "--resume", "--max-steps", "4"]) == 0  # a length given replaces the budget
    assert json.loads(capsys.readouterr().out)["step"] == 4 and load_config(run).minutes is None


@pytest.mark.parametrize("field, value, message", [
    ("batch_size", None, "batch_size=None must be positive"),
    ("log_every", 0, "log_every=0 must be positive"),
    ("prediction_type", "x0", "unknown prediction type 'x0'; use one of epsilon, v_prediction"),
])
def test_a_bad_setting_is_refused_when_the_config_is_made(tmp_path, field, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig(out=str(tmp_path / "run"), max_steps=1, **{field: value})
    assert not (tmp_path / "run").exists()
