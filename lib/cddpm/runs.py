"""The run folder written by training and read by sampling (layout: docs/training-and-sampling.md#run-folder)."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from filelock import FileLock, Timeout
from safetensors.torch import load_file

from .model import ConditionalUNet, ModelConfig
from .paths import check_folder_target, read_error

_STEP = re.compile(r"^step-(\d+)$")
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
STATE_FILE = "state.json"
METRICS_FILE = "metrics.jsonl"
LOCK_FILE = ".lock"


def read_config(run: str | os.PathLike) -> dict:
    """``RUN/config.json`` as a dict, with one-line errors for a missing run."""
    run = Path(run)
    path = run / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run} is not a training run (no config.json); train one with `cddpm train --out {run}`")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid json ({err}); restore it from a copy, or train a new --out") from None
    needed = {"model": dict, "train": dict, "scheduler": dict, "data": str}
    if not isinstance(config, dict) or any(not isinstance(config.get(k), t) for k, t in needed.items()):
        raise ValueError(f"{path} is not a cddpm run config (needs model, train and scheduler objects and a data "
                         "path); restore it from a copy, or train a new --out")
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(config["model"]) - fields)
    if unknown:
        raise ValueError(f"{path} has unknown model fields {unknown} (written by another cddpm version?); "
                         "use the version that wrote it, or train a new run")
    return config


@contextmanager
def locked(run: str | os.PathLike, hold: bool = True) -> Iterator[Path]:
    """Hold ``RUN/.lock`` for the block so that a second trainer of the folder refuses in one line (``hold=False``:
    accelerate's other processes); a failure before config.json exists removes what was made for it."""
    run = Path(run)
    if not hold:
        yield run
        return
    check_folder_target(run, "--out")
    made = [p for p in (run, *run.parents) if not p.exists()]
    run.mkdir(parents=True, exist_ok=True)
    path = run / LOCK_FILE
    new = not path.exists()
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise FileExistsError(f"--out {run} is being trained by another process (it holds {path}); wait for it to "
                              "finish, or train into another --out") from None
    try:
        yield run
    except BaseException:
        if not (run / "config.json").exists():
            if new:
                path.unlink(missing_ok=True)
            for folder in made:  # deepest first; only what is still empty
                try:
                    folder.rmdir()
                except OSError:
                    break
        raise
    finally:
        lock.release()


def read_metrics(run: str | os.PathLike) -> list[dict]:
    """The records of ``RUN/metrics.jsonl``, or of ``run`` itself when it names a ``.jsonl`` file ([] when absent). A
    partial last line (a run killed while writing) is dropped; a malformed line elsewhere is a one-line error."""
    path = Path(run) if Path(run).suffix == ".jsonl" else Path(run) / METRICS_FILE
    lines = [line for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path} line {i + 1} is not json; delete that line or the file to go on") from None
    return records


def checkpoint_dir(run: str | os.PathLike, step: int) -> Path:
    """``RUN/checkpoints/step-N``."""
    return Path(run) / "checkpoints" / f"step-{step}"


def prune(run: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` checkpoints and any stale temporary folders; return what went."""
    found = checkpoints(run)
    gone = found[:-keep] if keep > 0 else []
    gone += [p for p in (Path(run) / "checkpoints").glob(".step-*") if p.is_dir()]  # the run's lock: none is in use
    for path in gone:
        shutil.rmtree(path)
    return gone


def read_state(folder: Path) -> dict:
    """A checkpoint's ``state.json``."""
    path = folder / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; the checkpoint is incomplete, move {folder} aside or pick another")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise unreadable(path, err, f"move {folder} aside or pick another checkpoint") from None


def checkpoints(run: str | os.PathLike) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first (temporary folders are ignored)."""
    folder = Path(run) / "checkpoints"
    found = [p for p in folder.glob("step-*") if p.is_dir() and _STEP.match(p.name)] if folder.is_dir() else []
    return sorted(found, key=_step)


def resolve(run: str | os.PathLike, checkpoint: str = "last") -> Path:
    """The folder of ``last`` or ``step-N``; a one-line error lists what exists."""
    read_config(run)
    found = checkpoints(run)
    if not found:
        raise FileNotFoundError(f"{run} has no checkpoints yet; train it (or resume it) with `cddpm train --out {run}`")
    if checkpoint == "last":
        return found[-1]
    for path in found:
        if path.name == checkpoint:
            return path
    names = ", ".join(p.name for p in found)
    raise FileNotFoundError(f"checkpoint {checkpoint!r} not in {run}; choose last or one of: {names}")


def previous(folder: Path) -> Path | None:
    """The newest complete checkpoint of the same run older than ``folder`` (None when there is none)."""
    older = [p for p in checkpoints(folder.parent.parent) if _step(p) < _step(folder)]
    return older[-1] if older else None


def _step(folder: Path) -> int:
    return int(_STEP.match(folder.name).group(1))


def unreadable(path: Path, err: Exception, fix: str) -> ValueError:
    """The one-line error for a checkpoint file that cannot be read, naming it, the reason and ``fix``."""
    if isinstance(err, FileNotFoundError):
        return ValueError(f"{path} is missing; {fix}")
    return ValueError(f"{path} is unreadable ({read_error(err)}); {fix}")


def load_weights(path: Path, fix: str) -> dict[str, torch.Tensor]:
    """A safetensors file as CPU tensors; a missing, truncated or corrupt file is a one-line error ending in ``fix``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; {fix}")
    try:
        return load_file(path, device="cpu")
    except Exception as err:  # safetensors raises SafetensorError (and OSError) for truncated or foreign files
        raise unreadable(path, err, fix) from None


def load_model(run: str | os.PathLike, checkpoint: str = "last", ema: bool = True,
               device: str | torch.device = "cpu") -> tuple[ConditionalUNet, dict, Path]:
    """The run's model with its EMA (or raw) weights, in eval mode, plus its config and checkpoint folder."""
    config = read_config(run)
    folder = resolve(run, checkpoint)
    model = ConditionalUNet(ModelConfig(**config["model"]))
    before = previous(folder)
    fix = (f"the checkpoint is damaged; pick --checkpoint {before.name}" if before else
           "the checkpoint is damaged and the run keeps no earlier one; train it again")
    model.load_state_dict(load_weights(folder / (EMA_FILE if ema else MODEL_FILE), fix))
    return model.to(device).eval(), config, folder
