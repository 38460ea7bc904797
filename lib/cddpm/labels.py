"""The 24 i-CLEVR classes in the course's ``objects.json`` order (index = shape * 8 + colour) and their multi-hot
encoding."""
from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

import torch

COLOURS: tuple[str, ...] = ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow")
SHAPES: tuple[str, ...] = ("cube", "sphere", "cylinder")
CLASSES: tuple[str, ...] = tuple(f"{c} {s}" for s in SHAPES for c in COLOURS)
NUM_CLASSES: int = len(CLASSES)
INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}
MAX_OBJECTS: int = 3
# colour words people type that are no CLEVR colour, mapped to the CLEVR colour they look most like
_COLOUR_WORDS = {"grey": "gray", "pink": "purple", "violet": "purple", "magenta": "purple", "orange": "brown",
                 "teal": "cyan", "turquoise": "cyan", "gold": "yellow", "black": "gray", "white": "gray"}


def objects_dict() -> dict[str, int]:
    """The official ``objects.json`` content: class name -> index."""
    return dict(INDEX)


def nearest(text: str) -> str:
    """The valid class closest to ``text``: its colour and shape words matched separately."""
    words = text.strip().lower().split() or [""]
    colour = _COLOUR_WORDS.get(words[0]) or difflib.get_close_matches(words[0], COLOURS, n=1, cutoff=0.0)[0]
    shape = difflib.get_close_matches(words[-1].rstrip("s"), SHAPES, n=1, cutoff=0.0)[0]
    return f"{colour} {shape}"


def check(labels: Sequence[str]) -> list[str]:
    """Validate one label list and return it as a list; raise a one-line ``ValueError`` otherwise."""
    if isinstance(labels, str):
        raise ValueError(f"expected a list of objects, got the string {labels!r}; wrap it: [{labels!r}]")
    if not isinstance(labels, (list, tuple)):
        raise ValueError(f"expected a list of objects such as ['red sphere', 'cyan cube'], got {labels!r} "
                         f"(a {type(labels).__name__})")
    labels = list(labels)
    if not labels:
        raise ValueError(f"empty object list; give 1 to {MAX_OBJECTS} objects such as ['red sphere']")
    if len(labels) > MAX_OBJECTS:
        raise ValueError(f"{len(labels)} objects {labels} exceed the limit of {MAX_OBJECTS}; drop some")
    for label in labels:
        if not isinstance(label, str):
            raise ValueError(f"object {label!r} is a {type(label).__name__}, not a string like 'red sphere'")
        if label not in INDEX:
            raise ValueError(f"{label!r} is not an i-CLEVR object; did you mean {nearest(label)!r}?")
    seen = {label for label in labels if labels.count(label) > 1}
    if seen:
        raise ValueError(f"duplicate objects {sorted(seen)} in {labels}; list each object once")
    return labels


def encode(labels: Sequence[str]) -> torch.Tensor:
    """Multi-hot float tensor of shape (24,) for one list of object names."""
    out = torch.zeros(NUM_CLASSES)
    out[[INDEX[label] for label in check(labels)]] = 1.0
    return out


def encode_batch(batch: Iterable[Sequence[str]]) -> torch.Tensor:
    """Multi-hot float tensor of shape (N, 24) for N label lists."""
    rows = [encode(labels) for labels in batch]
    return torch.stack(rows) if rows else torch.zeros(0, NUM_CLASSES)


def decode(multi_hot: torch.Tensor) -> list[str] | list[list[str]]:
    """Object names of a (24,) multi-hot vector, or a list of lists for an (N, 24) batch."""
    multi_hot = torch.as_tensor(multi_hot)
    if multi_hot.shape[-1] != NUM_CLASSES or multi_hot.dim() not in (1, 2):
        raise ValueError(f"expected shape (24,) or (N, 24), got {tuple(multi_hot.shape)}")
    if multi_hot.dim() == 2:
        return [decode(row) for row in multi_hot]
    return [CLASSES[i] for i in torch.nonzero(multi_hot > 0.5).flatten().tolist()]


def parse(text: str) -> list[str]:
    """Parse a comma-separated command-line list such as ``"red sphere, cyan cube"``."""
    return check([part.strip() for part in text.split(",") if part.strip()])
