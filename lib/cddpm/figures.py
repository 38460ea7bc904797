"""Figures of samples: torchvision ``make_grid`` grids (the course's grid and denoising strip) and captioned grids."""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

from .data import to_uint8  # noqa: E402


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
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * scale, nrows * scale * 1.25), squeeze=False)
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
    plt.close(fig)
    return path


def save_dataset_overview(labels: torch.Tensor, path: str | os.PathLike) -> Path:
    """Three panels of an (N, 24) multi-hot set: images per class, objects per image, class co-occurrence."""
    from .labels import CLASSES

    labels = labels.float()
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [2.2, 0.8, 1.4]})
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
    plt.close(fig)
    return path
