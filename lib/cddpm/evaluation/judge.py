"""What ``sample_split`` is handed to judge its samples: built here from an evaluator checkpoint, so that sampling
itself knows no evaluator (it takes a :class:`SampleJudge` as an object)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .. import provenance
from ..data import to_uint8
from . import fidelity
from .evaluator import Evaluator, evaluate_images


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


def for_sampling(evaluator: str | os.PathLike | None, device: str | torch.device,
                 reference: str | os.PathLike | None = None, floor_reference: str | os.PathLike | None = None,
                 inception: bool = False) -> SampleJudge | None:
    """The judge of ``evaluator`` (None: no judge), checked: the file exists, and FD and KID have a judge and a
    reference."""
    if evaluator is not None and not Path(evaluator).is_file():
        raise FileNotFoundError(f"--evaluator {evaluator} does not exist; train one with `cddpm train-evaluator` or "
                                "fix it")
    if (reference is not None or floor_reference is not None or inception) and (evaluator is None or reference is None):
        raise ValueError("--reference, --floor-reference and --inception measure against ground-truth renders in "
                         "the judge's features; give --evaluator and --reference DIR")
    if evaluator is None:
        return None
    return SampleJudge(Evaluator.load(evaluator, device), reference, floor_reference, inception)

