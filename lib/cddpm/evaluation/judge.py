"""What ``sample_split`` is handed to judge and to guide its samples: built here from evaluator checkpoints, so that
sampling itself knows no evaluator (it takes a :class:`SampleJudge` and a :class:`ClassifierGuide` as objects)."""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import provenance
from ..data import to_uint8
from . import fidelity
from .evaluator import Evaluator, evaluate_images


class ClassifierGuide:
    """An evaluator's log p(requested set | image): the Bernoulli log-likelihood summed over all 24 classes, so
    missing objects and extra ones both lower it; ``path`` is what ``metrics.json`` records of it."""

    def __init__(self, evaluator: Evaluator):
        evaluator.network.requires_grad_(False)  # gradients flow to the image only
        self.evaluator, self.path = evaluator, str(evaluator.path)

    def __call__(self, images: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        logits = self.evaluator(images).float()
        return -F.binary_cross_entropy_with_logits(logits, cond.float(), reduction="none").sum(1)


class SampleJudge:
    """Scores samples with ``evaluator`` (top-k, exact set, extra objects) and, with a ``reference`` root of
    ground-truth renders, their FD and KID (with ``floor_reference``, ``inception``: :func:`fidelity.measure`)."""

    def __init__(self, evaluator: Evaluator, reference: str | os.PathLike | None = None,
                 floor_reference: str | os.PathLike | None = None, inception: bool = False):
        self.evaluator, self.reference, self.floor_reference, self.inception = (evaluator, reference, floor_reference,
                                                                                inception)

    def check(self, labels: torch.Tensor, root: Path) -> None:
        """Before sampling: refuse a reference that cannot measure ``labels``; say whether the judge suits ``root``."""
        if self.reference is not None:
            fidelity.check(labels, self.reference, self.floor_reference, self.inception)
        if (root / "train.json").is_file():
            provenance.say(provenance.judge_note(self.evaluator.path, self.evaluator.trained_on, root))

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> dict:
        """The metrics of ``images`` in [-1, 1] drawn for multi-hot ``labels``, with the judge that made them."""
        out = dict(evaluate_images(self.evaluator, images, labels), evaluator=str(self.evaluator.path),
                   evaluator_sha256=self.evaluator.digest(), evaluator_train_json_sha1=self.evaluator.trained_on)
        if self.reference is not None:
            out.update(fidelity.measure(self.evaluator, to_uint8(images), labels, self.reference, self.floor_reference, self.inception))
        return out


def for_sampling(evaluator: str | os.PathLike | None, guide_evaluator: str | os.PathLike | None,
                 device: str | torch.device, reference: str | os.PathLike | None = None,
                 floor_reference: str | os.PathLike | None = None,
                 inception: bool = False) -> tuple[SampleJudge | None, ClassifierGuide | None]:
    """The judge of ``evaluator`` and the guide of ``guide_evaluator`` (either may be None), checked: both files
    exist, FD and KID have a judge and a reference, and the guide is not the judge (that inflates the score)."""
    for path, flag in ((evaluator, "--evaluator"), (guide_evaluator, "--guide-evaluator")):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{flag} {path} does not exist; train one with `cddpm train-evaluator` or fix it")
    if (reference is not None or floor_reference is not None or inception) and (evaluator is None or reference is None):
        raise ValueError("--reference, --floor-reference and --inception measure against ground-truth renders in "
                         "the judge's features; give --evaluator and --reference DIR")
    judging = Evaluator.load(evaluator, device) if evaluator is not None else None
    guiding = Evaluator.load(guide_evaluator, device) if guide_evaluator is not None else None
    if judging is not None and guiding is not None and guiding.digest() == judging.digest():
        raise ValueError(f"--guide-evaluator {guide_evaluator} holds the same weights as the judging --evaluator "
                         f"{evaluator}, which inflates the score; guide with one trained independently (another seed)")
    return (None if judging is None else SampleJudge(judging, reference, floor_reference, inception),
            None if guiding is None else ClassifierGuide(guiding))

