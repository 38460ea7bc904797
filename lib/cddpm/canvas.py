"""Scenes drawn one object at a time, i-CLEVR's own structure: which training image extends which, and the empty floor.

In the course's i-CLEVR, as in our synthetic set, ``NAME_{k}.png`` is ``NAME_{k-1}.png`` with one object added
(same camera, earlier objects unchanged) and its label list one longer. A *canvas* model learns
p(next image | previous image, added object); sampling draws a condition's objects one after the other onto the
empty floor, so every step is single-object generation on a given canvas, never a whole multi-object scene.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from . import labels as L
from .choices import EDIT_THRESHOLD
from .data import scene_step

EMPTY = -1  # parent of a one-object image: the empty floor
NONE = -2   # an image that extends no other image and holds more than one object: not a training pair


def pairs(names: Sequence[str], label_lists: Sequence[Sequence[str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """For each image, the index of the image it extends by one object (``EMPTY``/``NONE`` as above), and the
    one-hot (N, 24) of the object it adds (zeros where the parent is ``NONE``).

    The parent of ``NAME_{k}.png`` is ``NAME_{k-1}.png`` when its objects are this image's minus exactly one.
    """
    index = {name: i for i, name in enumerate(names)}
    parent = torch.full((len(names),), NONE, dtype=torch.long)
    added = torch.zeros(len(names), L.NUM_CLASSES)
    for i, (name, objects) in enumerate(zip(names, label_lists)):
        scene, step = scene_step(name)
        j = index.get(f"{scene}_{step - 1}{Path(name).suffix}") if step else None
        new = set(objects) - set(label_lists[j]) if j is not None else set()
        if j is not None and len(new) == 1 and len(objects) == len(label_lists[j]) + 1:
            parent[i] = j
        elif len(objects) == 1:
            parent[i], new = EMPTY, set(objects)
        else:
            continue
        added[i] = L.encode(sorted(new))
    return parent, added


def background(images: torch.Tensor) -> torch.Tensor:
    """The empty floor (3, H, W) uint8: the per-pixel median of uint8 images (N, 3, H, W). Objects are small
    and lie elsewhere in every image, so the median at each pixel is the floor (with its lighting) there."""
    if len(images) == 0:
        raise ValueError("no one-object training images to estimate the empty floor from; a canvas model needs "
                         "the i-CLEVR naming NAME_0.png (one object), NAME_1.png, ...")
    return images.median(dim=0).values


def stages(conditions: Sequence[Sequence[str]]) -> list[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """Sampling plan: for stage s, the rows that get an object, the one-hot of that object (their s-th) and the
    multi-hot of all their objects so far (what a guide should then find)."""
    plan = []
    for s in range(max((len(c) for c in conditions), default=0)):
        rows = [i for i, c in enumerate(conditions) if len(c) > s]
        plan.append((rows, L.encode_batch([[conditions[i][s]] for i in rows]),
                     L.encode_batch([conditions[i][:s + 1] for i in rows])))
    return plan


def composite(canvas: torch.Tensor, drawn: torch.Tensor, threshold: float = EDIT_THRESHOLD,
              one_region: bool = True) -> torch.Tensor:
    """``drawn`` where it changed the canvas (the new object and its shadow), the canvas everywhere else.

    A pass should change only where it adds its object, yet a short-trained model also leaves faint grain all
    over the image, which a judge reads as extra objects and which later passes would redraw. Changes whose
    5x5 local mean stays below ``threshold`` are that grain; the kept region is grown by 2 pixels so object
    edges stay whole. With ``one_region`` only the connected region holding the largest change is kept: one added
    object is one region, and a second one is a ghost object or an earlier object the pass wiped out.
    ``threshold=0`` keeps ``drawn`` unchanged.
    """
    if threshold <= 0:
        return drawn
    change = F.avg_pool2d((drawn - canvas).abs().mean(1, keepdim=True), 5, stride=1, padding=2,
                          count_include_pad=False)
    keep = F.max_pool2d((change > threshold).to(drawn.dtype), 5, stride=1, padding=2)
    if one_region:
        keep = _region_at_peak(keep, change)
    return canvas + keep * (drawn - canvas)


def _region_at_peak(mask: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
    """The 8-connected part of each 0/1 ``mask`` (N, 1, H, W) that holds the image's largest ``change``."""
    region = torch.zeros_like(mask).flatten(1)
    region[torch.arange(len(mask)), change.flatten(1).argmax(1)] = 1
    region = region.view_as(mask) * mask
    while True:  # grow the seed inside the mask until it stops changing (flood fill)
        grown = F.max_pool2d(region, 3, stride=1, padding=1) * mask
        if torch.equal(grown, region):
            return region
        region = grown
