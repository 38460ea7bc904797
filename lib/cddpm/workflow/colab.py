"""Colab: keep a session's ``outputs/`` on Google Drive (``data/`` stays local: reading small files through Drive is
slow, and the same seed renders it again); torch-free, so the set-up cell stays quick."""
from __future__ import annotations

import filecmp
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

DRIVE_HOME = "/content/drive/MyDrive/cddpm"
KEPT_ON_DRIVE = ("outputs",)


def keep_on_drive(folders: Sequence[str] = KEPT_ON_DRIVE, home: str | os.PathLike = DRIVE_HOME,
                  root: str | os.PathLike = ".") -> list[Path]:
    """Make each of ``folders`` under ``root`` a link to the same name under ``home`` (moving what it holds there first;
    a clash other than an identical file is a one-line refusal before anything moves); returns those folders."""
    kept = []
    for name in folders:
        local, target = Path(root) / name, Path(home) / name
        if local.is_symlink():
            if local.resolve() != target.resolve():
                raise FileExistsError(f"{local} links to {os.readlink(local)}, not {target}; remove that link and "
                                      "run the set-up cell again")
        elif local.exists() and not local.is_dir():
            raise FileExistsError(f"{local} is a file, not a folder; move it aside and run the set-up cell again")
        else:
            target.mkdir(parents=True, exist_ok=True)
            if local.is_dir():
                _move_into(local, target)
                local.rmdir()
            local.symlink_to(target.resolve(), target_is_directory=True)
        kept.append(target)
    return kept


def _move_into(local: Path, target: Path) -> None:
    """Move ``local``'s entries into ``target``; refuse (moving nothing) when a name is in both with other content."""
    def same(a: Path, b: Path) -> bool:
        return a.is_file() and b.is_file() and filecmp.cmp(a, b, shallow=False)

    clashes = sorted(p.name for p in local.iterdir() if (target / p.name).exists() and not same(p, target / p.name))
    if clashes:
        raise FileExistsError(f"{local} and {target} both hold {', '.join(clashes[:3])}"
                              f"{', ...' if len(clashes) > 3 else ''}; move one of each aside and run the set-up "
                              "cell again")
    for p in sorted(local.iterdir()):
        if (target / p.name).exists():
            p.unlink()  # the same bytes are on Drive
        else:
            shutil.move(p, target / p.name)
