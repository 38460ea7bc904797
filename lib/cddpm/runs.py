"""The run folder written by training and read by sampling.

    RUN/config.json                     every setting: {"model": ..., "train": ..., "scheduler": ..., "data": ...}
    RUN/checkpoints/step-N/model.safetensors   raw weights of the ConditionalUNet
    RUN/checkpoints/step-N/ema.safetensors     EMA weights (what sampling uses by default)
    RUN/checkpoints/step-N/state.json          {"step": N, ...}
    RUN/checkpoints/step-N/...                 optimiser, LR scheduler and RNG states for --resume
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from safetensors.torch import load_file

from .model import ConditionalUNet, ModelConfig

_STEP = re.compile(r"^step-(\d+)$")


def read_config(run: str | os.PathLike) -> dict:
    """``RUN/config.json`` as a dict, with one-line errors for a missing run."""
    run = Path(run)
    path = run / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run} is not a training run (no config.json); train one with `cddpm train --out {run}`")
    return json.loads(path.read_text())


def checkpoints(run: str | os.PathLike) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first (temporary folders are ignored)."""
    folder = Path(run) / "checkpoints"
    found = [p for p in folder.glob("step-*") if p.is_dir() and _STEP.match(p.name)] if folder.is_dir() else []
    return sorted(found, key=lambda p: int(_STEP.match(p.name).group(1)))


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


def load_model(run: str | os.PathLike, checkpoint: str = "last", ema: bool = True,
               device: str | torch.device = "cpu") -> tuple[ConditionalUNet, dict, Path]:
    """The run's model with its EMA (or raw) weights, in eval mode, plus its config and checkpoint folder."""
    config = read_config(run)
    folder = resolve(run, checkpoint)
    model = ConditionalUNet(ModelConfig(**config["model"]))
    weights = folder / ("ema.safetensors" if ema else "model.safetensors")
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing; the checkpoint is incomplete, pick another with --checkpoint")
    model.load_state_dict(load_file(weights, device="cpu"))
    return model.to(device).eval(), config, folder
