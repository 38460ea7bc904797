"""Sampling: diffusers samplers of the run's training schedule, classifier-free guidance, the course outputs;
image i draws all its noise from a generator seeded by (seed, i) (docs/training-and-sampling.md)."""
from __future__ import annotations

import math
import numbers
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import InitVar, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from . import canvas as C
from . import figures, provenance, runs
from . import labels as L
from .choices import (
    DEFAULT_SAMPLER,
    DEFAULT_STEPS,
    DENOISE_FRAMES,
    DENOISE_LABELS,
    EDIT_THRESHOLD,
    GUIDANCE,
    IMAGE_SIZE,
    SAMPLE_BATCH,
    SEED,
)
from .data import (
    NUMBERED_PNG,
    check_lists,
    load_condition_file,
    load_condition_lists,
    read_json,
    read_picture,
    to_float,
    to_uint8,
)
from .device import resolve as resolve_device
from .paths import claim_folder, write_json
from .progress import tqdm

# "trailing" timesteps: few-step DDPM/DDIM start at t = T-1 (pure noise). DPM-Solver++ clips its x0 to [-1, 1]:
# under the cosine schedule the unclipped first step blows up (measured: |x| ~ 1e4 after 20 steps).
SAMPLERS: dict[str, tuple[type[SchedulerMixin], dict]] = {
    "ddpm": (DDPMScheduler, {"timestep_spacing": "trailing"}),
    "ddim": (DDIMScheduler, {"timestep_spacing": "trailing"}),
    "dpmsolver": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                "thresholding": True, "sample_max_value": 1.0}),
}
Box = Sequence[int]  # y0, x0, y1, x1 of an object in the course's IMAGE_SIZE pixels, ends exclusive


class Judge(Protocol):
    """What scores samples (e.g. ``cddpm.evaluation.judge.SampleJudge``): checked before sampling, called after."""

    def check(self, labels: torch.Tensor, root: Path) -> None: ...

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> dict: ...


def image_seed(seed: int, index: int) -> int:
    """The generator seed of image ``index`` under ``seed``: well mixed, independent of batching."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def generators(seed: int, indices: Sequence[int]) -> list[torch.Generator]:
    """One seeded CPU generator per image index."""
    return [torch.Generator("cpu").manual_seed(image_seed(seed, i)) for i in indices]


FLAGS = {"steps": "--steps", "guidance": "--guidance", "seed": "--seed", "batch_size": "--batch-size",
         "edit_threshold": "--edit-threshold"}  # as errors name them


def _show(name: str, value: object) -> str:
    """How an error names a value: ``--flag value`` for a command-line flag, ``name=value`` for a keyword argument."""
    return f"{name} {value}" if name.startswith("--") else f"{name}={value!r}"


def check_whole(name: str, value: object, low: int, high: int | None = None) -> int:
    """``value`` when it is a whole number from ``low`` (to ``high``); else a one-line error naming it as ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{_show(name, value)} must be a whole number")
    if high is not None and not low <= value <= high:
        raise ValueError(f"{_show(name, value)} outside {low}..{high}; pick one in range")
    if value < low:
        raise ValueError(f"{_show(name, value)} must be an integer >= {low}")
    return int(value)


@dataclass(frozen=True)
class SampleRequest:
    """How to draw (steps None: the sampler's ``DEFAULT_STEPS``), checked when made; errors name a value as
    ``names`` does (default: ``cddpm sample``'s flags)."""

    sampler: str = DEFAULT_SAMPLER
    steps: int | None = None
    guidance: float = GUIDANCE
    seed: int = SEED
    batch_size: int = SAMPLE_BATCH
    edit_threshold: float = EDIT_THRESHOLD
    names: InitVar[Mapping[str, str]] = FLAGS

    def __post_init__(self, names: Mapping[str, str]) -> None:
        _sampler_class(self.sampler)
        if self.steps is not None:
            check_whole(names["steps"], self.steps, 1)
        for key, high, rule in (("guidance", math.inf, "be a finite number >= 0 (1 is plain conditional)"),
                                ("edit_threshold", 2, "lie in [0, 2): changes of images in [-1, 1] stay below 2 (0 "
                                                      f"keeps whole passes; default {EDIT_THRESHOLD})")):
            value = getattr(self, key)
            if not isinstance(value, numbers.Real) or not math.isfinite(value) or not 0 <= value < high:
                raise ValueError(f"{_show(names[key], value)} must {rule}")
        check_whole(names["seed"], self.seed, 0)
        check_whole(names["batch_size"], self.batch_size, 1)


def _sampler_class(name: str) -> tuple[type[SchedulerMixin], dict]:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; use one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


def make_sampler(name: str, scheduler_config: dict, steps: int | None = None) -> SchedulerMixin:
    """A diffusers sampler of the training scheduler's schedule, set to ``steps`` inference steps (None: its default)."""
    cls, extra = _sampler_class(name)
    return set_steps(cls.from_config(scheduler_config, **extra), DEFAULT_STEPS[name] if steps is None else steps)


def set_steps(sampler: SchedulerMixin, steps: int, name: str = "--steps") -> SchedulerMixin:
    """``sampler`` set to ``steps`` inference steps, which must lie within its training schedule's length."""
    sampler.set_timesteps(check_whole(name, steps, 1, sampler.config.num_train_timesteps))
    return sampler


def _built(sampler: SchedulerMixin | dict, request: SampleRequest) -> SchedulerMixin:
    """``sampler`` when built (the request's steps None or its own), else the request's sampler of that config."""
    if isinstance(sampler, dict):
        return make_sampler(request.sampler, sampler, request.steps)
    if request.steps is not None and request.steps != sampler.num_inference_steps:
        raise ValueError(f"steps {request.steps} given with a sampler set to {sampler.num_inference_steps}; give one")
    return sampler


def resize(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """Bilinear, antialiased resize to ``size`` x ``size`` (``None`` or the same size: unchanged)."""
    if size is None or images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def _predict(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
             guidance: float, canvas: torch.Tensor | None = None) -> torch.Tensor:
    """Classifier-free guidance: conditional and null rows in one batched forward; w = 1 skips the null half.
    A canvas model's null rows keep their canvas: guidance acts on the added object only."""
    if guidance == 1.0:
        return model(x, t, cond) if canvas is None else model(x, t, cond, canvas)
    x, null = torch.cat([x, x]), torch.cat([cond, torch.zeros_like(cond)])
    both = model(x, t, null) if canvas is None else model(x, t, null, torch.cat([canvas, canvas]))
    pred_cond, pred_null = both.chunk(2)
    return pred_null + guidance * (pred_cond - pred_null)


def check_boxes(model: torch.nn.Module, conditions: Sequence[Sequence[str]],
                boxes: Sequence[Sequence[Box | None] | None] | None) -> torch.Tensor | None:
    """The given boxes as (N, K, 4) at the model's sample size (-1: placed as usual), or None; a one-line error
    for a box that docs/placement.md refuses."""
    if boxes is None:
        return None
    if not model.config.layout:
        if any(box is not None for row in boxes if isinstance(row, Sequence) for box in row):
            raise ValueError("boxes need a layout model (ModelConfig.layout: e.g. the zoom64 preset); this run "
                             "places no boxes, so leave them out")
        return None
    if len(boxes) != len(conditions):
        raise ValueError(f"{len(boxes)} box lists for {len(conditions)} images; give one per image (None: all placed)")
    size, table, frame = model.config.sample_size, model.layout_boxes.cpu(), IMAGE_SIZE
    out = torch.full((len(conditions), max(map(len, conditions), default=0), 4), -1, dtype=torch.long)
    for i, (objects, row) in enumerate(zip(conditions, boxes)):
        if row is None:
            continue
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence) or len(row) != len(objects):
            raise ValueError(f"image {i}: give one box or None per object of {objects}, got {row!r}")
        taken = torch.zeros(size, size, dtype=torch.bool)
        for j, (name, box) in enumerate(zip(objects, row)):
            if box is None:
                continue
            what = f"box {box!r} of {name!r} (image {i}, object {j})"
            if isinstance(box, (str, bytes)) or not isinstance(box, Sequence) or len(box) != 4 or not all(
                    isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in box):
                raise ValueError(f"{what} must be four whole numbers y0, x0, y1, x1 in {frame}x{frame} pixels")
            y0, x0, y1, x1 = map(int, box)
            if not (0 <= y0 < y1 <= frame and 0 <= x0 < x1 <= frame):
                raise ValueError(f"{what} lies outside the {frame}x{frame} frame; need 0 <= y0 < y1 <= {frame} and "
                                 f"0 <= x0 < x1 <= {frame} (ends exclusive)")
            sides = table[L.INDEX[name], :, 2:] - table[L.INDEX[name], :, :2]
            least = max(1, math.ceil(int(sides.amin()) * frame / size))
            if min(y1 - y0, x1 - x0) < least:
                raise ValueError(f"{what} is {y1 - y0}x{x1 - x0} pixels, too small to hold it: the model's training "
                                 f"boxes of a {name} are at least {least} pixels on a side")
            scaled = [v * size // frame for v in (y0, x0)] + [-(-v * size // frame) for v in (y1, x1)]
            cover = taken[scaled[0]:scaled[2], scaled[1]:scaled[3]].float().mean().item()
            if cover > C.MAX_OVERLAP:
                raise ValueError(f"{what} lies {cover:.0%} under the boxes of earlier objects; the model allows at "
                                 f"most {C.MAX_OVERLAP:.0%}")
            taken[scaled[0]:scaled[2], scaled[1]:scaled[3]] = True
            out[i, j] = torch.tensor(scaled)
    return out


def check_start(model: torch.nn.Module, start: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """``start``, the pictures (n, 3, S, S) in [-1, 1] a canvas model adds objects to, or None; else a one-line
    error."""
    if start is None:
        return None
    if not model.config.canvas:
        raise ValueError("adding to a picture needs a canvas model (ModelConfig.canvas); this run draws whole scenes")
    size = model.config.sample_size
    if not isinstance(start, torch.Tensor) or tuple(start.shape) != (n, 3, size, size):
        got = tuple(start.shape) if isinstance(start, torch.Tensor) else type(start).__name__
        raise ValueError(f"start must be a tensor ({n}, 3, {size}, {size}), one picture per image at the model's "
                         f"size, got {got}; read a file with cddpm.data.read_picture(path, {size})")
    if not start.is_floating_point() or not torch.isfinite(start).all() or start.abs().max() > 1:
        raise ValueError("start must hold floats in [-1, 1] (cddpm.data.to_float of uint8 pixels)")
    return start


@torch.no_grad()
def denoise(model: torch.nn.Module, sampler: SchedulerMixin, cond: torch.Tensor, gens: list[torch.Generator],
            request: SampleRequest, canvas: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
    """Yield x_T and then x_t after every sampler step for one batch; ``canvas``: what a canvas model adds ``cond``
    to."""
    device = next(model.parameters()).device
    size = model.config.crop or model.config.sample_size  # a crop model draws its window
    sampler.set_timesteps(sampler.num_inference_steps)  # resets multistep state; CPU timesteps like diffusers pipelines
    cond = cond.to(device)
    canvas = None if canvas is None else canvas.to(device)
    x = randn_tensor((len(gens), 3, size, size), generator=gens, device=device) * sampler.init_noise_sigma
    yield x
    for t in sampler.timesteps:
        pred = _predict(model, sampler.scale_model_input(x, t), t, cond, request.guidance, canvas)
        x = sampler.step(pred, t, x, generator=gens).prev_sample
        yield x


def draw(model: torch.nn.Module, sampler: SchedulerMixin, conditions: Sequence[Sequence[str]],
         gens: list[torch.Generator], request: SampleRequest = SampleRequest(),
         on_step: Callable[[int], object] | None = None, boxes: Sequence[Sequence[Box | None] | None] | None = None,
         start: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
    """Yield every state from the noise to the final images (N, 3, S, S) of N label lists; ``on_step(n)`` after
    each step that moved n images. A canvas model draws one object per pass onto the floor (or ``start``), keeping
    what :func:`cddpm.canvas.composite` keeps, quantised to 8 bits; a layout model first places (or takes) its box."""
    tick = on_step or (lambda n: None)
    given, start = check_boxes(model, conditions, boxes), check_start(model, start, len(conditions))
    if not model.config.canvas:
        for k, x in enumerate(denoise(model, sampler, L.encode_batch(conditions), gens, request)):
            if k:  # state 0 is the starting noise, not a step
                tick(len(x))
            yield x
        return
    size = model.config.sample_size
    if start is None:
        current = model.background.expand(len(conditions), -1, -1, -1).clone()
        occupied = torch.zeros(len(conditions), 1, size, size, dtype=torch.bool, device=current.device)
    else:
        current = start.to(model.background)
        occupied = C.objects_on(model.background, current)
    if given is not None:  # every given box, earlier or later, is taken for the objects placed at random
        given = given.to(current.device)
        taken = (C.box_mask(given.clamp(min=0).flatten(0, 1), size) > 0).view(*given.shape[:2], size, size)
        taken = taken.any(1, keepdim=True)  # a -1 row (no box) is the empty box 0, 0, 0, 0
    for s, (rows, added) in enumerate(C.stages(conditions)):
        index = torch.tensor(rows, device=current.device)
        here = current[index]  # these rows' images before the pass
        context, within, corner, side = here, None, None, None
        if model.config.layout:
            free = occupied[index] if given is None else occupied[index] | taken[index]
            box = C.place(model.layout_boxes, added.argmax(1), free, [gens[i] for i in rows])
            if given is not None:
                box = torch.where(given[index, s, :1] >= 0, given[index, s], box)
            mask = C.box_mask(box, current.shape[-1]).to(current.dtype)
            context, within = torch.cat([context, mask], 1), (mask > 0).to(current.dtype)
            occupied[index] |= mask > 0
            if model.config.crop:  # the pass draws the window around the box; the frame outside it stays
                context, corner, side = C.around(context, box, model.config.crop, model.config.zoom)
                within = within if side is not None else C.cut(within, corner, model.config.crop)
        before = context[:, :3]  # ``here``, cut to the window for a crop model

        def frame(drawn: torch.Tensor) -> torch.Tensor:  # the pass's output as whole frames of these rows
            return drawn if corner is None else C.paste(here, drawn, corner, side)

        for k, x in enumerate(denoise(model, sampler, added, [gens[i] for i in rows], request, context)):
            if k:
                tick(len(rows))
            yield current.index_copy(0, index, frame(x.to(current.dtype)))
        x = x.to(current.dtype).clamp(-1, 1)
        if side is None:  # keep what the pass changed where it drew, put back in the frame
            kept = frame(to_float(to_uint8(C.composite(before, x, request.edit_threshold, within=within).float())))
        else:  # a zoomed window is resampled into the frame first, so the frame around its object is kept as it was
            kept = to_float(to_uint8(C.composite(here, frame(x), request.edit_threshold, within=within).float()))
        current = current.index_copy(0, index, kept.to(current.dtype))
        yield current


def passes(model: torch.nn.Module, conditions: Sequence[Sequence[str]]) -> int:
    """Image-passes :func:`draw` makes: one per image, or one per object for a canvas model."""
    return sum(len(c) for c in conditions) if model.config.canvas else len(conditions)


def generate(model: torch.nn.Module, sampler: SchedulerMixin | dict, labels: Sequence[Sequence[str]],
             request: SampleRequest = SampleRequest(),
             gens: Sequence[torch.Generator] | None = None, size: int | None = IMAGE_SIZE,
             on_step: Callable[[int], object] | None = None,
             boxes: Sequence[Sequence[Box | None] | None] | None = None, start: torch.Tensor | None = None
             ) -> torch.Tensor:
    """Images in [-1, 1] (N, 3, size, size) on the CPU for N label lists, ``batch_size`` at a time, image i from
    ``gens[i]`` (default: the request's seed); ``sampler``: a training scheduler config or a built sampler; the rest
    as in :func:`draw`."""
    conditions = [L.check(c) for c in labels]
    check_boxes(model, conditions, boxes)  # both said before any image is drawn
    check_start(model, start, len(conditions))
    schedule = _built(sampler, request)
    gens = generators(request.seed, range(len(conditions))) if gens is None else list(gens)
    out = []
    for first in range(0, len(conditions), request.batch_size):
        rows = slice(first, first + request.batch_size)
        for x in draw(model, schedule, conditions[rows], gens[rows], request, on_step,
                      None if boxes is None else boxes[rows], None if start is None else start[rows]):
            pass
        out.append(x.float().clamp(-1, 1).cpu())
    images = torch.cat(out) if out else torch.zeros(0, 3, model.config.sample_size, model.config.sample_size)
    return resize(images, size).clamp(-1, 1)


def denoise_frames(model: torch.nn.Module, sampler: SchedulerMixin | dict, labels: Sequence[str] = DENOISE_LABELS,
                   frames: int = DENOISE_FRAMES, request: SampleRequest = SampleRequest(),
                   size: int | None = IMAGE_SIZE) -> torch.Tensor:
    """``frames`` evenly spaced states (F, 3, size, size) from noise to the final image of one label list."""
    states = list(draw(model, _built(sampler, request), [L.check(labels)], generators(request.seed, [0]), request))
    keep = np.unique(np.linspace(0, len(states) - 1, frames).round().astype(int))
    return resize(torch.cat([states[i] for i in keep]).float().clamp(-1, 1).cpu(), size).clamp(-1, 1)


def save_images(images: torch.Tensor, folder: Path) -> None:
    """Write images in [-1, 1] as ``folder/{i}.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(to_uint8(images)):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i}.png")


MARKER = ".cddpm-sample"  # written before sampling starts: an interrupted output is still recognised as ours
_OUTPUTS = re.compile(r"^(grid_|captions_).+\.png$|^denoise\.png$|^metrics\.json$|^images$|^\.cddpm-sample$")


def check_out(out: str | os.PathLike, name: str) -> Path:
    """Refuse an ``out`` that holds anything but earlier sample outputs (numbered PNGs in ``images/{name}``)."""
    def foreign(out: Path) -> list[str] | None:
        if not ((out / "metrics.json").is_file() or (out / MARKER).is_file()):
            return None
        found = sorted(p.name for p in out.iterdir() if not _OUTPUTS.match(p.name))
        images = out / "images"
        if images.is_dir():
            found += [f"images/{p.name}" for p in images.iterdir() if not p.is_dir()]
        if (images / name).is_dir():
            found += [f"images/{name}/{p.name}" for p in (images / name).iterdir() if not NUMBERED_PNG.match(p.name)]
        return found

    return claim_folder(out, "--out", "sampling run", foreign)


def prepare_out(out: str | os.PathLike, name: str) -> Path:
    """:func:`check_out`, then clear ``images/{name}`` and ``metrics.json`` (nothing stale stays, even after an
    interruption) and write the marker."""
    out = check_out(out, name)
    for png in (out / "images" / name).glob("*.png"):
        png.unlink()
    (out / "metrics.json").unlink(missing_ok=True)  # written again when this run finishes
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / MARKER).touch()  # also the write test
    except OSError as err:
        raise ValueError(f"cannot write to --out {out} ({err.strerror}); choose a writable folder") from None
    return out


def read_layout(path: str | os.PathLike) -> tuple[list[list[str]], list[list[list[int] | None]]]:
    """A layout file's scenes (docs/placement.md) as label lists and their boxes (:func:`check_boxes` checks these)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"layout file {path} does not exist; give a JSON list of scenes such as "
                                '[[{"object": "red cube", "box": [8, 8, 40, 40]}, {"object": "blue sphere"}]]')
    scenes = read_json(path)
    if not isinstance(scenes, list) or not scenes:
        raise ValueError(f"{path} must hold a non-empty list of scenes, each a list of objects such as "
                         '{"object": "red cube", "box": [8, 8, 40, 40]}')
    conditions, boxes = [], []
    for i, scene in enumerate(scenes):
        if not isinstance(scene, list) or not all(isinstance(o, dict) and "object" in o and set(o) <= {"object", "box"}
                                                  for o in scene):
            raise ValueError(f'{path} scene {i}: give a list of {{"object": NAME, "box": [y0, x0, y1, x1]}} (box '
                             f"optional), got {scene!r}")
        conditions.append([o["object"] for o in scene])
        boxes.append([o.get("box") for o in scene])
    return check_lists(conditions, path), boxes


def _timed(model: torch.nn.Module, schedule: SchedulerMixin, conditions: list[list[str]], request: SampleRequest,
           progress: bool, **kwargs) -> tuple[torch.Tensor, float]:
    """:func:`generate` under a progress bar: the images and the seconds they took."""
    begin = time.perf_counter()
    with tqdm(total=passes(model, conditions) * len(schedule.timesteps), disable=not progress, unit="img-step",
              desc=f"{request.sampler} {schedule.num_inference_steps} steps") as bar:
        images = generate(model, schedule, conditions, request, on_step=bar.update, **kwargs)
    return images, time.perf_counter() - begin


def sample_split(run: str | os.PathLike, out: str | os.PathLike, request: SampleRequest = SampleRequest(), *,
                 split: str | None = None, labels: Sequence[Sequence[str]] | None = None,
                 conditions: str | os.PathLike | None = None, layout: str | os.PathLike | None = None,
                 data: str | os.PathLike | None = None,
                 checkpoint: str = "last", ema: bool = True, judge: Judge | None = None,
                 frames: int = DENOISE_FRAMES, device: str | torch.device | None = None, progress: bool = True) -> dict:
    """``cddpm sample``: draw one of a split, label lists, a conditions file or a layout file with a checkpoint of
    ``run`` and write the course outputs and ``metrics.json`` (returned) to ``out``."""
    if sum(x is not None for x in (split, labels, conditions, layout)) != 1:
        raise ValueError("give exactly one of a split (test or new_test), label lists, a conditions file or a layout "
                         "file to sample")
    check_whole("--frames", frames, 2)  # every value is checked before --out is touched (prepare_out clears it)
    conditions, boxes = read_layout(layout) if layout is not None else (conditions, None)
    named = layout if layout is not None else conditions
    name = split if split is not None else Path(named).stem if named is not None else "labels"
    check_out(out, name)  # before the model loads
    device = resolve_device(device)
    model, config, folder = runs.load_model(run, checkpoint, ema, device)
    root = Path(data if data is not None else config["data"])  # the split's root, else the run's data
    if split is not None:
        source, conditions = str(root.resolve() / f"{split}.json"), load_condition_lists(root, split)
    elif layout is not None:
        source = str(Path(layout).resolve())
        check_boxes(model, conditions, boxes)
    elif conditions is not None:
        source, conditions = str(Path(conditions).resolve()), load_condition_file(conditions)
    else:
        conditions, source = [L.check(c) for c in labels], "labels"
    schedule = make_sampler(request.sampler, config["scheduler"], request.steps)  # once for all; fails before any work
    if judge is not None:
        judge.check(L.encode_batch(conditions), root)
    out = prepare_out(out, name)
    images, wall = _timed(model, schedule, conditions, request, progress, boxes=boxes)
    save_images(images, out / "images" / name)
    figures.save_grid(images, out / f"grid_{name}.png")
    figures.save_captioned_grid(images, [", ".join(c) for c in conditions], out / f"captions_{name}.png")
    figures.save_grid(denoise_frames(model, schedule, DENOISE_LABELS, frames, request), out / "denoise.png",
                      nrow=frames)

    metrics = dict(split=name, n=len(images), run=str(run), checkpoint=folder.name, ema=ema, sampler=request.sampler,
                   steps=schedule.num_inference_steps, guidance=request.guidance, seed=request.seed,
                   edit_threshold=request.edit_threshold if model.config.canvas else None,
                   sample_size=model.config.sample_size, device=str(device), batch_size=request.batch_size,
                   wall_s=round(wall, 3), images_per_s=round(len(images) / wall, 3) if wall > 0 else None,
                   # provenance: what `cddpm evaluate --images` and `cddpm batch` check these images against
                   conditions=conditions, conditions_sha1=provenance.conditions_sha(conditions),
                   conditions_source=source, boxes=boxes, data=str(root.resolve()), run_path=str(Path(run).resolve()),
                   run_train_json_sha1=config.get("dataset", {}).get("train_json_sha1"))
    if judge is not None:
        metrics.update(judge(images, L.encode_batch(conditions)))
    write_json(out / "metrics.json", metrics)
    return metrics


def add_to_image(run: str | os.PathLike, image: str | os.PathLike, labels: Sequence[str], out: str | os.PathLike,
                 request: SampleRequest = SampleRequest(), *, boxes: Sequence[Box | None] | None = None,
                 checkpoint: str = "last", ema: bool = True, device: str | torch.device | None = None) -> dict:
    """``cddpm add``: draw ``labels``' objects onto the picture ``image`` (in ``boxes`` where given) with a canvas
    checkpoint of ``run``; writes ``out/images/{stem}/0.png`` and ``metrics.json`` (returned)."""
    labels, image = L.check(labels), Path(image)
    if not image.is_file():
        raise FileNotFoundError(f"--image {image} does not exist; give the picture (a PNG) to add objects to")
    rows = None if boxes is None else [list(boxes)]
    check_out(out, image.stem)  # before the model loads
    device = resolve_device(device)
    model, config, folder = runs.load_model(run, checkpoint, ema, device)
    start = read_picture(image, model.config.sample_size)[None]
    check_start(model, start, 1)
    check_boxes(model, [labels], rows)
    schedule = make_sampler(request.sampler, config["scheduler"], request.steps)
    out = prepare_out(out, image.stem)
    images, wall = _timed(model, schedule, [labels], request, progress=True, boxes=rows, start=start)
    save_images(images, out / "images" / image.stem)
    metrics = dict(image=str(image.resolve()), added=labels, boxes=rows and rows[0], n=1, run=str(run),
                   checkpoint=folder.name, ema=ema, sampler=request.sampler, steps=schedule.num_inference_steps,
                   guidance=request.guidance, seed=request.seed, edit_threshold=request.edit_threshold,
                   sample_size=model.config.sample_size, device=str(device), wall_s=round(wall, 3),
                   run_path=str(Path(run).resolve()))
    write_json(out / "metrics.json", metrics)
    return metrics
