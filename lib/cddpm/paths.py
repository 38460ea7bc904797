"""Output files: checked before long work starts, and written atomically; one rule for every command that writes one.

A file that is read back (json records and reports, the evaluator checkpoint, the image cache) is written by
:func:`atomic_write`: to a temporary sibling ``.{name}.{pid}.tmp`` with the usual permissions (the umask's, not
``tempfile.mkstemp``'s 0600), renamed into place, and removed on any error.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def check_file_target(path: str | os.PathLike, flag: str, what: str = "file") -> Path:
    """``path`` as a Path, or a one-line error when it is a folder, lies under a file, or its nearest existing
    folder cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{flag} {path} is a folder; give the {what} path")
    above = next((p for p in path.parents if p.exists()), Path("."))
    if not above.is_dir():
        raise NotADirectoryError(f"{flag} {path} lies under the file {above}; give a path inside a folder")
    if not os.access(above, os.W_OK):
        raise PermissionError(f"cannot write to {above}; choose a writable {flag}")
    return path


def check_folder_target(path: str | os.PathLike, flag: str) -> Path:
    """``path`` as a Path, or a one-line error when it is a file, lies under a file, or its nearest existing folder
    cannot be written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{flag} {path} is a file; choose a folder path")
    above = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not above.is_dir():
        raise NotADirectoryError(f"{flag} {path} lies under the file {above}; give a path inside a folder")
    if not os.access(above, os.W_OK):
        raise PermissionError(f"cannot write to {above}; choose a writable {flag}")
    return path


def is_within(path: str | os.PathLike, source: str | os.PathLike) -> bool:
    """Whether ``path`` is ``source`` (the same file, through links too) or lies inside the folder ``source``."""
    path, source = Path(path), Path(source)
    if path.exists() and source.exists() and os.path.samefile(path, source):
        return True
    return source.is_dir() and path.resolve().is_relative_to(source.resolve())


def json_holding(*keys: str) -> Callable[[Path], bool]:
    """A test of whether a file is a json object holding every one of ``keys``: how a report we wrote is recognised."""
    def test(path: Path) -> bool:
        try:
            content = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            return False
        return isinstance(content, dict) and set(keys) <= set(content)

    return test


def check_output_file(path: str | os.PathLike, flag: str, inputs: Iterable[str | os.PathLike | None] = (),
                      ours: Callable[[Path], bool] | None = None, force: bool = False, what: str = "file") -> Path:
    """:func:`check_file_target`, and a one-line error when ``path`` is one of the command's ``inputs`` (or lies in an
    input folder), or exists and is not ``ours`` (``None``: nothing existing is) unless ``force``."""
    path = check_file_target(path, flag, what)
    for source in inputs:
        if source is not None and is_within(path, source):
            raise FileExistsError(f"{flag} {path} would overwrite the command's input {source}; choose another {flag}")
    if path.exists() and not force and not (ours is not None and ours(path)):
        whose = "" if ours is None else " and cddpm did not write it"
        raise FileExistsError(f"{flag} {path} exists{whose}; pass --force to replace it or choose another {flag}")
    return path


def temporary_sibling(path: str | os.PathLike) -> Path:
    """Where :func:`atomic_write` writes ``path`` before renaming it: ``.{name}.{pid}.tmp`` in the same folder."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Create ``path`` (and its folder) by ``write(tmp)`` on a temporary sibling renamed into place, so a reader
    sees the old file or the whole new one; on any error (an interrupt included) the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` to ``path`` as indented json (with a final newline) atomically."""
    return write_text(path, json.dumps(obj, indent=2) + "\n")


def read_error(err: BaseException) -> str:
    """Why a file could not be read, on one line and whole; torch's weights-only refusal, whose first lines are
    advice to programmers, becomes what it refused."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # torch colours part of that advice
    refused = re.search(r"WeightsUnpickler error: (.+?)(?:\. Please use|\n|$)", text)
    if refused:
        return f"a safe load refuses it: {refused.group(1).strip()}"
    return " ".join(text.split()) or type(err).__name__
