"""Colab without Colab: the colab profile on a faked T4, and outputs/ kept on a stand-in for Google Drive."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cddpm import device
from cddpm.workflow import colab, profiles


def test_no_profile_forces_a_precision_and_the_colab_one_saves_every_10_minutes(monkeypatch):
    assert not any("mixed_precision" in p.train for p in profiles.PROFILES.values())
    config = profiles.train_config(profiles.get("colab"), resume=False)
    assert config.mixed_precision == "auto" and config.save_minutes == 10 and config.save_every <= config.max_steps
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    assert device.choose_precision(config.mixed_precision, torch.device("cuda"))[0] == "fp16"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert device.choose_precision(config.mixed_precision, torch.device("cuda"))[0] == "bf16"


def repository(path: Path) -> Path:
    """A fresh clone's outputs/: the tracked README only."""
    (path / "outputs").mkdir(parents=True)
    (path / "outputs" / "README.md").write_text("what outputs/ holds\n")
    return path


def test_outputs_move_to_drive_and_a_later_session_finds_them(tmp_path):
    drive = tmp_path / "MyDrive" / "cddpm"
    first = repository(tmp_path / "session1")
    (first / "outputs" / "runs").mkdir()
    (first / "outputs" / "runs" / "config.json").write_text(json.dumps({"step": 1}))
    assert colab.keep_on_drive(home=drive, root=first) == [drive / "outputs"]
    assert (first / "outputs").is_symlink() and (drive / "outputs" / "runs" / "config.json").is_file()
    assert colab.keep_on_drive(home=drive, root=first) == [drive / "outputs"]  # running the cell again: no change
    second = repository(tmp_path / "session2")  # a new runtime clones again: the same README, nothing else
    colab.keep_on_drive(home=drive, root=second)
    assert json.loads((second / "outputs" / "runs" / "config.json").read_text()) == {"step": 1}
    assert sorted(p.name for p in (drive / "outputs").iterdir()) == ["README.md", "runs"]


def test_a_clash_is_refused_before_anything_moves(tmp_path):
    drive = tmp_path / "drive"
    (drive / "outputs" / "runs").mkdir(parents=True)
    local = repository(tmp_path / "repo")
    (local / "outputs" / "runs").mkdir()
    (local / "outputs" / "evaluator.pth").write_text("mine")
    with pytest.raises(FileExistsError, match="both hold runs; move one of each aside") as err:
        colab.keep_on_drive(home=drive, root=local)
    assert "\n" not in str(err.value)
    assert (local / "outputs" / "evaluator.pth").is_file() and not (local / "outputs").is_symlink()
    (local / "elsewhere").mkdir()
    (local / "outputs" / "runs").rmdir()
    colab.keep_on_drive(home=drive, root=local)
    assert (drive / "outputs" / "evaluator.pth").read_text() == "mine"
    other = repository(tmp_path / "other")
    (other / "outputs" / "README.md").unlink()
    (other / "outputs").rmdir()
    (other / "outputs").symlink_to(local / "elsewhere")
    with pytest.raises(FileExistsError, match="links to .*elsewhere, not"):
        colab.keep_on_drive(home=drive, root=other)


def test_every_notebook_keeps_outputs_on_drive_by_default_on_colab():
    notebooks = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
    setups = {"".join(json.loads(p.read_text())["cells"][1]["source"]) for p in notebooks}
    assert len(notebooks) == 4 and len(setups) == 1
    setup = setups.pop()
    assert "\nMOUNT_DRIVE = True\n" in setup and "colab.keep_on_drive()" in setup
    assert setup.index('sys.path.insert(0, "/content/cddpm/lib")') < setup.index("from cddpm.workflow import colab")
