"""Figures: make_grid grids in the course's shape, the one-row denoising strip, captioned grids, the loss curve."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from cddpm import figures


def test_grid_of_32_images_is_8_per_row_and_4_rows(tmp_path):
    images = torch.rand(32, 3, 64, 64) * 2 - 1
    path = figures.save_grid(images, tmp_path / "sub" / "grid.png")
    assert Image.open(path).size == (8 * 66 + 2, 4 * 66 + 2)  # make_grid's 2-pixel padding
    pixels = np.asarray(Image.open(path))
    assert (pixels[:2] == 255).all()  # white padding
    first = pixels[2:66, 2:66].transpose(2, 0, 1).astype(int)
    expected = images[0].add(1).mul(127.5).round().numpy()
    assert np.abs(first - expected).max() <= 1  # the first cell holds the first image


def test_denoising_strip_is_one_row(tmp_path):
    path = figures.save_grid(torch.zeros(10, 3, 64, 64), tmp_path / "denoise.png", nrow=10)
    assert Image.open(path).size == (10 * 66 + 2, 66 + 2)


def test_captioned_grid_writes_a_png_and_needs_one_caption_per_image(tmp_path):
    images = torch.zeros(3, 3, 64, 64)
    path = figures.save_captioned_grid(images, ["red sphere", "cyan cube, gray cylinder", "x"], tmp_path / "c.png")
    width, height = Image.open(path).size
    assert width > height > 64
    with pytest.raises(ValueError, match="3 images but 2 captions"):
        figures.save_captioned_grid(images, ["a", "b"], tmp_path / "d.png")


def test_loss_figure_plots_records_with_a_running_mean_for_long_runs():
    few = figures.loss_figure([{"step": s, "loss": 1 / s, "log_every": 5} for s in range(5, 30, 5)], title="run")
    ax = few.axes[0]
    assert len(ax.lines) == 1 and list(ax.lines[0].get_xdata()) == [5, 10, 15, 20, 25]
    assert ax.get_yscale() == "log" and ax.get_title() == "run" and "mean of 5 steps" in ax.get_ylabel()
    many = figures.loss_figure([{"step": s, "loss": 1 / s} for s in range(1, 201)]).axes[0]
    assert [line.get_label() for line in many.lines] == ["loss", "mean of 4 records"]
    assert many.lines[1].get_ydata()[3] == pytest.approx(sum(1 / s for s in range(1, 5)) / 4)
    empty = figures.loss_figure([]).axes[0]  # what LiveLoss shows before the first record
    assert not empty.lines[0].get_xdata().size and empty.get_yscale() == "linear"


def test_importing_the_figure_modules_keeps_the_notebooks_backend():
    code = ("import matplotlib; import cddpm.figures, cddpm.workflow.report, cddpm.train; "
            "print(matplotlib.get_backend())")
    env = {**os.environ, "MPLBACKEND": "svg"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "svg"  # matplotlib.use("Agg") at import would have switched it


def test_live_loss_keeps_the_records_and_redraws_outside_ipython(capsys):
    from cddpm.workflow.widgets import LiveLoss

    live = LiveLoss()
    live({"step": 2, "loss": 0.5, "log_every": 2})
    live({"step": 4, "loss": 0.25, "log_every": 2})
    assert [r["step"] for r in live.records] == [2, 4]
    assert live._png().startswith(b"\x89PNG")
