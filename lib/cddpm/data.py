"""The official i-CLEVR layout (``objects.json``, ``{train,test,new_test}.json``, ``iclevr/*.png``): labels, and
images resized straight to ``size`` (no crop, like the course's evaluator) in [-1, 1]."""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from . import labels as L
from .choices import HELD_OUT, IMAGE_SIZE, SPLITS
from .paths import atomic_write

ROOT_FILES = ("objects.json", "train.json", *(f"{split}.json" for split in SPLITS))  # beside iclevr/
NUMBERED_PNG = re.compile(r"^(0|[1-9]\d*)\.png$")  # generated images: 0.png .. N-1.png in condition order
_SCENE_STEP = re.compile(r"^(.*)_(\d+)$")


def scene_step(name: str) -> tuple[str, int | None]:
    """i-CLEVR's scene and step of a file name: ``CLEVR_train_000123_2.png`` -> (``CLEVR_train_000123``, 2);
    a name without a final ``_<digits>`` is a scene of its own: (its stem, None)."""
    stem = Path(name).stem
    m = _SCENE_STEP.match(stem)
    return (m[1], int(m[2])) if m else (stem, None)


def read_json(path: Path):
    """Read a json file with one-line errors naming the path."""
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}; an i-CLEVR root needs objects.json, train.json, test.json, new_test.json")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"malformed json in {path} ({err}); restore the file or render the root again") from None


def check_lists(entries: list, path: str | os.PathLike) -> list[list[str]]:
    """Validate every object list read from ``path``; errors name the file and the entry."""
    out = []
    for i, labels in enumerate(entries):
        try:
            out.append(L.check(labels))
        except ValueError as err:
            raise ValueError(f"{path} entry {i}: {err}") from None
    return out


def _read_split(root: str | os.PathLike, split: str, kind: type, shape: str) -> tuple[Path, dict | list]:
    """``ROOT/{split}.json`` of a root with the course's objects.json, checked to be a ``kind`` (``shape`` says what)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"i-CLEVR root {root} does not exist; render one with `cddpm render --out {root}` "
                                "or point --data at your copy of the course files")
    if read_json(root / "objects.json") != L.objects_dict():
        raise ValueError(f"{root / 'objects.json'} differs from the i-CLEVR class order built into cddpm; use the "
                         "course's objects.json")
    path = root / f"{split}.json"
    content = read_json(path)
    if not isinstance(content, kind):
        raise ValueError(f"{path} must {shape}, got a {type(content).__name__}")
    return path, content


def load_mapping(root: str | os.PathLike, split: str = "train") -> dict[str, list[str]]:
    """``split.json`` as an ordered mapping file name -> object names, validated."""
    path, mapping = _read_split(root, split, dict, "map image file names to object lists")
    outside = [name for name in mapping if Path(name).name != name or name in ("", ".", "..")]
    if outside:
        raise ValueError(f"{path} names {outside[0]!r}, which is not a plain file name in iclevr/; "
                         "list images by file name only")
    return dict(zip(mapping, check_lists(list(mapping.values()), path)))


def load_condition_lists(root: str | os.PathLike, split: str = "test") -> list[list[str]]:
    """The object lists of ``test.json`` or ``new_test.json``, in file order."""
    if split not in SPLITS:
        raise ValueError(f"unknown condition split {split!r}; use one of {', '.join(SPLITS)}")
    path, conditions = _read_split(root, split, list, "hold a list of object lists")
    return check_lists(conditions, path)


def load_condition_file(path: str | os.PathLike) -> list[list[str]]:
    """The object lists of any test.json-style file (e.g. from ``cddpm probes``), validated with one-line errors."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"conditions file {path} does not exist; give a test.json-style list of object lists "
                                "(`cddpm probes` writes some)")
    conditions = read_json(Path(path))
    if not isinstance(conditions, list) or not conditions:
        raise ValueError(f"{path} must hold a non-empty list of object lists like test.json, e.g. [['red cube']]")
    return check_lists(conditions, path)


def load_conditions(root: str | os.PathLike, split: str = "test") -> torch.Tensor:
    """(N, 24) multi-hot conditions of ``test.json`` or ``new_test.json``, in file order."""
    return L.encode_batch(load_condition_lists(root, split))


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB with 8 bits a channel; 16- and 32-bit grey images are scaled down (PIL's convert clips them)."""
    if im.mode.startswith("I"):
        values = np.asarray(im).astype(np.float64)
        bits = 16 if im.mode.startswith("I;16") or values.max(initial=0) <= 65535 else 32
        grey = np.clip(values / (2 ** bits - 1) * 255, 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    return im.convert("RGB")


def read_image(source: str | os.PathLike | Image.Image, size: int) -> np.ndarray:
    """One image (a file or a PIL image) as uint8 (3, size, size) RGB, resized directly (bilinear, no crop): how
    training, the judge and ``cddpm add`` read every picture."""
    if isinstance(source, Image.Image):
        return _resized(_to_rgb(source), size)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} is listed but missing; restore it or render the root again")
    try:
        with Image.open(path) as im:
            rgb = _to_rgb(im)
    except PermissionError:
        raise PermissionError(f"cannot read {path} (permission denied); make it readable (chmod a+r)") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"corrupt image {path} ({err}); replace the file or render the root again") from None
    return _resized(rgb, size)


def _resized(rgb: Image.Image, size: int) -> np.ndarray:
    return np.asarray(rgb.resize((size, size), Image.BILINEAR), dtype=np.uint8).transpose(2, 0, 1).copy()


def read_picture(source: str | os.PathLike | Image.Image, size: int) -> torch.Tensor:
    """One picture as floats (3, size, size) in [-1, 1], read as :func:`read_image` reads training images: a sampling
    ``start``."""
    return to_float(torch.from_numpy(read_image(source, size)))


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]: the evaluator's normalisation."""
    return images.float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], clamped."""
    return images.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)


class ICLEVRDataset(Dataset):
    """(image (3, size, size) in [-1, 1], multi-hot (24,)) pairs of a root's ``{split}.json``; ``preload`` decodes
    all into ``self.images`` (uint8) once, cached in ``root/.cache`` until the json or an image changes."""

    def __init__(self, root: str | os.PathLike, split: str = "train", size: int = IMAGE_SIZE, preload: bool = False,
                 cache_dir: str | os.PathLike | None = None):
        self.root = Path(root)
        self.size = size
        self.mapping = load_mapping(self.root, split)
        self.files = [self.root / "iclevr" / name for name in self.mapping]
        self.labels = L.encode_batch(self.mapping.values())
        self.images: torch.Tensor | None = None
        if preload:
            cache = Path(cache_dir) if cache_dir else self.root / ".cache"
            self.images = self._load_all(cache / f"{split}_{size}.pt")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[i] if self.images is not None else torch.from_numpy(read_image(self.files[i], self.size))
        return to_float(image), self.labels[i]

    def _fingerprint(self) -> str:
        digest = hashlib.sha1(json.dumps(self.mapping).encode())
        for path in self.files:
            try:
                st = path.stat()
            except FileNotFoundError:
                raise FileNotFoundError(f"image {path} is listed but missing; restore it or render the root again") from None
            digest.update(f"{path.name}:{st.st_size}:{st.st_mtime_ns};".encode())
        return digest.hexdigest()

    def _load_all(self, cache: Path) -> torch.Tensor:
        key = self._fingerprint()
        if cache.is_file():
            try:
                saved = torch.load(cache, weights_only=True)
                if saved.get("key") == key:
                    return saved["images"]
            except Exception:  # a stale or broken cache is rebuilt, never trusted
                pass
        with ThreadPoolExecutor(8) as pool:
            arrays = list(pool.map(lambda p: read_image(p, self.size), self.files))
        images = torch.from_numpy(np.stack(arrays)) if arrays else torch.zeros(0, 3, self.size, self.size, dtype=torch.uint8)
        try:
            atomic_write(cache, lambda tmp: torch.save({"key": key, "images": images}, tmp))
        except OSError:  # a read-only root still works, only without the cache
            pass
        return images


def split_scenes(names: Sequence[str], val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train/validation indices with whole scenes (:func:`scene_step`) held out."""
    scenes = [scene_step(name)[0] for name in names]
    unique = sorted(set(scenes))
    order = torch.randperm(len(unique), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = round(len(unique) * val_fraction)
    if len(unique) >= 2:
        n_val = min(max(n_val, 1), len(unique) - 1)
    held = {unique[i] for i in order[:n_val]}
    is_val = torch.tensor([s in held for s in scenes], dtype=torch.bool)
    return torch.nonzero(~is_val).flatten(), torch.nonzero(is_val).flatten()


def held_out(names: Sequence[str]) -> torch.Tensor:
    """Which images of a root are its held-out set: ``HELD_OUT`` of its scenes, whole, the same for every caller."""
    mask = torch.zeros(len(names), dtype=torch.bool)
    mask[split_scenes(names, HELD_OUT, seed=0)[1]] = True
    return mask
