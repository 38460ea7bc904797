"""Accuracy metrics on (N, 24) evaluator scores (sigmoid probabilities: top-k follows ``torch.topk``'s order among
ties, as the course does) against requested multi-hot ``labels``."""
from __future__ import annotations

import torch

from ..labels import NUM_CLASSES


def _check(scores: torch.Tensor, labels: torch.Tensor, allow_empty: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    scores, labels = torch.as_tensor(scores), torch.as_tensor(labels)
    if scores.dim() != 2 or scores.shape[1] != NUM_CLASSES or scores.shape != labels.shape:
        raise ValueError(f"expected scores and labels of the same shape (N, {NUM_CLASSES}), "
                         f"got {tuple(scores.shape)} and {tuple(labels.shape)}")
    requested = labels > 0.5
    if not torch.all((labels == 0) | (labels == 1)):
        raise ValueError("labels must be multi-hot (0 or 1 per class); encode them with cddpm.labels.encode_batch")
    empty = torch.nonzero(requested.sum(1) == 0).flatten().tolist()
    if empty and not allow_empty:
        raise ValueError(f"images {empty[:5]} request no object; every condition needs 1 to 3 objects")
    return scores.float(), requested


def topk_credit(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N, 24) hits of the course's rule: 1 for each requested class among ``torch.topk(scores[i], k)``, k = objects
    requested by image i, row by row as the course's ``compute_acc`` (ties broken by torch's order, as there)."""
    scores, requested = _check(scores, labels, allow_empty=True)
    credit = torch.zeros_like(scores)
    for i, k in enumerate(requested.sum(1).tolist()):
        credit[i, scores[i].topk(k).indices] = 1.0
    return credit * requested


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """The course's ``compute_acc``: requested objects found in each image's top-k scores / all requested objects
    (images requesting none count for nothing; none requested at all is an error)."""
    credit = topk_credit(scores, labels)
    total = (torch.as_tensor(labels) > 0.5).sum().item()
    if total == 0:
        raise ValueError("no image requests an object; top-k accuracy needs at least one requested object")
    return credit.sum(dtype=torch.float64).item() / total


def exact_set_accuracy(scores: torch.Tensor, labels: torch.Tensor, threshold: float = 0.5) -> float:
    """Share of images whose classes scoring above ``threshold`` are exactly the requested set (extras count)."""
    scores, requested = _check(scores, labels)
    return ((scores > threshold) == requested).all(1).double().mean().item()


def extra_object_rate(scores: torch.Tensor, labels: torch.Tensor, threshold: float = 0.5) -> float:
    """Share of images in which some unrequested class scores strictly above ``threshold`` (an extra object)."""
    scores, requested = _check(scores, labels)
    return ((scores > threshold) & ~requested).any(1).double().mean().item()

