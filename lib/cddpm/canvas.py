"""Scenes drawn one object at a time: which i-CLEVR image extends which (``NAME_k`` is ``NAME_{k-1}`` plus one
object), the empty floor, what a pass keeps, and the boxes a layout model learns and places
(docs/training-and-sampling.md, docs/data.md)."""
from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from . import labels as L
from .choices import EDIT_THRESHOLD, IMAGE_SIZE
from .data import ICLEVRDataset, scene_step, to_float
from .model import LAYOUT_PER_CLASS
from .paths import check_file_target, write_text
from .render import RENDER_FILES

EMPTY = -1  # parent of a one-object image: the empty floor
NONE = -2   # an image that extends no other image and holds more than one object: not a training pair
PLACE_TRIES = 16        # box draws per placed object
# a new object's box may lie this much under earlier ones: in our training scenes, 95% of added objects' boxes lie
# at most 0.54 under earlier boxes (boxes hold shadows, which overlap), so 0.5 only refuses objects on objects
MAX_OVERLAP = 0.5
RELIGHT_KEEP = 0.5    # share of a frame :func:`relit` fits the light to: an added object and its shadow cover less
RELIGHT_ROUNDS = 3
RELIGHT_RIDGE = 1e-4  # per fitted pixel: ties the gain to 1 where the fitted pixels cannot tell (a black frame)
# sample noise lifts a frame's local mean changes by their median (most pixels hold no object), and the local means
# at an object's edge, where its box ends, by about half that (measured: benchmarks/box_iou.py)
GRAIN_SHARE = 0.5
MAX_BOX_AREA = 0.5    # a box over this share of the frame holds no one object: it stays out of the layout table


def pairs(names: Sequence[str], label_lists: Sequence[Sequence[str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's parent, ``NAME_{k-1}.png`` when it holds this image's objects but one (else ``EMPTY``/``NONE``),
    and the one-hot (N, 24) of the object it adds (zeros for ``NONE``)."""
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


def usage(names: Sequence[str], label_lists: Sequence[Sequence[str]], parents: torch.Tensor) -> dict:
    """How many images :func:`pairs` made training pairs (``used``) and why the others are not (``unused``)."""
    listed, reasons = set(names), []
    for i in torch.nonzero(parents == NONE).flatten().tolist():
        scene, step = scene_step(names[i])
        if step is None:
            why = "hold several objects and are not named NAME_k.png"
        elif f"{scene}_{step - 1}{Path(names[i]).suffix}" not in listed:
            why = "hold several objects and their NAME_{k-1}.png is not in train.json"
        else:
            why = "are not their NAME_{k-1}.png plus one object"
        reasons.append(why)
    return {"used": int((parents != NONE).sum()), "unused": dict(sorted(Counter(reasons).items()))}


def background(images: torch.Tensor) -> torch.Tensor:
    """The empty floor (3, H, W) uint8: the per-pixel median of one-object images, whose objects lie elsewhere."""
    if len(images) == 0:
        raise ValueError("no one-object training images to estimate the empty floor from; a canvas model needs "
                         "the i-CLEVR naming NAME_0.png (one object), NAME_1.png, ...")
    return images.median(dim=0).values


def parent_images(images: torch.Tensor, parents: torch.Tensor, floor: torch.Tensor,
                  index: torch.Tensor) -> torch.Tensor:
    """The images that images[index] extend by one object: their parent, or ``floor`` for a one-object image."""
    parent = parents[index]
    return torch.where((parent == EMPTY)[:, None, None, None], floor, images[parent.clamp(min=0)])


def stages(conditions: Sequence[Sequence[str]]) -> list[tuple[list[int], torch.Tensor]]:
    """Per stage s: the rows that get an object and its one-hot (their s-th object)."""
    plan = []
    for s in range(max((len(c) for c in conditions), default=0)):
        rows = [i for i, c in enumerate(conditions) if len(c) > s]
        plan.append((rows, L.encode_batch([[conditions[i][s]] for i in rows])))
    return plan


def changed(before: torch.Tensor, after: torch.Tensor, threshold: float | torch.Tensor = EDIT_THRESHOLD,
            one_region: bool = True, within: torch.Tensor | None = None) -> torch.Tensor:
    """0/1 mask (N, 1, H, W) of where ``after`` adds something to ``before``: 5x5 local change above ``threshold``,
    grown 2 pixels, inside ``within``, and with ``one_region`` only the region of the largest change."""
    change = _local_change(before, after)
    keep = _dilate((change > threshold).to(after.dtype), 2)
    if within is not None:
        keep, change = keep * within, change * within
    return _region_at_peak(keep, change) if one_region else keep


def composite(canvas: torch.Tensor, drawn: torch.Tensor, threshold: float = EDIT_THRESHOLD,
              one_region: bool = True, within: torch.Tensor | None = None) -> torch.Tensor:
    """``drawn`` where it changed the canvas (:func:`changed`), the canvas elsewhere: a pass keeps its object, not
    the grain of a short-trained model; ``threshold=0`` keeps ``drawn``."""
    if threshold <= 0:
        return drawn
    return canvas + changed(canvas, drawn, threshold, one_region, within) * (drawn - canvas)


def boxes(before: torch.Tensor, after: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """(N, 4) boxes ``y0, x0, y1, x1`` (ends exclusive) around what uint8 or float ``after`` adds to ``before``
    (:func:`added`); the whole frame where it adds nothing."""
    out = []
    for start in range(0, len(after), chunk):
        a, b = (to_float(v[start:start + chunk]) if v.dtype == torch.uint8 else v[start:start + chunk]
                for v in (after, before))
        out.append(mask_boxes(added(b, a)))
    return torch.cat(out) if out else torch.zeros(0, 4, dtype=torch.long)


def added(before: torch.Tensor, after: torch.Tensor, one_region: bool = True) -> torch.Tensor:
    """:func:`changed` of float images with ``before`` under ``after``'s light (:func:`relit`) and the threshold
    raised by the image's grain (``GRAIN_SHARE``)."""
    before = relit(before, after)
    grain = _local_change(before, after).flatten(1).median(1).values[:, None, None, None]  # 0 where nothing is noisy
    return changed(before, after, EDIT_THRESHOLD + GRAIN_SHARE * grain, one_region)


def objects_on(floor: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) bool of where images in [-1, 1] differ from the empty ``floor`` (3, H, W), every region."""
    return added(floor.to(images).expand_as(images), images, one_region=False) > 0


def _local_change(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) 5x5 local mean of the channel-mean |after - before|."""
    return F.avg_pool2d((after - before).abs().mean(1, keepdim=True), 5, stride=1, padding=2, count_include_pad=False)


def mask_boxes(mask: torch.Tensor) -> torch.Tensor:
    """(N, 4) boxes ``y0, x0, y1, x1`` around each 0/1 mask (N, 1, H, W); the whole frame where it is empty."""
    mask = mask[:, 0] > 0
    spans = torch.cat([_span(mask.any(2)), _span(mask.any(1))], 1)
    return spans[:, [0, 2, 1, 3]]


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of box i of ``a`` with box i of ``b`` (N, 4) ``y0, x0, y1, x1`` (ends exclusive); torchvision's box_iou
    compares every pair (N x N: 1.3 GB for a root's 18009 boxes)."""
    inter = (torch.minimum(a[:, 2:], b[:, 2:]) - torch.maximum(a[:, :2], b[:, :2])).clamp(min=0).prod(1)
    area_a, area_b = (a[:, 2:] - a[:, :2]).prod(1), (b[:, 2:] - b[:, :2]).prod(1)
    return inter / (area_a + area_b - inter)


def relit(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """``before`` (N, 3, H, W) in [-1, 1] under ``after``'s light: times a per-image, per-channel quadratic gain,
    least-squares fitted to the ``RELIGHT_KEEP`` share of pixels it explains best (docs/data.md)."""
    h, w = after.shape[-2:]
    y, x = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    x, y = x.flatten(), y.flatten()
    basis = torch.stack([torch.ones(h * w), x, y, x * x, y * y, x * y], 1).to(after)  # (HW, 6)
    terms = (basis[:, :, None] * basis[:, None]).flatten(1)  # (HW, 36): the normal equations' products
    old, new = (before.flatten(2) + 1) / 2, (after.flatten(2) + 1) / 2  # [0, 1]: what light scales
    ridge = RELIGHT_RIDGE * torch.eye(basis.shape[1], dtype=after.dtype, device=after.device)
    fitted = old * (new / old.clamp(min=1e-3)).median(2, keepdim=True).values
    for _ in range(RELIGHT_ROUNDS):
        miss = (new - fitted).abs().mean(1, keepdim=True)  # (N, 1, HW)
        weight = (miss <= miss.quantile(RELIGHT_KEEP, dim=2, keepdim=True)).to(after.dtype)
        # (N C, HW) @ (HW, k) and (N C, k) @ (k, HW) as plain matrix products: a batched (broadcast) product took most
        # of the time of box extraction
        lhs = ((weight * old * old).flatten(0, 1) @ terms).view(*old.shape[:2], 6, 6)
        lhs = lhs + ridge * weight.sum(2, keepdim=True)[..., None]
        rhs = ((weight * old * (new - old)).flatten(0, 1) @ basis).view(*old.shape[:2], 6)
        change = torch.linalg.solve(lhs, rhs)  # (N, C, 6): the gain's change from 1
        fitted = old * (1 + (change.flatten(0, 1) @ basis.T).view_as(old))
    return (fitted * 2 - 1).view_as(after)


def _span(rows: torch.Tensor) -> torch.Tensor:
    """(N, 2) first and one-past-last index of each row's True entries (N, L); all of 0..L where there are none."""
    index = torch.arange(rows.shape[1], device=rows.device).expand_as(rows)
    first = torch.where(rows, index, rows.shape[1]).amin(1)
    end = torch.where(rows, index + 1, 0).amax(1)
    empty = ~rows.any(1)
    return torch.stack([first.masked_fill(empty, 0), end.masked_fill(empty, rows.shape[1])], 1)


def box_mask(box: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 1, size, size) of 1 inside each box (N, 4) and -1 outside: a layout model's extra input channel."""
    grid = torch.arange(size, device=box.device)
    rows = (grid >= box[:, 0, None]) & (grid < box[:, 2, None])
    cols = (grid >= box[:, 1, None]) & (grid < box[:, 3, None])
    return ((rows[:, :, None] & cols[:, None, :]).float() * 2 - 1)[:, None]


def window(box: torch.Tensor, crop: int | torch.Tensor, size: int) -> torch.Tensor:
    """(N, 2) top-left corners ``y, x`` of crop x crop windows (``crop`` one side or (N, 1) sides) centred on boxes
    (N, 4), moved inside the frame."""
    return ((box[:, :2] + box[:, 2:]) // 2 - crop // 2).clamp(min=0).clamp(max=size - crop)


def zoomed(box: torch.Tensor, crop: int, size: int, zoom: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 2) corners and (N,) sides of square windows ``zoom`` times each box's longer side (from crop // 2 to the
    frame), centred on the boxes and moved inside the frame: a crop model sees every object at about one size."""
    side = (zoom * (box[:, 2:] - box[:, :2]).amax(1)).round().long().clamp(crop // 2, size)
    return window(box, side[:, None], size), side


def _window_index(n: int, corner: torch.Tensor, crop: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Advanced indices (image, row, column) of each window's pixels, broadcasting to (n, crop, crop)."""
    steps = torch.arange(crop, device=corner.device)
    return (torch.arange(n, device=corner.device)[:, None, None], (corner[:, 0, None] + steps)[:, :, None],
            (corner[:, 1, None] + steps)[:, None, :])


def cut(images: torch.Tensor, corner: torch.Tensor, crop: int, side: torch.Tensor | None = None) -> torch.Tensor:
    """The crop x crop windows (N, C, crop, crop) of images (N, C, H, W) at ``corner`` (N, 2); windows of ``side``
    (N,) pixels are resampled to crop x crop (torchvision's ``roi_align``: area-averaged where they shrink)."""
    if side is not None:
        y, x, far = (v.to(images.device, torch.float) for v in (*corner.unbind(1), side))
        rois = torch.stack([torch.arange(len(images), device=images.device).float(), x, y, x + far, y + far], 1)
        return roi_align(images.float(), rois, crop, aligned=True).to(images.dtype)
    n, rows, cols = _window_index(len(images), corner, crop)
    return images[n, :, rows, cols].permute(0, 3, 1, 2)


def paste(images: torch.Tensor, patches: torch.Tensor, corner: torch.Tensor,
          side: torch.Tensor | None = None) -> torch.Tensor:
    """A copy of images (N, C, H, W) with ``patches`` (N, C, crop, crop) put back at ``corner``: :func:`cut`'s
    inverse; windows of ``side`` (N,) pixels are resampled from the patches (bilinear)."""
    if side is not None:
        h, w = images.shape[-2:]
        centres = torch.arange(max(h, w), device=images.device).float() + 0.5
        gy, gx = ((centres[None, :n] - corner[:, i, None]) / side[:, None] * 2 - 1 for i, n in ((0, h), (1, w)))
        grid = torch.stack([gx[:, None, :].expand(-1, h, -1), gy[:, :, None].expand(-1, -1, w)], -1)
        drawn = F.grid_sample(patches.float(), grid, mode="bilinear", padding_mode="border",
                              align_corners=False).to(images.dtype)
        inside = (gy.abs() < 1)[:, :, None] & (gx.abs() < 1)[:, None, :]
        return torch.where(inside[:, None], drawn, images)
    n, rows, cols = _window_index(len(images), corner, patches.shape[-1])
    out = images.clone()
    out[n, :, rows, cols] = patches.permute(0, 2, 3, 1).to(out.dtype)
    return out


def position(corner: torch.Tensor, crop: int, size: int, side: torch.Tensor | None = None) -> torch.Tensor:
    """(N, 2, crop, crop): each window pixel's row and column in the size x size frame, in [-1, 1] (where the light
    and the camera see it); for windows of ``side`` (N,) pixels, the centres of the resampled pixels."""
    steps = torch.arange(crop, device=corner.device)
    if side is not None:
        steps = (steps + 0.5) * side[:, None] / crop - 0.5
    y, x = ((corner[:, i, None] + steps) * (2 / (size - 1)) - 1 for i in (0, 1))
    return torch.stack([y[:, :, None].expand(-1, -1, crop), x[:, None, :].expand(-1, crop, -1)], 1)


def around(context: torch.Tensor, box: torch.Tensor, crop: int,
           zoom: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """A crop model's input: ``context`` (N, C, S, S) cut to the window of each box (N, 4) with its
    :func:`position` channels, the windows' corners and, with ``zoom`` (:func:`zoomed`), their sides."""
    size = context.shape[-1]
    corner, side = zoomed(box, crop, size, zoom) if zoom else (window(box, crop, size), None)
    return torch.cat([cut(context, corner, crop, side), position(corner, crop, size, side).to(context.dtype)],
                     1), corner, side


def depth(parents: torch.Tensor) -> torch.Tensor:
    """Each image's step (its ``k`` in ``NAME_k.png``): 0 for an image drawn on the empty floor (or one that extends
    nothing), its parent's step + 1 otherwise."""
    step = torch.zeros_like(parents)
    while True:
        deeper = torch.where(parents >= 0, step[parents.clamp(min=0)] + 1, 0)
        if torch.equal(deeper, step):
            return step
        step = deeper


@dataclass
class TrainingBoxes:
    """The box of every training image (``parents != NONE``), as a layout model learns them."""

    index: torch.Tensor      # (M,) the training images
    box: torch.Tensor        # (M, 4) y0, x0, y1, x1 at the images' size (ends exclusive)
    plausible: torch.Tensor  # (M,) bool: at most MAX_BOX_AREA of the frame; only these enter the layout table
    step: torch.Tensor       # (M,) see :func:`depth`
    size: int

    def summary(self) -> list[str]:
        """One line per step: how many boxes, how large (share of the frame), how many are left out."""
        area = ((self.box[:, 2] - self.box[:, 0]) * (self.box[:, 3] - self.box[:, 1])).double() / self.size ** 2
        lines = []
        for k in self.step.unique().tolist():
            here = self.step == k
            q = torch.quantile(area[here], torch.tensor([0.1, 0.5, 0.9], dtype=area.dtype)).tolist()
            left = int((~self.plausible[here]).sum())
            lines.append(f"step {k}: {int(here.sum())} boxes, median {q[1]:.3f} of the frame (10-90%: {q[0]:.3f}-"
                         f"{q[2]:.3f}), {left} larger than {MAX_BOX_AREA} left out of the layout table")
        return lines


def training_boxes(images: torch.Tensor, parents: torch.Tensor) -> TrainingBoxes:
    """The boxes a layout model learns from uint8 ``images`` with ``parents`` (:func:`pairs`): what each adds to its
    parent or the empty floor; what the Trainer and ``cddpm boxes`` use."""
    index = torch.nonzero(parents != NONE).flatten()
    floor = background(images[parents == EMPTY])
    box = boxes(parent_images(images, parents, floor, index), images[index])
    area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
    return TrainingBoxes(index, box, area <= MAX_BOX_AREA * images.shape[-2] * images.shape[-1],
                         depth(parents)[index], images.shape[-1])


def root_boxes(root: str | Path, size: int = IMAGE_SIZE) -> tuple[list[str], TrainingBoxes]:
    """A root's training image names and their boxes at ``size`` (``cddpm boxes``), loaded as training loads them."""
    ds = ICLEVRDataset(root, size=size, preload=True)
    names = list(ds.mapping)
    parents, _ = pairs(names, list(ds.mapping.values()))
    return names, training_boxes(ds.images, parents)


def check_boxes_target(path: str | Path, root: str | Path, force: bool) -> Path:
    """``path`` when ``cddpm boxes --json`` may write it: outside ``root``'s files, and over a file only with
    ``force`` when it holds boxes."""
    path = check_file_target(path, "--json")
    here, root = path.resolve(), Path(root).resolve()
    if here.parent == root and here.name in RENDER_FILES or any(p in (root / "iclevr", root / ".cache")
                                                                for p in here.parents):
        raise ValueError(f"--json {path} is part of --data {root}; write the boxes elsewhere")
    if path.exists():
        if not force:
            raise FileExistsError(f"--json {path} exists; pass --force to replace it or choose another path")
        try:
            old = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            old = None
        if not isinstance(old, dict) or not all(isinstance(v, list) and len(v) == 4 and
                                                all(isinstance(i, int) for i in v) for v in old.values()):
            raise FileExistsError(f"--json {path} is not a boxes file of cddpm boxes; --force only replaces those, "
                                  "so choose another path")
    return path


def write_boxes(path: str | Path, names: Sequence[str], found: TrainingBoxes) -> Path:
    """Write ``{file name: [y0, x0, y1, x1]}`` of every training image, one per line."""
    lines = [f"{json.dumps(names[i])}: {json.dumps(b)}" for i, b in zip(found.index.tolist(), found.box.tolist())]
    return write_text(path, "{\n" + ",\n".join(lines) + "\n}\n")


def layout_table(box: torch.Tensor, classes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(24, LAYOUT_PER_CLASS, 4), the layout prior: per class, boxes drawn from its training boxes (from all boxes
    for a class no image adds)."""
    if not len(box):
        raise ValueError(f"every training box is larger than {MAX_BOX_AREA} of the frame, so a layout model has no "
                         "place to put objects; check the data with `cddpm boxes --data ROOT`")
    table = []
    for c in range(L.NUM_CLASSES):
        pool = box[classes == c]
        pool = pool if len(pool) else box
        table.append(pool[torch.randint(len(pool), (LAYOUT_PER_CLASS,), generator=generator)])
    return torch.stack(table)


def place(table: torch.Tensor, classes: torch.Tensor, occupied: torch.Tensor,
          gens: Sequence[torch.Generator]) -> torch.Tensor:
    """One box (N, 4) per row: the first of ``PLACE_TRIES`` draws from its class's ``table`` row at most
    ``MAX_OVERLAP`` under ``occupied`` (N, 1, H, W), else the least covered."""
    chosen = []
    for c, taken, gen in zip(classes.tolist(), occupied[:, 0], gens):
        tries = table[c, torch.randint(table.shape[1], (PLACE_TRIES,), generator=gen).to(table.device)]
        cover = torch.stack([taken[y0:y1, x0:x1].float().mean() for y0, x0, y1, x1 in tries.tolist()])
        fits = torch.nonzero(cover <= MAX_OVERLAP).flatten()
        chosen.append(tries[fits[0] if len(fits) else cover.argmin()])
    return torch.stack(chosen) if chosen else table.new_zeros(0, 4)


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """``F.max_pool2d`` of a 0/1 ``mask`` with a (2 radius + 1) window, as maxima of shifted copies: 10x faster
    on CPU."""
    h, w = mask.shape[-2:]
    padded = F.pad(mask, (radius,) * 4)
    rows = functools.reduce(torch.maximum, (padded[..., dy:dy + h, :] for dy in range(2 * radius + 1)))
    return functools.reduce(torch.maximum, (rows[..., dx:dx + w] for dx in range(2 * radius + 1)))


def _region_at_peak(mask: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
    """The 8-connected part of each 0/1 ``mask`` (N, 1, H, W) that holds the image's largest ``change``."""
    region = torch.zeros_like(mask).flatten(1)
    region[torch.arange(len(mask)), change.flatten(1).argmax(1)] = 1
    region = region.view_as(mask) * mask
    growing = torch.arange(len(mask), device=mask.device)
    while len(growing):  # grow each seed inside its mask until it stops changing (flood fill)
        grown = _dilate(region[growing], 1) * mask[growing]
        still = (grown != region[growing]).flatten(1).any(1)
        region[growing] = grown
        growing = growing[still]
    return region
