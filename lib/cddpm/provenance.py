"""What data a judge, a run or a sample folder came from, so that nothing derived from one data set is taken for
another: the hashes that are recorded, the key derived outputs are filed under, and the checks that compare them.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from . import data

SPLIT_FILES = ("train.json", "test.json", "new_test.json", "meta.json")  # what a data key hashes (meta: ours only)


def mapping_sha(mapping: Mapping[str, Sequence[str]]) -> str:
    """Short SHA-1 of a train.json's names and labels: what runs (``dataset.train_json_sha1``) and judges
    (``train_json_sha1``) record of the data they learned."""
    return hashlib.sha1(json.dumps(mapping).encode()).hexdigest()[:16]


def train_sha(root: str | os.PathLike) -> str:
    """:func:`mapping_sha` of a root's train.json."""
    return mapping_sha(data.load_mapping(root))


def conditions_sha(conditions: Sequence[Sequence[str]]) -> str:
    """Short SHA-1 of a list of object lists, in order: equal exactly when the same images are asked for."""
    return hashlib.sha1(json.dumps([list(c) for c in conditions]).encode()).hexdigest()[:16]


def data_key(root: str | os.PathLike) -> str:
    """``NAME-HASH``: the root's folder name and a hash of its json files (and of our render's meta.json, so a
    synthetic twin of the course's labels is another data set). The folder name of its derived outputs."""
    root = Path(root)
    if not (root / "train.json").is_file():
        raise FileNotFoundError(f"missing {root / 'train.json'}; point --data (data_root) at an i-CLEVR root")
    digest = hashlib.sha1()
    for name in SPLIT_FILES:
        path = root / name
        digest.update(name.encode() + b":" + (path.read_bytes() if path.is_file() else b"") + b";")
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', root.resolve().name)}-{digest.hexdigest()[:8]}"


def rendered(root: str | os.PathLike) -> bool:
    """Whether ``root`` is a cddpm render (a readable meta.json of ours): its conditions can be rendered as ground
    truth the way its images were."""
    try:
        meta = json.loads((Path(root) / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and isinstance(meta.get("renderer"), int)


def judge_note(path: str | os.PathLike, trained_on: str | None, root: str | os.PathLike) -> str | None:
    """One line when the judge at ``path`` (which learned a train.json of hash ``trained_on``) may not suit ``root``:
    a warning when it learned another train.json, a note when it records none; None when it learned ``root``'s."""
    if trained_on is None:
        return (f"note: the judge {path} records no train.json it learned (an older or the course's checkpoint), "
                f"so whether it suits {root} is not checked")
    here = train_sha(root)
    if trained_on != here:
        return (f"warning: the judge {path} learned another train.json (sha1 {trained_on}) than {root}'s ({here}); "
                "its accuracies say how a judge of other data reads these images")
    return None


def say(line: str | None) -> None:
    """Print a note or warning of this module on stderr (nothing for None)."""
    if line:
        print(line, file=sys.stderr)


def sample_record(images: str | os.PathLike) -> tuple[Path, dict] | None:
    """The ``metrics.json`` that ``cddpm sample`` wrote for an images folder ``OUT/images/NAME``, when it records the
    conditions of those images; None otherwise."""
    images = Path(images)
    path = images.parent.parent / "metrics.json"
    if images.parent.name != "images" or not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ValueError(f"{path} is not readable json; restore it, or give --data ROOT --split SPLIT or "
                         "--conditions FILE") from None
    if not isinstance(record, dict) or not isinstance(record.get("conditions"), list) or record.get("split") != images.name:
        return None
    return path, record
