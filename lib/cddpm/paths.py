"""Outputs: checked before long work starts and written atomically. A folder is claimed by :func:`claim_folder` (new,
empty, or cddpm's); files and whole folders are written by :func:`atomic_write` to a temporary sibling
``.{name}.{pid}.tmp`` and renamed into place (a checkpoint by the main process: :func:`publish`)."""
from __future__ import annotations

import json
import os
import re
import shutil
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


def claim_folder(path: str | os.PathLike, flag: str, what: str, foreign: Callable[[Path], list[str] | None],
                 force: bool | None = None) -> Path:
    """``path`` when it is new, empty, or an earlier ``what`` holding nothing else (where ``force`` is given, with it);
    else a one-line error. ``foreign(path)``: what in ``path`` a ``what`` did not write, None when it is no ``what``."""
    path = check_folder_target(path, flag)
    if not path.is_dir() or not any(path.iterdir()):
        return path
    found = foreign(path)
    if found is None:
        raise FileExistsError(f"{flag} {path} is not empty and is not a {what}; choose a new or empty folder")
    if found:
        shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise FileExistsError(f"{flag} {path} holds files a {what} did not write ({shown}); move them out or choose "
                              "a new or empty folder")
    if force is False:
        raise FileExistsError(f"{flag} {path} holds an earlier {what}; pass --force to replace it")
    return path


def temporary_sibling(path: str | os.PathLike, kind: str = "tmp", owner: int | None = None) -> Path:
    """Where ``path`` is written before it is renamed into place (``kind`` "old": where the copy it replaces waits
    meanwhile): ``.{name}.{pid}.{kind}`` in the same folder, ``pid`` this process's or ``owner``'s."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid() if owner is None else owner}.{kind}")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Create ``path`` (a file or a folder, and the folder above) by ``write(tmp)`` on a temporary sibling, then
    :func:`publish` it, so a reader sees the old one or the whole new one; on any error (an interrupt included) the
    temporary sibling goes. Those of writers that were killed go first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stale = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.(tmp|old)")
    for sibling in path.parent.iterdir():
        found = stale.fullmatch(sibling.name)
        if found and (int(found[1]) == os.getpid() or not _alive(int(found[1]))):
            _remove(sibling)
    tmp = temporary_sibling(path)
    try:
        write(tmp)
        publish(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    return path


def publish(tmp: Path, path: Path) -> None:
    """Rename the finished ``tmp`` to ``path``; an older folder ``path`` waits beside it until the new one stands."""
    old = temporary_sibling(path, "old")
    if path.is_dir():
        os.replace(path, old)
    os.replace(tmp, path)
    _remove(old)


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it does, as another user's
        pass
    return True


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
