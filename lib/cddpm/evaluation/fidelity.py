"""Fidelity: Frechet distance (FD) and KID between generated images and renders of the same conditions in the judge's
512-d pooled features, beside the render-vs-render floor (both are biased at a few hundred images; docs/evaluator.md)."""
from __future__ import annotations

import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Protocol

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from .. import data
from .. import labels as L

KID_SUBSETS = 100
KID_MAX_SUBSET = 1000  # torchmetrics' default; smaller sets draw subsets of half their size, so the subsets differ
BATCH = 256            # images per feature-extractor call
FLOOR = "_floor"       # suffix of the floor's fields: fd_floor, kid_mean_floor, kid_std_floor (and fid_floor)
INCEPTION_HELP = ("--inception needs torch-fidelity (pip install 'cddpm[inception]') and its InceptionV3 weights, "
                  "downloaded once from github (e.g. on Colab); leave --inception out where they cannot be had")


class Judge(Protocol):
    """What FD and KID need of a judge (an :class:`cddpm.evaluation.evaluator.Evaluator`): its pooled features."""

    network: nn.Module
    device: torch.device

    def features(self, images: torch.Tensor) -> torch.Tensor: ...


class JudgeFeatures(nn.Module):
    """The judge as torchmetrics' ``feature`` extractor: uint8 (N, 3, 64, 64) images -> its (N, 512) pooled features."""

    def __init__(self, judge: Judge):
        super().__init__()
        self.judge = judge  # a plain attribute, not a submodule: moving or casting a metric leaves the judge alone
        self.num_features = judge.network.fc[0].in_features  # read by torchmetrics instead of a probe image

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.judge.features(data.to_float(images))


def _counts(labels: torch.Tensor) -> Counter:
    """How often each condition (its set of class indices) occurs among the rows of a multi-hot (N, 24)."""
    return Counter(tuple(torch.nonzero(row).flatten().tolist()) for row in torch.as_tensor(labels) > 0.5)


def check_conditions(labels: torch.Tensor, other: torch.Tensor, what: str, exact: bool = False) -> None:
    """Refuse a render set (``what``, e.g. ``--reference DIR``) whose conditions are not the images': the same label
    multiset (``exact``) or the same conditions in the same proportions (e.g. 10 renders of each generated one)."""
    mine, theirs = _counts(labels), _counts(other)
    n, m = len(labels), len(other)
    for key in sorted(set(mine) | set(theirs)):
        if (theirs[key] != mine[key]) if exact else (theirs[key] * n != mine[key] * m):
            objects = [L.CLASSES[i] for i in key]
            raise ValueError(
                f"{what} holds other conditions than the images ({objects} {theirs[key]} of its {m} images, "
                f"{mine[key]} of the images' {n}); render the images' conditions"
                f"{', as many of each as the images hold' if exact else ''} with `cddpm render --conditions FILE`")


def reference_labels(root: str | os.PathLike, flag: str) -> torch.Tensor:
    """(N, 24) multi-hot labels of a ground-truth render root's train.json, with a one-line error if it is none."""
    if not (Path(root) / "train.json").is_file():
        raise FileNotFoundError(f"{flag} {root} is not a folder of ground-truth renders (no train.json); write one with "
                                f"`cddpm render --out {root} --conditions FILE` (or --split)")
    labels = data.ICLEVRDataset(root, "train").labels
    if len(labels) < 2:
        raise ValueError(f"{flag} {root} holds {len(labels)} image; a distance needs at least 2 per set")
    return labels


def check(labels: torch.Tensor, reference: str | os.PathLike, floor_reference: str | os.PathLike | None = None,
          inception: bool = False) -> None:
    """Everything :func:`measure` would refuse, from the json files alone: call it before long work starts."""
    if len(labels) < 2:
        raise ValueError(f"a distance needs at least 2 images per set, and there are {len(labels)}")
    check_conditions(labels, reference_labels(reference, "--reference"), f"--reference {reference}")
    if floor_reference is not None:
        if Path(floor_reference).resolve() == Path(reference).resolve():
            raise ValueError(f"--floor-reference {floor_reference} is the --reference itself, whose distance to itself "
                             "is 0; render the conditions again with another --seed")
        check_conditions(labels, reference_labels(floor_reference, "--floor-reference"),
                         f"--floor-reference {floor_reference}", exact=True)
    if inception:
        try:
            import torch_fidelity  # noqa: F401
        except ImportError:
            raise ValueError(INCEPTION_HELP + " (torch-fidelity is not installed)") from None


def _compare(metric: Metric, reference: torch.Tensor, sets: list[torch.Tensor], device: torch.device) -> list:
    """``metric.compute()`` of each of ``sets`` against ``reference``, whose features are extracted once
    (the metric is built with ``reset_real_features=False``)."""
    for chunk in reference.split(BATCH):
        metric.update(chunk.to(device), real=True)
    out = []
    for images in sets:
        metric.reset()
        for chunk in images.split(BATCH):
            metric.update(chunk.to(device), real=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # KID's subsets: the same numbers for the same images
            out.append(metric.compute())
    return out


def distances(feature: nn.Module, reference: torch.Tensor, sets: list[torch.Tensor]) -> list[dict]:
    """FD and KID (mean and spread over subsets) of each uint8 image set in ``sets`` against ``reference`` in the
    space of ``feature`` (an ``nn.Module`` mapping uint8 (N, 3, H, W) to (N, D) on the CPU); at least 2 images per set
    (:func:`check`)."""
    subset = min(KID_MAX_SUBSET, max(2, min(len(x) for x in [reference, *sets]) // 2))
    fd = FrechetInceptionDistance(feature=feature, reset_real_features=False)
    with warnings.catch_warnings():  # that it keeps every feature: a few thousand 512-d rows at most
        warnings.filterwarnings("ignore", "Metric `Kernel Inception Distance` will save all extracted features")
        kid = KernelInceptionDistance(feature=feature, subsets=KID_SUBSETS, subset_size=subset,
                                      reset_real_features=False)
    cpu = torch.device("cpu")
    fds, kids = _compare(fd, reference, sets, cpu), _compare(kid, reference, sets, cpu)
    return [dict(fd=f.item(), kid_mean=k[0].item(), kid_std=k[1].item(), kid_subset_size=subset)
            for f, k in zip(fds, kids)]


def inception_metric() -> FrechetInceptionDistance:
    """torchmetrics' standard FID (InceptionV3 pool features, 2048-d, weights downloaded once by torch-fidelity); a
    one-line error where torch-fidelity or the weights cannot be had."""
    try:
        return FrechetInceptionDistance(feature=2048, reset_real_features=False)
    except ModuleNotFoundError:
        raise ValueError(INCEPTION_HELP + " (torch-fidelity is not installed)") from None
    except (OSError, RuntimeError) as err:  # no network, a blocked or broken download
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{INCEPTION_HELP} (the weights could not be had: {reason})") from None


def measure(judge: Judge, images: torch.Tensor, labels: torch.Tensor, reference: str | os.PathLike,
            floor_reference: str | os.PathLike | None = None, inception: bool = False) -> dict:
    """FD and KID of uint8 ``images`` (multi-hot ``labels``) against the render root ``reference`` in the judge's
    features; with ``floor_reference`` (other renders of exactly the images' conditions) the floor's fields too
    (suffix ``_floor``) and ``fd_over_floor``; with ``inception`` standard Inception FID (``fid``, ``fid_floor``)."""
    check(labels, reference, floor_reference, inception)
    standard = inception_metric() if inception else None  # its download fails before any other work
    reference_images = data.ICLEVRDataset(reference, "train", preload=True).images
    sets = [images] + ([data.ICLEVRDataset(floor_reference, "train", preload=True).images] if floor_reference else [])
    out: dict = dict(reference=str(reference), reference_n=len(reference_images))
    for suffix, values in zip(("", FLOOR), distances(JudgeFeatures(judge), reference_images, sets)):
        out.update({key + suffix: value for key, value in values.items() if not (suffix and key == "kid_subset_size")})
    if floor_reference is not None:
        out.update(floor_reference=str(floor_reference),
                   fd_over_floor=out["fd"] / out["fd" + FLOOR] if out["fd" + FLOOR] > 0 else None)
    if standard is not None:
        fids = _compare(standard.to(judge.device), reference_images, sets, judge.device)
        out.update(zip(("fid", "fid" + FLOOR), (value.item() for value in fids)))
    return out


def summary(measured: dict, n: int) -> str:
    """One line of :func:`measure`'s result for ``n`` images: FD and KID with the floor beside them where measured."""
    line = f"FD {measured['fd']:.3f}"
    if "fd" + FLOOR in measured:
        ratio = measured["fd_over_floor"]
        line += f" (floor {measured['fd' + FLOOR]:.3f}" + (f", {ratio:.2f}x)" if ratio is not None else ")")
    line += f", KID {measured['kid_mean']:.4f} ± {measured['kid_std']:.4f}"
    if "kid_mean" + FLOOR in measured:
        line += f" (floor {measured['kid_mean' + FLOOR]:.4f} ± {measured['kid_std' + FLOOR]:.4f})"
    if "fid" in measured:
        line += f", Inception FID {measured['fid']:.3f}" + (f" (floor {measured['fid' + FLOOR]:.3f})"
                                                          if "fid" + FLOOR in measured else "")
    return line + f"; {n} images against {measured['reference_n']} renders"
