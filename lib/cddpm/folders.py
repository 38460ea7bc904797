"""Where the profiles, the notebooks, ``cddpm demo`` and ``cddpm batch`` write: one outputs folder, one layout.

    OUTPUTS/data/synthetic-iclevr      the synthetic set a profile renders (default outputs: data/synthetic-iclevr)
    OUTPUTS/runs/NAME                  training runs
    OUTPUTS/evaluator/KEY/NAME.pth     judges the workflow trains on the data that KEY names
    OUTPUTS/gt/KEY/SPLIT               ground-truth renders of a split's conditions of the data KEY
    OUTPUTS/samples/BATCH/TAG          a batch's sample folders, one per combination
    OUTPUTS/papermill/BATCH            the batch's executed notebooks
    OUTPUTS/report/BATCH               its report
    OUTPUTS/figures/NOTEBOOK/PROFILE   the figures a notebook saves

``KEY`` is :func:`cddpm.provenance.data_key` of the root: what was derived from one data set is never found
for another. Torch-free.
"""
from __future__ import annotations

import os
from pathlib import Path

from .choices import DEFAULT_DATA, DEFAULT_OUTPUTS


def synthetic_data(outputs: str | os.PathLike = DEFAULT_OUTPUTS) -> Path:
    """The synthetic set a profile renders when it has no data: the default ``--data`` of every command with the
    default outputs, else inside ``outputs`` (another outputs folder leaves the shared set alone)."""
    if Path(outputs) == Path(DEFAULT_OUTPUTS):
        return Path(DEFAULT_DATA)
    return Path(outputs) / "data" / Path(DEFAULT_DATA).name


def run(outputs: str | os.PathLike, name: str) -> Path:
    """A training run's folder."""
    return Path(outputs) / "runs" / name


def evaluator(outputs: str | os.PathLike, key: str, name: str) -> Path:
    """A judge the workflow trains on the data ``key`` names."""
    return Path(outputs) / "evaluator" / key / f"{name}.pth"


def ground_truth(outputs: str | os.PathLike, key: str, split: str) -> Path:
    """Ground-truth renders of a split's conditions of the data ``key`` names."""
    return Path(outputs) / "gt" / key / split


def samples(outputs: str | os.PathLike, batch: str) -> Path:
    """A batch's sample folders (one per combination), where ``04_report`` reads them."""
    return Path(outputs) / "samples" / batch


def tag(split: str, seed: int, checkpoint: str, sampler: str, steps: int, guidance: float, weights: str = "ema") -> str:
    """The name of one combination: its sample folder and (after ``03_sample__``) its executed notebook; the raw
    weights add ``-raw`` to the checkpoint."""
    checkpoint += "" if weights == "ema" else f"-{weights}"
    return f"{split}__seed{seed}__{checkpoint}__{sampler}{steps}__g{guidance:g}"


def papermill(outputs: str | os.PathLike, batch: str) -> Path:
    """A batch's executed notebooks: the record of what ran."""
    return Path(outputs) / "papermill" / batch


def report(outputs: str | os.PathLike, batch: str) -> Path:
    """A batch's report: tables and figures."""
    return Path(outputs) / "report" / batch


def figures(outputs: str | os.PathLike, notebook: str, profile: str) -> Path:
    """The figures a notebook saves for a profile."""
    return Path(outputs) / "figures" / notebook / profile
