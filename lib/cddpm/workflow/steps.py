"""The steps that the notebooks and ``cddpm demo`` share (data, evaluator, its ground truth), each done only when
its output is missing."""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

import torch

from .. import data, folders, provenance, render
from .. import labels as L
from ..choices import DEFAULT_STEPS
from ..data import held_out
from ..device import resolve as resolve_device
from ..evaluation import evaluator as ev
from ..evaluation.judge import for_sampling
from ..evaluation.training import train_evaluator
from ..sample import SampleRequest, sample_split
from . import profiles


def ensure_data(p: profiles.Profile, command: str = "cddpm demo") -> Path:
    """The profile's i-CLEVR root, rendered first when it is the synthetic set and missing."""
    root = Path(p.data_root)
    if root == folders.synthetic_data(p.outputs) and not (root / "train.json").is_file():
        render.render_dataset(root, scenes=p.scenes, seed=p.seed, command=command)
    return root


def ensure_evaluator(p: profiles.Profile) -> ev.Evaluator:
    """The profile's judge (:func:`cddpm.workflow.profiles.evaluator_path`), trained on its data first when missing; a
    judge that learned other data is said in one line, or refused where the profile filed it under this data's key."""
    path = profiles.evaluator_path(p)
    if not path.is_file():
        kwargs = {"epochs": p.evaluator_epochs} if p.evaluator_epochs else {}
        train_evaluator(p.data_root, path, seed=p.seed, device=p.device, minutes=p.evaluator_minutes,
                        hold_out=not provenance.rendered(p.data_root), **kwargs)
    judge = ev.Evaluator.load(path, resolve_device(p.device))
    if p.evaluator is None and judge.trained_on not in (None, provenance.train_sha(p.data_root)):
        raise ValueError(f"{path} is filed under the key of {p.data_root} but learned another train.json; move it "
                         "aside and run 01_data again to train the judge of this data")
    provenance.say(provenance.judge_note(path, judge.trained_on, p.data_root))
    return judge


def _renders(p: profiles.Profile, split: str, name: str, per_condition: int, seed: int, command: str) -> Path:
    """Renders of a split's conditions (``per_condition`` each, ``seed``, as the root was rendered) in ``name`` under the
    data's key; rendered again when the folder holds other renders."""
    conditions = data.load_condition_lists(p.data_root, split)
    out = folders.ground_truth(p.outputs, provenance.data_key(p.data_root), name)
    realistic = bool(data.read_json(Path(p.data_root) / "meta.json").get("realistic"))
    wanted = dict(conditions=conditions, per_condition=per_condition, seed=seed, realistic=realistic)
    try:
        meta = data.read_json(out / "meta.json")
        fresh = {k: meta.get(k) for k in wanted} == wanted and (out / "train.json").is_file()
    except (FileNotFoundError, ValueError):
        fresh = False
    if not fresh:
        render.render_conditions(conditions, out, per_condition=per_condition, seed=seed, force=True, command=command,
                                 realistic=realistic)
    return out


def ground_truth(p: profiles.Profile, split: str, command: str = "cddpm demo") -> Path:
    """Ground-truth renders of a split's conditions (``gt_per_condition`` each) under the data's key."""
    return _renders(p, split, split, p.gt_per_condition, p.seed + 1001, command)


def fidelity_of_samples(p: profiles.Profile, judge: ev.Evaluator) -> dict[tuple[str, float], tuple[dict, int]]:
    """FD and KID of the profile's samples (seeds pooled) against :func:`ground_truth` with the floor (as many renders
    as samples, at another seed: their distance to the ground truth), per (split, guidance) whose every seed was
    sampled; empty on a root we did not render."""
    from ..evaluation.fidelity import measure

    results = {}
    if not provenance.rendered(p.data_root):
        return results
    for split, w in itertools.product(p.splits, p.guidance):
        found = [folders.samples(p.outputs, p.batch) / folders.tag(split, seed, "last", p.sampler, p.steps, w,
                                                                    p.weights) / "images" / split for seed in p.seeds]
        if all(folder.is_dir() for folder in found):
            conditions = data.load_condition_lists(p.data_root, split)
            images = torch.cat([ev.read_folder(folder, len(conditions))[0] for folder in found])
            truth = ground_truth(p, split)
            floor = _renders(p, split, f"{split}_floor{len(found)}", len(found), p.seed + 2002, "cddpm demo")
            results[split, w] = measure(judge, images, L.encode_batch(conditions * len(found)), truth, floor), len(images)
    return results


def judge_on_ground_truth(p: profiles.Profile, judge: ev.Evaluator) -> dict[str, dict]:
    """The judge's metrics on ground truth: renders of the profile's splits on a root we rendered, else the root's
    own held-out scenes (:func:`cddpm.data.held_out`), which the profile keeps out of training."""
    root = Path(p.data_root)
    if provenance.rendered(root):
        return {f"ground-truth renders of {split}": ev.evaluate_root(judge, ground_truth(p, split))
                for split in p.splits}
    dataset = data.ICLEVRDataset(root, "train", preload=True)
    held = held_out([f.name for f in dataset.files])
    if not held.any():
        raise ValueError(f"{root} has too few scenes to hold any out for checking the judge; give a larger root")
    scores = judge.scores(data.to_float(dataset.images[held]), check_range=False)
    what = (f"{int(held.sum())} held-out images of {root} (whole scenes kept out of the profile's training; "
            "not our render, so no ground truth is rendered)")
    return {what: dict(ev.summarize(scores, dataset.labels[held]), split="held-out", images=str(root),
                       evaluator=str(judge.path))}


TRUSTED_TOPK = 0.9  # a judge that misses more than one object in ten of ground truth says little about a model


def judge_caveat(on_ground_truth: dict[str, dict]) -> str | None:
    """A line for a judge whose ground-truth reading (:func:`judge_on_ground_truth`) is below ``TRUSTED_TOPK``:
    what its scores are worth and how to judge the same samples better; None for a judge worth reading."""
    worst = min((scores["topk"] for scores in on_ground_truth.values()), default=1.0)
    if worst >= TRUSTED_TOPK:
        return None
    return (f"note: this judge reads ground truth at top-k {worst:.2f} (below {TRUSTED_TOPK}), so its scores say "
            "little about the model; judge the same samples with a judge trained longer (`cddpm train-evaluator`) "
            "or the course's checkpoint.pth: `cddpm evaluate --images FOLDER --evaluator CHECKPOINT` "
            "(docs/evaluator.md)")


def profile_request(p: profiles.Profile, sampler: str | None = None, steps: int | None = None,
                    guidance: float | None = None, **given) -> SampleRequest:
    """A :class:`~cddpm.sample.SampleRequest` of ``given`` settings and the profile's sampler, steps and largest
    guidance wherever those are ``None``."""
    return SampleRequest(sampler=sampler or p.sampler, steps=steps or p.steps,
                         guidance=max(p.guidance) if guidance is None else guidance, **given)


def sample(p: profiles.Profile, split: str, request: SampleRequest | None = None, checkpoint: str = "last",
           evaluator: str | None = None, data_root: str | None = None, out_dir: str | None = None,
           device: str | None = None) -> tuple[dict, Path]:
    """``03_sample``'s step: sample a split with the profile's run and weights as ``request`` says (default
    :func:`profile_request`), judged by ``evaluator`` (default: the profile's, which may be missing), into
    ``out_dir``; returns metrics, folder."""
    request = request or profile_request(p)
    if evaluator is None:
        own = profiles.evaluator_path(p)
        if own.is_file():
            evaluator = own
        else:
            print(f"note: no evaluator at {own}, so nothing is scored; run 01_data to train one", file=sys.stderr)
    steps = request.steps or DEFAULT_STEPS[request.sampler]
    out = Path(out_dir) if out_dir else folders.samples(p.outputs, p.batch) / folders.tag(
        split, request.seed, checkpoint, request.sampler, steps, request.guidance, p.weights)
    device = resolve_device(device or p.device)
    judge = for_sampling(evaluator, device)
    metrics = sample_split(p.run, out, request, split=split, data=data_root, checkpoint=checkpoint,
                           ema=p.weights == "ema", judge=judge, device=device, progress=False)
    return metrics, out
