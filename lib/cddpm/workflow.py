"""The steps of a profile's workflow that the notebooks and ``cddpm demo`` share: data, evaluator, its ground truth.

Each step does its work only when its output is missing, so a notebook re-run or a resumed demo
costs nothing for what is already there.
"""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

import torch

from . import batch, data, profiles, render
from . import evaluator as ev
from . import labels as L
from .device import resolve as resolve_device
from .evaluator_training import train_evaluator


def ensure_data(p: profiles.Profile, command: str = "cddpm demo") -> Path:
    """The profile's i-CLEVR root, rendered first when it is the default synthetic set and missing."""
    root = Path(p.data_root)
    if p.data_root == profiles.PROFILES[p.name].data_root and not (root / "train.json").is_file():
        render.render_dataset(root, scenes=p.scenes, seed=p.seed, command=command)
    return root


def ensure_evaluator(p: profiles.Profile) -> ev.Evaluator:
    """The profile's judge, trained on its data first (with the profile's epochs) when the file is missing."""
    if not Path(p.evaluator).is_file():
        kwargs = {"epochs": p.evaluator_epochs} if p.evaluator_epochs else {}
        train_evaluator(p.data_root, p.evaluator, seed=p.seed, device=p.device, **kwargs)
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


def floor_renders(p: profiles.Profile, split: str, per_condition: int, command: str = "cddpm demo") -> Path:
    """Renders of a split's conditions, ``per_condition`` each, at another seed than :func:`ground_truth`'s: stand-ins
    for as many generated images, whose distance to the ground truth is the fidelity floor."""
    out = Path("outputs/gt") / p.name / f"{split}_floor{per_condition}"
    if not (out / "train.json").is_file():
        render.render_conditions(data.load_condition_lists(p.data_root, split), out, per_condition=per_condition,
                                 seed=p.seed + 2002, force=True, command=command)
    return out


def fidelity_of_samples(p: profiles.Profile, judge: ev.Evaluator,
                        outputs: str = "outputs") -> dict[tuple[str, float], tuple[dict, int]]:
    """FD and KID (:func:`cddpm.fidelity.measure`) of the profile's samples at its sampler setting, seeds pooled, against
    :func:`ground_truth`, with the floor of :func:`floor_renders`, and the number of images, per (split, guidance)
    whose every seed was sampled."""
    from .fidelity import measure

    results = {}
    for split, w in itertools.product(p.splits, p.guidance):
        folders = [batch.samples_dir(p.batch, outputs) / batch.tag(split, seed, "last", p.sampler, p.steps, w) / "images"
                   / split for seed in p.seeds]
        if all(folder.is_dir() for folder in folders):
            conditions = data.load_condition_lists(p.data_root, split)
            images = torch.cat([ev.read_folder(folder, len(conditions))[0] for folder in folders])
            results[split, w] = measure(judge, images, L.encode_batch(conditions * len(folders)), ground_truth(p, split),
                                        floor_renders(p, split, len(folders))), len(images)
    return results


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
