"""Synthetic i-CLEVR: CLEVR-style scenes in the official layout, with per-object ground truth, byte-identical for the
same arguments (``render_dataset``, ``render_conditions``, ``render_twin``; ``realistic``: ``raycast.Realism``)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .. import labels as L
from ..choices import IMAGE_SIZE, PER_CONDITION, SCENES, SEED
from ..data import ROOT_FILES
from ..paths import atomic_write, claim_folder
from ..progress import TERMINAL_ONLY, tqdm
from . import raycast
from . import scenes as S

VERSION = 4  # bump whenever the same arguments give different files
SIZE_RANGE = (16, 1024)
MAX_IMAGES = 10_000_000
CHUNK = 32  # scenes per worker task
OFFICIAL_NAME = re.compile(r"CLEVR_train_(\d+)_(\d+)\.png")
# generator tags: (seed, tag, ...) keys never collide between purposes
SCENE, CONDITION, TWIN, LABELS, SPLITS, REALISTIC = range(6)


@dataclass(frozen=True)
class Job:
    """One scene: its generator key, its labels, and (file name, object count) of each image to write."""

    key: tuple[int, ...]
    labels: tuple[str, ...]
    images: tuple[tuple[str, int], ...]


def render_dataset(out: str | os.PathLike, scenes: int = SCENES, seed: int = SEED, size: int = IMAGE_SIZE, force: bool = False,
                   command: str | None = None, workers: int | None = None, realistic: bool = False) -> Path:
    """Write a synthetic i-CLEVR root of ``scenes`` x 3 images; returns ``out``."""
    _check_int("--scenes", scenes, 1, MAX_IMAGES // 3)
    _check_common(seed, size, out, force)
    label_lists = S.balanced_labels(scenes, np.random.default_rng([seed, LABELS]))
    jobs = [Job((SCENE, i), tuple(labels), tuple((f"CLEVR_train_{i:06d}_{k}.png", k + 1) for k in range(3)))
            for i, labels in enumerate(label_lists)]
    return _write(out, jobs, seed, size, dict(kind="dataset", scenes=scenes, command=command), workers,
                  realistic)


def render_conditions(conditions: Sequence[Sequence[str]], out: str | os.PathLike, per_condition: int = PER_CONDITION,
                      seed: int = SEED, size: int = IMAGE_SIZE, force: bool = False, command: str | None = None,
                      workers: int | None = None, realistic: bool = False) -> Path:
    """Write ``per_condition`` ground-truth images of each condition as a root (train.json maps them)."""
    _check_int("--per-condition", per_condition, 1, MAX_IMAGES)
    _check_common(seed, size, out, force)
    conditions = [L.check(c) for c in conditions]
    if not conditions or len(conditions) * per_condition > MAX_IMAGES:
        raise ValueError(f"{len(conditions)} conditions x {per_condition} images is not between 1 and {MAX_IMAGES}")
    jobs = [Job((CONDITION, i, n), tuple(c), ((f"condition_{i:03d}_{n:03d}.png", len(c)),))
            for i, c in enumerate(conditions) for n in range(per_condition)]
    meta = dict(kind="conditions", conditions=conditions, per_condition=per_condition, command=command)
    return _write(out, jobs, seed, size, meta, workers, realistic)


def render_twin(mapping: Mapping[str, Sequence[str]], out: str | os.PathLike, seed: int = SEED, size: int = IMAGE_SIZE,
                force: bool = False, command: str | None = None, workers: int | None = None,
                splits: Mapping[str, Sequence[Sequence[str]]] | None = None, realistic: bool = False) -> Path:
    """Write a synthetic image for every name -> labels of a train.json, and ``splits`` as they are; names
    ``CLEVR_train_{scene}_{k}.png`` share their scene's generator, so a scene grows object by object."""
    _check_common(seed, size, out, force)
    if not mapping:
        raise ValueError("the train.json to twin is empty; give a root with at least one image")
    splits = {split: [L.check(c) for c in lists] for split, lists in (splits or {}).items()}
    jobs = []
    for name, labels in mapping.items():
        if Path(name).name != name or not name.endswith(".png"):
            raise ValueError(f"image name {name!r} must be a plain file name ending in .png")
        match = OFFICIAL_NAME.fullmatch(name)
        key = (SCENE, int(match[1])) if match else (TWIN, int.from_bytes(hashlib.sha256(name.encode()).digest()[:8]))
        jobs.append(Job(key, tuple(L.check(labels)), ((name, len(labels)),)))
    return _write(out, jobs, seed, size, dict(kind="twin", command=command), workers, realistic, splits)


def _check_int(flag: str, value: int, low: int, high: int) -> None:
    if not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{flag} must be an integer from {low} to {high}, got {value!r}")


def _check_common(seed: int, size: int, out: str | os.PathLike, force: bool) -> None:
    _check_int("--seed", seed, 0, 2**63 - 1)
    _check_int("--size", size, *SIZE_RANGE)
    claim_folder(out, "--out", "cddpm render", _foreign, force)  # nothing but an earlier render, and only with force


RENDER_FILES = (*ROOT_FILES, "scenes.json", "meta.json")
OURS = (*RENDER_FILES, "iclevr", ".cache")  # .cache: the training loader's image cache (cddpm.data)
# {split}_{size}.pt and its temporary .{split}_{size}.pt.{pid}.tmp (paths.atomic_write)
CACHE_FILE = re.compile(r"^\w+_\d+\.pt$|^\.\w+_\d+\.pt\.\d+\.tmp$")


def _foreign(out: Path) -> list[str] | None:
    """What in ``out`` a cddpm render did not write (None: ``out`` is no render); a render is recognised by its content."""
    try:
        meta = json.loads((out / "meta.json").read_text())
        mapping = json.loads((out / "train.json").read_text())
        assert isinstance(meta, dict) and isinstance(meta.get("renderer"), int) and isinstance(mapping, dict)
    except (OSError, ValueError, AssertionError):
        return None
    foreign = [p.name for p in out.iterdir() if p.name not in OURS]
    cache = out / ".cache"
    if cache.is_dir():  # only the loader's own files (CACHE_FILE)
        foreign += [f".cache/{p.name}" for p in cache.iterdir() if not CACHE_FILE.match(p.name)]
    images = out / "iclevr"
    if images.is_dir():
        foreign += [f"iclevr/{p.name}" for p in images.iterdir() if p.name not in mapping]
    return sorted(foreign)


def _write(out: str | os.PathLike, jobs: list[Job], seed: int, size: int, meta: dict,
           workers: int | None, realistic: bool, splits: Mapping[str, list[list[str]]] | None = None) -> Path:
    """Render ``jobs`` into a temporary sibling of ``out`` (claimed by :func:`_check_common`), write the json files
    (``splits``' condition lists, the others drawn), then swap it in."""

    def write(tmp: Path) -> None:
        (tmp / "iclevr").mkdir(parents=True)
        truth = _render_all(jobs, seed, size, tmp / "iclevr", workers, realistic)
        mapping = {name: list(job.labels[:count]) for job in jobs for name, count in job.images}
        split_rng = np.random.default_rng([seed, SPLITS])
        files = {
            "objects.json": L.objects_dict(),
            "train.json": mapping,
            **{f"{split}.json": S.draw_conditions(length, split_rng) for split, length in S.SPLIT_LENGTHS.items()},
            **{f"{split}.json": lists for split, lists in (splits or {}).items()},
            "scenes.json": {name: truth[name] for name in mapping},
            "meta.json": dict(renderer=VERSION, seed=seed, size=size, samples_per_pixel=raycast.SAMPLES**2,
                              images=len(mapping), realistic=realistic, **meta),
        }
        for name, content in files.items():
            (tmp / name).write_text(json.dumps(content) + "\n")

    return atomic_write(out, write)


def _render_all(jobs: list[Job], seed: int, size: int, folder: Path, workers: int | None,
                realistic: bool) -> dict[str, list[dict]]:
    """Render every job in chunks, in parallel processes; returns file name -> per-object ground truth."""
    chunks = [jobs[i:i + CHUNK] for i in range(0, len(jobs), CHUNK)]
    workers = min(workers or cpu_cores(), len(chunks))
    truth: dict[str, list[dict]] = {}
    args = [(chunk, seed, size, folder, realistic) for chunk in chunks]
    images = sum(len(job.images) for job in jobs)
    # workers ignore Ctrl-C; the parent cancels what is queued, removes its temporary folder and says so in one line
    pool = (ProcessPoolExecutor(workers, initializer=signal.signal, initargs=(signal.SIGINT, signal.SIG_IGN))
            if workers > 1 else None)
    try:
        with tqdm(total=images, unit="img", desc="render", disable=TERMINAL_ONLY) as bar:
            for result in (pool.map if pool else map)(_render_chunk, args):
                truth.update(result)
                bar.update(len(result))
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return truth


def cpu_cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _render_chunk(args: tuple[list[Job], int, int, Path, bool]) -> dict[str, list[dict]]:
    """Lay out and render some scenes, write their PNGs, return their ground truth (worker entry point)."""
    jobs, seed, size, folder, realistic = args
    placed = S.layout([job.key for job in jobs], [job.labels for job in jobs], seed)
    names, images = [], []
    for job, things in zip(jobs, placed):
        for name, count in job.images:
            names.append(name)
            images.append(things[:count])
    if realistic:
        results = [_realistic_render(job, things, seed, size) for job, things in zip(jobs, placed)]
        result = raycast.Result(*(np.concatenate([getattr(r, f) for r in results]) for f in
                                  ("visible", "covered", "images", "position")))
    else:
        result = raycast.renderer(size, raycast.SAMPLES).render(S.batch(images))
    truth = {}
    for i, (name, things) in enumerate(zip(names, images)):
        Image.fromarray(result.images[i]).save(folder / name, format="PNG", compress_level=6)
        truth[name] = [
            dict(label=t.label, material=t.material, size=t.size, floor=[round(t.x, 4), round(t.y, 4)],
                 position=result.position[i, j].tolist(),
                 visible=round(float(result.visible[i, j] / max(result.covered[i, j], 1)), 4))
            for j, t in enumerate(things)]
    return truth


def _realistic_render(job: Job, things: Sequence[S.Thing], seed: int, size: int) -> raycast.Result:
    """A scene's images as ``--realistic`` renders them: its own camera and lights (drawn from (seed, its key)),
    then each image's light and grain (from (seed, its key, its object count)), so any subset of a scene's images
    (a twin) gets the same pixels."""
    view = scene_view(seed, job.key)
    counts = [count for _, count in job.images]
    rngs = [np.random.default_rng([seed, REALISTIC, *job.key, count]) for count in counts]
    gain = np.array([1 + raycast.REALISM.step_light * rng.uniform(-1, 1) for rng in rngs])
    # a sum of three uniforms: nearly Gaussian, unit variance, and made of exact operations like the pixels
    grain = np.stack([(rng.random((3, size, size, 3)).sum(0) - 1.5) * 2 * raycast.REALISM.grain for rng in rngs])
    return raycast.Renderer(size, raycast.SAMPLES, view).render(S.batch([things[:c] for c in counts]), gain=gain,
                                                                grain=grain)


def scene_view(seed: int, key: tuple[int, ...]) -> raycast.View:
    """The camera and lights of scene ``key`` in a --realistic render of ``seed``."""
    return raycast.jittered(np.random.default_rng([seed, REALISTIC, *key]))
