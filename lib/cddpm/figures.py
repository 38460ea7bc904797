"""Figures: the course's grid and denoising strip, captioned grids, the dataset overview and the loss curve, drawn on
``matplotlib.figure.Figure`` objects (not pyplot), so importing this leaves a notebook's plotting alone."""
from __future__ import annotations

import math
import os
import statistics
from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure
from PIL import Image
from torchvision.utils import make_grid

from .data import to_uint8
from .runs import read_metrics


def grid(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> torch.Tensor:
    """uint8 (3, H, W) grid of images in [-1, 1], ``nrow`` per row, white padding."""
    return to_uint8(make_grid(images.float(), nrow=nrow, padding=padding, pad_value=1.0))


def save_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int = 8) -> Path:
    """Write images in [-1, 1] as one PNG grid with ``nrow`` images per row (one row: a denoising strip)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid(images, nrow).permute(1, 2, 0).numpy()).save(path)
    return path


def save_captioned_grid(images: torch.Tensor, captions: Sequence[str], path: str | os.PathLike, ncols: int = 8,
                        scale: float = 1.5) -> Path:
    """Write images in [-1, 1] as a matplotlib grid, each titled with its caption (e.g. its objects), for reading."""
    if len(captions) != len(images):
        raise ValueError(f"{len(images)} images but {len(captions)} captions; give one caption per image")
    ncols = max(1, min(ncols, len(images)))
    nrows = max(1, math.ceil(len(images) / ncols))
    fig = Figure(figsize=(ncols * scale, nrows * scale * 1.25))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    pixels = to_uint8(images).permute(0, 2, 3, 1).numpy()
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, pixels, captions):
        ax.imshow(image)
        ax.set_title(caption.replace(", ", "\n"), fontsize=6)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return path


def save_dataset_overview(labels: torch.Tensor, path: str | os.PathLike) -> Path:
    """Three panels of an (N, 24) multi-hot set: images per class, objects per image, class co-occurrence."""
    from .labels import CLASSES

    labels = labels.float()
    fig = Figure(figsize=(15, 4.2))
    ax1, ax2, ax3 = fig.subplots(1, 3, gridspec_kw={"width_ratios": [2.2, 0.8, 1.4]})
    ax1.bar(range(len(CLASSES)), labels.sum(0).numpy(), color="tab:blue")
    ax1.set_xticks(range(len(CLASSES)), CLASSES, rotation=90, fontsize=7)
    ax1.set(ylabel="images", title="images per class")
    counts = labels.sum(1).long()
    ax2.bar(*torch.unique(counts, return_counts=True), color="tab:orange")
    ax2.set(xlabel="objects", ylabel="images", title="objects per image", xticks=[1, 2, 3])
    co = (labels.T @ labels).numpy()
    image = ax3.imshow(co, cmap="viridis")
    ax3.set_xticks(range(len(CLASSES)), CLASSES, rotation=90, fontsize=5)
    ax3.set_yticks(range(len(CLASSES)), CLASSES, fontsize=5)
    ax3.set_title("co-occurrence (diagonal: class count)")
    fig.colorbar(image, ax=ax3, fraction=0.046)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def loss_figure(records: Sequence[dict], title: str = "training loss") -> Figure:
    """The loss of ``metrics.jsonl``-style records (``step``, ``loss``, optional ``log_every``) against steps, on a
    log scale, with a running mean from 100 records on; an empty plot for no records."""
    entries = [r for r in records if "loss" in r]
    steps, losses = [r["step"] for r in entries], [r["loss"] for r in entries]
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    k = max(1, len(losses) // 50)  # the running mean's window, in records
    if k == 1:
        ax.plot(steps, losses, "-o", markersize=2)
    else:
        ax.plot(steps, losses, alpha=0.3, label="loss")
        ax.plot(steps, [statistics.fmean(losses[max(0, i - k + 1):i + 1]) for i in range(len(losses))],
                label=f"mean of {k} records")
        ax.legend()
    every = entries[-1].get("log_every") if entries else None
    ax.set(xlabel="step", ylabel="loss" + (f" (mean of {every} steps)" if every else ""), title=title)
    if losses and min(losses) > 0:
        ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def loss_curve(run: str | os.PathLike, path: str | os.PathLike) -> Path | None:
    """Draw the training loss of ``RUN/metrics.jsonl`` (:func:`loss_figure`) to ``path``; None
    when the run has logged no loss yet."""
    records = [r for r in read_metrics(run) if "loss" in r]
    if not records:
        return None
    loss_figure(records, title=f"{Path(run).name}: training loss").savefig(path, dpi=120)
    return Path(path)
