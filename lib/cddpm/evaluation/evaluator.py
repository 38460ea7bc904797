"""The ResNet18 evaluator in the course's checkpoint format (``torch.load(path)["model"]``, a resnet18 with a
sigmoid head on 64x64 images in [-1, 1]; interchangeable with the course's): build, load, save, score, evaluate."""
from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn
from torchvision.models import resnet18

from .. import data
from .. import labels as L
from ..choices import IMAGE_SIZE
from ..paths import atomic_write, read_error
from ..provenance import conditions_sha
from . import metrics

TRAINED_ON = "train_json_sha1"  # the checkpoint key of the train.json hash a judge learned (an extra key the course's
                                # evaluator.py ignores)
FEATURES = 512  # the pooled features ResNet18's fc layer reads
EXPECTED = ("torch.save({'model': state_dict}) of a torchvision resnet18 whose fc is "
            "Sequential(Linear(512, 24), Sigmoid()) (the course's checkpoint.pth format)")


def _numpy_scalar_globals() -> list:
    """The globals a weights-only load needs for numpy scalars saved beside the weights (numpy 1's and 2's names)."""
    scalar = np.int64(0).__reduce__()[0]

    def renamed(*args):
        return scalar(*args)

    other = "numpy.core.multiarray" if scalar.__module__ == "numpy._core.multiarray" else "numpy._core.multiarray"
    renamed.__module__, renamed.__name__, renamed.__qualname__ = other, "scalar", "scalar"
    kinds = (np.bool_, np.int32, np.int64, np.float16, np.float32, np.float64)
    return [scalar, renamed, np.dtype, *{type(np.dtype(kind)) for kind in kinds}]


NUMPY_SCALARS = _numpy_scalar_globals()
# prefixes that wrappers add to every key: DataParallel / DistributedDataParallel, torch.compile
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def build_network() -> nn.Module:
    """The course's architecture, randomly initialised (no pretrained download)."""
    network = resnet18(weights=None)
    network.fc = nn.Sequential(nn.Linear(FEATURES, L.NUM_CLASSES), nn.Sigmoid())
    return network


def _mismatch(expected: dict[str, torch.Tensor], found: dict) -> str:
    """One-line description of how ``found`` differs from the expected state dict ('' when it matches)."""
    def few(keys: list[str], what: str) -> list[str]:
        return [f"{len(keys)} {what} keys ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"] if keys else []

    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [f"{k} has shape {tuple(getattr(found[k], 'shape', ()))} not {tuple(v.shape)}"
              for k, v in expected.items() if k in found and tuple(getattr(found[k], "shape", ())) != tuple(v.shape)]
    return "; ".join(few(missing, "missing") + few(unexpected, "unexpected") + shapes[:2])


def _check_shape(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"expected a torch.Tensor of images, got a {type(images).__name__}")
    if images.dim() != 4 or tuple(images.shape[1:]) != (3, IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"expected images of shape (N, 3, {IMAGE_SIZE}, {IMAGE_SIZE}), got {tuple(images.shape)}; "
                         f"resize to {IMAGE_SIZE}x{IMAGE_SIZE} RGB first (cddpm.sample.resize)")


def check_images(images: torch.Tensor) -> None:
    """Refuse anything but a float (N, 3, 64, 64) batch in [-1, 1], naming the likely mistake: above 1.5 is
    [0, 255]; no pixel below 0 is [0, 1] (a real scene in [-1, 1] always has pixels darker than mid-grey)."""
    _check_shape(images)
    if not images.is_floating_point():
        raise ValueError(f"images are {images.dtype}; convert [0, 255] pixels with cddpm.data.to_float")
    if images.numel() == 0:
        return
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or infinite values; the sampler diverged, check its output")
    low, high = images.min().item(), images.max().item()
    if high > 1.5:
        raise ValueError(f"images range over [{low:.3g}, {high:.3g}]: these look like [0, 255] pixels; "
                         "map them to [-1, 1] with cddpm.data.to_float")
    if low < -1.001 or high > 1.001:
        raise ValueError(f"images range over [{low:.3g}, {high:.3g}], outside [-1, 1]; clamp them to [-1, 1]")
    if low >= 0:
        raise ValueError(f"every value is in [{low:.3g}, {high:.3g}] (none below 0): these look like [0, 1] images; "
                         "map them to [-1, 1] with images * 2 - 1")


class Evaluator:
    """A ResNet18 evaluator: ``scores`` for accuracy, ``__call__`` for differentiable logits (training)."""

    def __init__(self, network: nn.Module, device: str | torch.device = "cpu", path: str | os.PathLike | None = None,
                 trained_on: str | None = None):
        self.device = torch.device(device)
        self.network = network.to(self.device)
        self.path = None if path is None else Path(path)
        self.trained_on = trained_on  # the train.json hash it learned (provenance.mapping_sha); None: not recorded
        # views sharing its parameters: up to the global average pool (the (N, 512) features fc reads), and without
        # the final Sigmoid (logits for BCE)
        self._pooled = nn.Sequential(*list(self.network.children())[:-1], nn.Flatten(1))
        self._logits = nn.Sequential(self._pooled, self.network.fc[0])

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> Evaluator:
        """Load a checkpoint in the course's format (ours or the course's own), in eval mode."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"evaluator checkpoint {path} not found; train one with "
                                    f"`cddpm train-evaluator --out {path}` or pass the course's checkpoint.pth")
        try:
            torch.serialization.add_safe_globals(NUMPY_SCALARS)  # torch >= 2.4; the context manager needs 2.5
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for corrupt or foreign files
            reason = read_error(err)
            fix = (f"if you trust the file, keep only its weights: torch.save({{'model': torch.load('{path}', "
                   f"weights_only=False)['model']}}, '{path}')" if reason.startswith("a safe load refuses")
                   else "restore the file or give the course's checkpoint.pth")
            raise ValueError(f"{path} is not a readable torch checkpoint ({reason}); {fix}; expected {EXPECTED}") from None
        if not isinstance(checkpoint, dict) or "model" not in checkpoint:
            found = list(checkpoint)[:5] if isinstance(checkpoint, dict) else type(checkpoint).__name__
            raise ValueError(f"{path} has no 'model' entry (found {found}); if one of them holds the weights, save "
                             f"them as torch.save({{'model': weights}}, '{path}'); expected {EXPECTED}")
        network = build_network()
        state = checkpoint["model"]
        if isinstance(state, dict):  # keys saved from a wrapped network, e.g. module.conv1.weight
            state = OrderedDict(state)
            for prefix in WRAPPER_PREFIXES:
                torch.nn.modules.utils.consume_prefix_in_state_dict_if_present(state, prefix)
        problem = _mismatch(network.state_dict(), state) if isinstance(state, dict) else "not a state dict"
        if problem:
            raise ValueError(f"{path} holds another architecture: {problem}; expected {EXPECTED}")
        bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise ValueError(f"{path} has NaN or infinite weights ({', '.join(bad[:3])}); retrain it with "
                             "`cddpm train-evaluator` or restore the file")
        network.load_state_dict(state)
        trained_on = checkpoint.get(TRAINED_ON)
        return cls(network.eval(), device, path, trained_on if isinstance(trained_on, str) else None)

    def digest(self) -> str:
        """SHA-256 of the weights (names, shapes, values): equal for two files holding the same evaluator."""
        h = hashlib.sha256()
        for name, tensor in sorted(self.network.state_dict().items()):
            h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``{'model': state_dict}`` (plus the train.json hash it learned, when known) atomically."""
        state = {k: v.detach().cpu() for k, v in self.network.state_dict().items()}
        record = {TRAINED_ON: self.trained_on} if self.trained_on else {}
        return atomic_write(path, lambda tmp: torch.save({"model": state, **record}, tmp))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 24) pre-sigmoid logits, differentiable and unchecked: for BCE training."""
        return self._logits(images)

    def scores(self, images: torch.Tensor, batch_size: int = 256, check_range: bool = True) -> torch.Tensor:
        """(N, 24) per-class scores in [0, 1] on the CPU of (N, 3, 64, 64) ``images`` in [-1, 1] (``check_range=False``
        checks only the shape, for batches made with ``data.to_float``)."""
        (check_images if check_range else _check_shape)(images)
        return self._run(self.network, images, batch_size)

    def features(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """(N, 512) pooled features (what the fc layer reads) on the CPU: the judge's feature space, where
        :mod:`cddpm.evaluation.fidelity` measures distances; ``images`` as ``scores`` takes them."""
        _check_shape(images)
        return self._run(self._pooled, images, batch_size)

    def _run(self, view: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
        self.network.eval()
        with torch.inference_mode():  # split gives an empty batch one empty chunk: (0, width) out
            return torch.cat([view(chunk.to(self.device, torch.float32)).float().cpu()
                              for chunk in images.split(batch_size)])


# --- metrics on images and folders ---------------------------------------------------------------

def summarize(scores: torch.Tensor, labels: torch.Tensor) -> dict:
    """The headline metrics of scored images: ``topk``, ``exact_set``, ``extra_object_rate``, ``n``."""
    return dict(topk=metrics.topk_accuracy(scores, labels), exact_set=metrics.exact_set_accuracy(scores, labels),
                extra_object_rate=metrics.extra_object_rate(scores, labels), n=len(scores))


def evaluate_images(evaluator: Evaluator, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Score an in-memory (N, 3, 64, 64) batch in [-1, 1] against (N, 24) multi-hot labels."""
    return summarize(evaluator.scores(images), torch.as_tensor(labels).float())


def per_image(scores: torch.Tensor, labels: torch.Tensor, names: Sequence[str], threshold: float = 0.5) -> list[dict]:
    """Per-image predictions: requested objects, predicted set (score > threshold), top-k hits, exact match."""
    credit = metrics.topk_credit(scores, labels).sum(1)
    rows = []
    for name, s, y, hits in zip(names, scores, labels, credit.tolist()):
        predicted = [L.CLASSES[i] for i in torch.nonzero(s > threshold).flatten().tolist()]
        requested = L.decode(y)
        rows.append(dict(image=name, requested=requested, predicted=predicted, topk_hits=round(hits, 4),
                         exact=sorted(predicted) == sorted(requested),
                         scores={c: round(s[L.INDEX[c]].item(), 4) for c in sorted(set(requested) | set(predicted))}))
    return rows


def read_folder(folder: str | os.PathLike, count: int) -> tuple[torch.Tensor, int]:
    """``folder/0.png .. {count-1}.png`` as uint8 (count, 3, 64, 64), plus how many needed a resize; other files
    are ignored, a missing number or one >= ``count`` is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist; sample into it with `cddpm sample`")
    numbers = {int(m.group(1)) for p in folder.iterdir() if (m := data.NUMBERED_PNG.match(p.name))}
    missing = sorted(set(range(count)) - numbers)
    extra = sorted(n for n in numbers if n >= count)
    if missing:
        shown = ", ".join(f"{i}.png" for i in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise FileNotFoundError(f"{folder} lacks {len(missing)} of the {count} images 0.png..{count - 1}.png "
                                f"the conditions need ({shown}); sample every condition, in condition order")
    if extra:
        raise ValueError(f"{folder} holds {len(numbers)} numbered images but the condition file has {count} "
                         f"({extra[0]}.png and beyond are extra); pick the matching --split or remove them")
    arrays, resized = [], 0
    for i in range(count):
        path = folder / f"{i}.png"
        try:
            with Image.open(path) as im:
                resized += im.size != (IMAGE_SIZE, IMAGE_SIZE)
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"unreadable image {path} ({err}); write it again") from None
        arrays.append(torch.from_numpy(data.read_image(path, IMAGE_SIZE)))
    return torch.stack(arrays), resized


def _fidelity(evaluator: Evaluator, images: torch.Tensor, labels: torch.Tensor, reference: str | os.PathLike | None,
              floor_reference: str | os.PathLike | None, inception: bool) -> dict:
    """:func:`cddpm.evaluation.fidelity.measure` of uint8 ``images`` when a ``reference`` is given (torchmetrics loads only then)."""
    if reference is None:
        if floor_reference is not None or inception:
            raise ValueError("--floor-reference and --inception measure against a reference; give --reference DIR too")
        return {}
    from .fidelity import measure

    return measure(evaluator, images, labels, reference, floor_reference, inception)


REPORT_KEYS = ("topk", "exact_set", "extra_object_rate", "n", "split", "images", "evaluator")  # what both write


def evaluate_folder(evaluator: Evaluator, folder: str | os.PathLike, conditions: Sequence[Sequence[str]],
                    split: str = "test", with_per_image: bool = False, reference: str | os.PathLike | None = None,
                    floor_reference: str | os.PathLike | None = None, inception: bool = False) -> dict:
    """Metrics of ``folder/{i}.png`` against the object lists ``conditions`` (named ``split``); with a ``reference``
    also FD and KID (:func:`cddpm.evaluation.fidelity.measure`)."""
    lists = data.check_lists(list(conditions), f"the conditions of {folder}")
    labels = L.encode_batch(lists)
    images, resized = read_folder(folder, len(labels))
    scores = evaluator.scores(data.to_float(images), check_range=False)
    out = dict(summarize(scores, labels), split=split, images=str(folder), evaluator=str(evaluator.path), resized=resized,
               conditions_sha1=conditions_sha(lists))
    out.update(_fidelity(evaluator, images, labels, reference, floor_reference, inception))
    if with_per_image:
        out["per_image"] = per_image(scores, labels, [f"{i}.png" for i in range(len(labels))])
    return out


def evaluate_root(evaluator: Evaluator, root: str | os.PathLike, split: str = "train",
                  with_per_image: bool = False, reference: str | os.PathLike | None = None,
                  floor_reference: str | os.PathLike | None = None, inception: bool = False) -> dict:
    """Metrics of a labelled i-CLEVR root (e.g. ground-truth renders): each image of ``split.json`` against its labels;
    FD and KID as in :func:`evaluate_folder`."""
    dataset = data.ICLEVRDataset(root, split, preload=True)
    if len(dataset) == 0:
        raise ValueError(f"{root}/{split}.json lists no images; render the root again")
    scores = evaluator.scores(data.to_float(dataset.images), check_range=False)
    out = dict(summarize(scores, dataset.labels), split=split, images=str(root), evaluator=str(evaluator.path))
    out.update(_fidelity(evaluator, dataset.images, dataset.labels, reference, floor_reference, inception))
    if with_per_image:
        out["per_image"] = per_image(scores, dataset.labels, [p.name for p in dataset.files])
    return out
