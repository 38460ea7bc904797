"""Feature alignment to a frozen evaluator (REPA, Yu et al. 2024): an auxiliary loss for faster learning.

The denoiser's 8x8 encoder features of the noisy image, through a small head, are pulled towards the
features that a trained evaluator (the course's ResNet18 format) computes from the clean image: its
``layer2`` output, 128 channels at 8x8 for a 64x64 input. The evaluator only supplies targets from
real training images; no gradient passes through it and it never sees a generated image.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from .evaluator import SIZE, Evaluator

CHANNELS = 128  # resnet18 layer2


class EvaluatorFeatures(nn.Module):
    """The frozen stem and first two stages of an evaluator: (N, 3, H, W) in [-1, 1] -> (N, 128, 8, 8)."""

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu"):
        super().__init__()
        net = Evaluator.load(path, device).network
        self.body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2)
        self.body.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> EvaluatorFeatures:
        return super().train(False)  # batch norm keeps its running statistics

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] != SIZE:
            images = F.interpolate(images.float(), size=(SIZE, SIZE), mode="bilinear", antialias=True)
        return self.body(images)


def alignment_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """1 - mean cosine similarity of the two feature maps, position by position (teacher pooled to the student's grid)."""
    if teacher.shape[-2:] != student.shape[-2:]:
        teacher = F.adaptive_avg_pool2d(teacher, student.shape[-2:])
    return 1 - F.cosine_similarity(student.float(), teacher.float(), dim=1).mean()
