"""Figures: make_grid grids in the course's shape, the one-row denoising strip, captioned grids."""
from __future__ import annotations

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
