"""The steps of a profile's workflow that the notebooks and ``cddpm demo`` share: data, evaluator, its ground truth.

Each step does its work only when its output is missing, so a notebook re-run or a resumed demo
costs nothing for what is already there.
"""
from __future__ import annotations

import sys
from pathlib import Path

from . import batch, data, profiles, render
from . import evaluator as ev
from .device import resolve as resolve_device
from .evaluator_training import train_evaluator


def ensure_data(p: profiles.Profile, command: str = "cddpm demo") -> Path:
    """The profile's i-CLEVR root, rendered first when it is the default synthetic set and missing."""
    root = Path(p.data_root)
    if p.data_root == profiles.PROFILES[p.name].data_root and not (root / "train.json").is_file():
        render.render_dataset(root, scenes=p.scenes, seed=p.seed, command=command)
    return root


def ensure_evaluator(p: profiles.Profile) -> ev.Evaluator:
    """The profile's judge, trained on its data first (the profile's epochs or minutes) when the file is missing."""
    if not Path(p.evaluator).is_file():
        kwargs = {"epochs": p.evaluator_epochs} if p.evaluator_epochs else {}
        train_evaluator(p.data_root, p.evaluator, seed=p.seed, device=p.device, minutes=p.evaluator_minutes, **kwargs)
    return ev.Evaluator.load(p.evaluator, resolve_device(p.device))


def ensure_teacher(p: profiles.Profile) -> None:
    """The evaluator the profile's model aligns its features to, trained first (``align_epochs``, seed + 1) when missing."""
    if p.align_evaluator and not Path(p.align_evaluator).is_file():
        train_evaluator(p.data_root, p.align_evaluator, epochs=p.align_epochs, seed=p.seed + 1, device=p.device)


def ground_truth(p: profiles.Profile, split: str, command: str = "cddpm demo") -> Path:
    """Ground-truth renders of a split's conditions (``gt_per_condition`` each) under ``outputs/gt/PROFILE/SPLIT``."""
    out = Path("outputs/gt") / p.name / split
    if not (out / "train.json").is_file():
        render.render_conditions(data.load_condition_lists(p.data_root, split), out, per_condition=p.gt_per_condition,
                                 seed=p.seed + 1001, force=True, command=command)
    return out


def judge_on_ground_truth(p: profiles.Profile, judge: ev.Evaluator) -> dict[str, dict]:
    """The judge's metrics on ground-truth renders of each of the profile's splits: how far to trust its numbers."""
    return {split: ev.evaluate_root(judge, ground_truth(p, split)) for split in p.splits}


def sample(p: profiles.Profile, split: str, seed: int = 0, checkpoint: str = "last", sampler: str | None = None,
           steps: int | None = None, guidance: float | None = None, evaluator: str | None = None,
           data_root: str | None = None, out_dir: str | None = None, batch_size: int = 64,
           device: str | None = None) -> tuple[dict, Path]:
    """``03_sample``'s step: sample a split with the profile's run, filling every ``None`` from the profile (sampler,
    steps, its largest guidance, its evaluator, ``outputs/samples/<batch>/<combination>``); returns the metrics and
    the folder. An evaluator given by name must exist; the profile's own may be missing (then nothing is scored,
    and a note says how to train it)."""
    from .sample import sample_split

    sampler, steps = sampler or p.sampler, steps or p.steps
    guidance = max(p.guidance) if guidance is None else guidance
    if evaluator is None and not Path(p.evaluator).is_file():
        print(f"note: no evaluator at {p.evaluator}, so nothing is scored; run 01_data to train one", file=sys.stderr)
    else:
        evaluator = evaluator or p.evaluator
    out = Path(out_dir) if out_dir else batch.samples_dir(p.batch) / batch.tag(split, seed, checkpoint, sampler, steps,
                                                                                guidance)
    metrics = sample_split(p.run, out, split=split, data=data_root, checkpoint=checkpoint, sampler=sampler, steps=steps,
                           guidance=guidance, seed=seed, batch_size=batch_size, evaluator=evaluator, device=device or p.device,
                           progress=False)
    return metrics, out
