"""Output files checked before long work starts: one rule for every command that writes a file."""
from __future__ import annotations

import os
from pathlib import Path


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
