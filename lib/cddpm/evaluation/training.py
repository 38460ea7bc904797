"""Training the course's ResNet18 evaluator from scratch: label-safe augmentation, a scene-wise split, the loop."""
from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import budget, data
from ..choices import DEFAULT_PRECISION, IMAGE_SIZE
from ..data import held_out, split_scenes
from ..device import choose_precision, describe_precision
from ..device import resolve as resolve_device
from ..paths import check_output_file, json_holding, write_json
from ..progress import tqdm
from ..provenance import mapping_sha
from .evaluator import Evaluator, build_network, summarize

REPORT_KEYS = ("checkpoint", "train_images", "validation", "history")  # how the .json beside a checkpoint is known


def augment(images: torch.Tensor, generator: torch.Generator | None = None, max_shift: int = 4) -> torch.Tensor:
    """Label-safe augmentation of a float batch: random horizontal flips and integer shifts of up to
    ``max_shift`` pixels (edges repeated). No colour changes: they could move one CLEVR colour to another."""
    n, _, h, w = images.shape
    flip = torch.rand(n, generator=generator) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(3), images)
    padded = F.pad(images, (max_shift,) * 4, mode="replicate")
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n, 1), generator=generator)
    rows, cols = torch.arange(h) + dy, torch.arange(w) + dx
    return padded[torch.arange(n)[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def train_evaluator(root: str | os.PathLike, out: str | os.PathLike, epochs: int = 12, batch_size: int = 64,
                    lr: float = 1e-3, seed: int = 0, val_fraction: float = 0.05, pos_weight: float = 2.0,
                    device: str | torch.device | None = None, mixed_precision: str = DEFAULT_PRECISION,
                    force: bool = False, progress: bool = True, train_size: int = IMAGE_SIZE,
                    minutes: float | None = None, hold_out: bool = False) -> dict:
    """Train the course's ResNet18 with BCE on ``root``'s train.json (AdamW, one-cycle); save it to ``out`` and its
    validation accuracies beside it; returns that report. The options are explained in docs/evaluator.md."""
    inputs = [Path(root) / name for name in (*data.ROOT_FILES, "iclevr")]
    out = check_output_file(out, "--out", inputs, force=force, what="checkpoint's file")
    if out.suffix == ".json":
        raise ValueError(f"--out {out} ends in .json, the name of its report; name the checkpoint like NAME.pth")
    check_output_file(out.with_suffix(".json"), "--out (its .json report)", inputs, json_holding(*REPORT_KEYS), force)
    if (epochs < 1 or batch_size < 2 or not 0 <= val_fraction < 1 or pos_weight <= 0
            or not (minutes is None or minutes > 0)):
        raise ValueError("need epochs >= 1, batch size >= 2, 0 <= val_fraction < 1, pos_weight > 0 and minutes > 0")
    if not 8 <= train_size <= IMAGE_SIZE:
        raise ValueError(f"--train-size {train_size} must lie in 8..{IMAGE_SIZE} (the course's judge: 32)")
    device = resolve_device(device)
    precision, reason = choose_precision(mixed_precision, device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    start = time.perf_counter()
    dataset = data.ICLEVRDataset(root, "train", size=train_size, preload=True)

    def as_judged(images: torch.Tensor) -> torch.Tensor:  # uint8 at train_size -> float at 64x64
        x = data.to_float(images)
        return x if train_size == IMAGE_SIZE else F.interpolate(x, IMAGE_SIZE, mode="bilinear", align_corners=False)

    names = [p.name for p in dataset.files]
    if hold_out:
        is_val = held_out(names)
        train_idx, val_idx = torch.nonzero(~is_val).flatten(), torch.nonzero(is_val).flatten()
    else:
        train_idx, val_idx = split_scenes(names, val_fraction, seed)
    if len(train_idx) < 2:
        raise ValueError(f"{root} has {len(train_idx)} training images after the validation split; render more")

    print(describe_precision(precision, reason), file=sys.stderr)
    weight = torch.tensor(pos_weight, device=device)

    def make_step(generator: torch.Generator, total: int | None) -> tuple[Evaluator, Callable[[torch.Tensor], float]]:
        """A new network and ``step(indices)``: one optimiser step on those images, and one of a one-cycle schedule
        over ``total`` steps when given; returns the loss."""
        evaluator = Evaluator(build_network().to(device, memory_format=torch.channels_last), device,
                              trained_on=mapping_sha(dataset.mapping))
        optimizer = torch.optim.AdamW(evaluator.network.parameters(), lr=lr, weight_decay=1e-4, fused=True)
        scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")  # fp16 gradients would underflow
        schedule = None if total is None else torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr,
                                                                                   total_steps=total)

        def step(idx: torch.Tensor) -> float:
            x = augment(as_judged(dataset.images[idx]), generator).to(device, memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = evaluator(x)
            loss = F.binary_cross_entropy_with_logits(logits.float(), dataset.labels[idx].to(device),
                                                      pos_weight=weight)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if schedule is not None:
                schedule.step()
            return loss.item()
        return evaluator, step

    steps = max(1, len(train_idx) // batch_size)  # full batches only: BatchNorm and a steady step size
    total, sized = epochs * steps, None
    if minutes is not None:  # timed on a throwaway network, before the seeded one is made
        draw, size = torch.Generator().manual_seed(seed), min(batch_size, len(train_idx))
        _, probe = make_step(draw, None)
        speed = budget.measure(lambda: probe(train_idx[torch.randint(len(train_idx), (size,), generator=draw)]))
        spent = time.perf_counter() - start
        total = budget.steps_for_budget(speed.steps_per_s, minutes, spent, cap=epochs * steps)
        epochs = math.ceil(total / steps)
        sized = dict(minutes=minutes, steps=total, images_per_s=speed.steps_per_s * batch_size,
                     probe_steps=speed.steps, probe_seconds=speed.seconds, seconds_before_training=spent)
        if progress:
            tqdm.write(f"evaluator: {minutes:g}-minute budget: {sized['images_per_s']:.0f} images/s over "
                       f"{speed.steps} timed steps on this machine -> {total} steps ({total / steps:.2f} epochs)",
                       file=sys.stderr)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    evaluator, train_step = make_step(generator, total)
    val_images, val_labels = as_judged(dataset.images[val_idx]), dataset.labels[val_idx]
    history = []
    for epoch in range(1, epochs + 1):
        evaluator.network.train()
        order = train_idx[torch.randperm(len(train_idx), generator=generator)]
        batches = order[: steps * min(batch_size, len(order))].view(steps, -1)[: total - (epoch - 1) * steps]
        losses = []
        bar = tqdm(batches, desc=f"evaluator epoch {epoch}/{epochs}", disable=not progress, leave=False)
        for idx in bar:
            losses.append(train_step(idx))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        row = dict(epoch=epoch, train_loss=sum(losses) / len(losses), seconds=round(time.perf_counter() - start, 1))
        if len(val_idx):
            scores = evaluator.scores(val_images, check_range=False)
            row.update(summarize(scores, val_labels), val_loss=F.binary_cross_entropy(scores, val_labels).item())
        history.append(row)
        if progress:
            tqdm.write("evaluator " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                               for k, v in row.items()), file=sys.stderr)
    evaluator.path = evaluator.save(out)
    report = dict(checkpoint=str(out), data=str(root), train_json_sha1=evaluator.trained_on, hold_out=hold_out,
                  train_size=train_size,
                  epochs=epochs if sized is None else round(total / steps, 3), steps=total, budget=sized,
                  batch_size=batch_size,
                  lr=lr, seed=seed,
                  val_fraction=val_fraction, pos_weight=pos_weight, device=str(device),
                  mixed_precision=mixed_precision, precision=precision, precision_reason=reason,
                  train_images=len(train_idx),
                  val_images=len(val_idx), seconds=round(time.perf_counter() - start, 1),
                  validation={k: history[-1][k] for k in ("topk", "exact_set", "extra_object_rate", "n")
                              if k in history[-1]},
                  history=history)
    write_json(out.with_suffix(".json"), report)
    return report
