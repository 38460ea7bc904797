"""Shared fixtures: a tiny hand-made i-CLEVR root and the course's label files where present."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cddpm import labels as L

torch.set_num_threads(1)  # CI runs the suite with 2 pytest workers on 2 cores

# ../shared/iclevr-official beside the checkout, or where CDDPM_OFFICIAL points (a git worktree elsewhere)
OFFICIAL = Path(os.environ.get("CDDPM_OFFICIAL") or Path(__file__).resolve().parents[1].parent / "shared" / "iclevr-official")


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Each test starts accelerate afresh: its state is one per process, and its mixed precision cannot change."""
    yield
    if "accelerate.state" in sys.modules:
        sys.modules["accelerate.state"].AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture
def official() -> Path:
    """The course's label files in ../shared/iclevr-official, or a clean skip."""
    if not (OFFICIAL / "train.json").is_file():
        pytest.skip(f"{OFFICIAL} is absent")
    return OFFICIAL


@pytest.fixture
def umask_022():
    """Run the test under the usual umask 022, so every file cddpm writes should be 0o644."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def make_root(path: Path, mapping: dict[str, list[str]], size=(32, 24), mode="RGBA") -> Path:
    """Write a small i-CLEVR root: random PNGs of ``size`` for each file of ``mapping``."""
    (path / "iclevr").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in mapping:
        pixels = rng.integers(0, 256, (size[1], size[0], len(mode)), dtype=np.uint8)
        Image.fromarray(pixels, mode).save(path / "iclevr" / name)
    (path / "objects.json").write_text(json.dumps(L.objects_dict()))
    (path / "train.json").write_text(json.dumps(mapping))
    (path / "test.json").write_text(json.dumps([["red cube"], ["blue sphere", "cyan cube"]]))
    (path / "new_test.json").write_text(json.dumps([["gray cylinder", "red cube", "yellow sphere"]]))
    return path


@pytest.fixture
def tiny_root(tmp_path) -> Path:
    mapping = {
        "CLEVR_train_000000_0.png": ["red sphere"],
        "CLEVR_train_000000_1.png": ["red sphere", "cyan cube"],
        "CLEVR_train_000000_2.png": ["red sphere", "cyan cube", "gray cylinder"],
        "CLEVR_train_000001_0.png": ["yellow cylinder"],
    }
    return make_root(tmp_path / "root", mapping)
