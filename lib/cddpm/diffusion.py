"""Noise schedules, the training loss and the samplers on diffusers schedulers: every sampler is built from the
training ``DDPMScheduler``'s config, so they share one noise schedule."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from .choices import PREDICTION_TYPES


def check_prediction_type(prediction_type: str) -> None:
    """A one-line error for a target the training loss does not know."""
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"unknown prediction type {prediction_type!r}; use one of {', '.join(PREDICTION_TYPES)}")


def train_scheduler(prediction_type: str = "epsilon") -> DDPMScheduler:
    """The forward (noising) process used in training: 1000 steps of the cosine schedule."""
    check_prediction_type(prediction_type)
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type,
                         clip_sample=True)


def drop_labels(labels: torch.Tensor, p_uncond: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each row by the null (all-zero) condition with probability ``p_uncond``."""
    if p_uncond <= 0:
        return labels
    keep = torch.rand(labels.shape[0], generator=generator, device=labels.device) >= p_uncond
    return labels * keep[:, None].to(labels.dtype)


def training_loss(model, scheduler: DDPMScheduler, x0: torch.Tensor, labels: torch.Tensor, p_uncond: float = 0.1,
                  generator: torch.Generator | None = None, canvas: torch.Tensor | None = None) -> torch.Tensor:
    """MSE between the model's prediction and its target (noise, or v) at uniform timesteps; ``canvas``: the images a
    canvas model's ``x0`` adds one object to (kept when the label is dropped)."""
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), generator=generator, device=x0.device)
    xt = scheduler.add_noise(x0, noise, t)
    labels = drop_labels(labels, p_uncond, generator)
    pred = model(xt, t, labels) if canvas is None else model(xt, t, labels, canvas)
    target = noise if scheduler.config.prediction_type == "epsilon" else scheduler.get_velocity(x0, noise, t)
    return F.mse_loss(pred.float(), target.float())
