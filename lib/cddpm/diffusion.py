"""Noise schedules, the training loss and the samplers, all on diffusers schedulers.

Training uses ``DDPMScheduler`` (1000 steps, ``squaredcos_cap_v2``); every sampler is built from the
training scheduler's config so that they share one noise schedule.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.training_utils import compute_snr

from .choices import PREDICTION_TYPES


def train_scheduler(num_train_timesteps: int = 1000, beta_schedule: str = "squaredcos_cap_v2",
                    prediction_type: str = "epsilon") -> DDPMScheduler:
    """The forward (noising) process used in training."""
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"unknown prediction type {prediction_type!r}; use one of {', '.join(PREDICTION_TYPES)}")
    return DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule,
                         prediction_type=prediction_type, clip_sample=True)


def drop_labels(labels: torch.Tensor, p_uncond: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each row by the null (all-zero) condition with probability ``p_uncond``."""
    if p_uncond <= 0:
        return labels
    keep = torch.rand(labels.shape[0], generator=generator, device=labels.device) >= p_uncond
    return labels * keep[:, None].to(labels.dtype)


def draw_timesteps(scheduler: DDPMScheduler, n: int, shift: float = 1.0, generator: torch.Generator | None = None,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """``n`` training timesteps: uniform, or with ``shift`` s > 1 those whose log-SNR is the uniform one's minus
    2 log s (the resolution shift of Simple Diffusion / SD3: noisier steps, where layout and objects form)."""
    t = torch.randint(0, scheduler.config.num_train_timesteps, (n,), generator=generator, device=device)
    if shift == 1.0:
        return t
    ab = scheduler.alphas_cumprod.to(device=device, dtype=torch.float64)
    neg_log_snr = torch.log1p(-ab) - torch.log(ab)  # increasing in t
    target = neg_log_snr[t] + 2 * math.log(shift)
    return torch.searchsorted(neg_log_snr, target).clamp(max=len(ab) - 1)


def training_loss(model, scheduler: DDPMScheduler, x0: torch.Tensor, labels: torch.Tensor,
                  p_uncond: float = 0.1, snr_gamma: float | None = None, timestep_shift: float = 1.0,
                  generator: torch.Generator | None = None, canvas: torch.Tensor | None = None) -> torch.Tensor:
    """MSE between the model's prediction and its target (noise, or v) at timesteps from :func:`draw_timesteps`.

    ``snr_gamma`` weights each image by min-SNR-gamma (Hang et al. 2023): the loss of an x0 prediction
    clipped at SNR gamma, so nearly clean timesteps stop dominating the gradient. ``canvas``: the images that a
    canvas model's ``x0`` adds one object to (kept when the label is dropped).
    """
    n = x0.shape[0]
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    t = draw_timesteps(scheduler, n, timestep_shift, generator, x0.device)
    xt = scheduler.add_noise(x0, noise, t)
    labels = drop_labels(labels, p_uncond, generator)
    pred = model(xt, t, labels) if canvas is None else model(xt, t, labels, canvas)
    target = noise if scheduler.config.prediction_type == "epsilon" else scheduler.get_velocity(x0, noise, t)
    if snr_gamma is None:
        return F.mse_loss(pred.float(), target.float())
    snr = compute_snr(scheduler, t).float()
    weight = snr.clamp(max=snr_gamma) / (snr if scheduler.config.prediction_type == "epsilon" else snr + 1)
    return (weight * (pred.float() - target.float()).square().mean((1, 2, 3))).mean()
