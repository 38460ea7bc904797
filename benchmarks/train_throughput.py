"""Training throughput (images/s) of a preset on this machine's device; ``--compare`` adds a naive fp32 loop.

The fast path is ``cddpm.train.Trainer``, exactly what ``cddpm train`` runs (uint8 data resident on the
device, on-device batches, accelerate autocast, optional channels_last / torch.compile, fused AdamW on
CUDA, EMA). The naive loop is the textbook one: a shuffled DataLoader of float images on the CPU, a
copy to the device every step, fp32, per-parameter AdamW and EMA, and ``loss.item()`` every step.
Both train the same model on the same random data, so the ratio is the speed-up of the fast path.

    python benchmarks/train_throughput.py --preset layout64 --batch-size 32
    python benchmarks/train_throughput.py --preset colab --compare --mixed-precision bf16 --channels-last --compile
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader, TensorDataset

from cddpm import canvas
from cddpm.data import to_float
from cddpm.diffusion import train_scheduler, training_loss
from cddpm.labels import NUM_CLASSES
from cddpm.model import ConditionalUNet, parse_overrides, preset
from cddpm.train import TrainConfig, Trainer


def fake_data(config: TrainConfig, batches: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images at the model's size: a grey floor with one random patch (so a layout model finds a box in each),
    and random 1-3 object multi-hot labels."""
    g = torch.Generator().manual_seed(0)
    n, size = config.batch_size * batches, config.model.sample_size
    images = torch.full((n, 3, size, size), 128, dtype=torch.uint8)
    side = size // 4
    for i, (y, x) in enumerate(torch.randint(0, size - side, (n, 2), generator=g).tolist()):
        images[i, :, y:y + side, x:x + side] = torch.randint(0, 256, (3, side, side), dtype=torch.uint8, generator=g)
    labels = torch.zeros(n, NUM_CLASSES)
    for i in range(n):
        labels[i, torch.randperm(NUM_CLASSES, generator=g)[: 1 + i % 3]] = 1
    return images, labels


def timed(step, steps: int, warmup: int, images_per_step: int) -> float:
    """images/s over ``steps`` calls of ``step`` after ``warmup`` untimed ones (``step`` returns a loss tensor)."""
    for _ in range(warmup):
        step().item()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    loss.item()  # wait for the device
    return steps * images_per_step / (time.perf_counter() - start)


def naive(config: TrainConfig, images: torch.Tensor, labels: torch.Tensor, steps: int, warmup: int) -> float:
    """The fp32 DataLoader loop of the same model."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(config.seed)
    model = ConditionalUNet(config.model).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, foreach=False)
    ema = EMAModel(model.parameters(), decay=config.ema_decay)
    scheduler = train_scheduler(prediction_type=config.prediction_type)
    loader = DataLoader(TensorDataset(to_float(images), labels), batch_size=config.batch_size, shuffle=True,
                        drop_last=True)
    batches = iter(())

    def step():
        nonlocal batches
        try:
            x0, y = next(batches)
        except StopIteration:
            batches = iter(loader)
            x0, y = next(batches)
        x0 = x0.to(device)
        base = torch.zeros_like(x0) if config.model.canvas else None  # a canvas model also reads an image
        loss = training_loss(model, scheduler, x0, y.to(device), config.p_uncond, canvas=base)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad()
        ema.step(model.parameters())
        return torch.tensor(loss.item())

    return timed(step, steps, warmup, config.batch_size)


def fast(config: TrainConfig, images: torch.Tensor, labels: torch.Tensor, steps: int, warmup: int) -> float:
    """``cddpm.train.Trainer``: what ``cddpm train`` runs."""
    # a canvas model: every random image counts as drawn on the empty floor (the same cost per image)
    parents = torch.full((len(images),), canvas.EMPTY) if config.model.canvas else None
    trainer = Trainer(config, images, labels, parents=parents)
    return timed(trainer.train_step, steps, warmup, config.batch_size * trainer.accelerator.num_processes)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default=TrainConfig.preset)
    p.add_argument("--model", nargs="+", action="extend", default=[], metavar="FIELD=VALUE")
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--steps", type=int, default=20, help="timed optimiser steps")
    p.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first (compilation, allocator)")
    p.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default="no")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--compare", action="store_true", help="also run the naive fp32 loop and print the ratio")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(out=out, model=preset(args.preset, **parse_overrides(args.model)), preset=args.preset,
                             max_steps=10**6, batch_size=args.batch_size, mixed_precision=args.mixed_precision,
                             channels_last=args.channels_last, compile=args.compile)
        images, labels = fake_data(config, batches=8)
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu, {torch.get_num_threads()} threads"
        result = {"preset": args.preset, "model": config.model.to_dict(), "batch_size": args.batch_size,
                  "device": device, "steps": args.steps}
        if args.compare:
            result["naive_images_per_s"] = naive(config, images, labels, args.steps, args.warmup_steps)
            print(f"naive fp32 loop: {result['naive_images_per_s']:.1f} images/s", flush=True)
        result["fast_images_per_s"] = fast(config, images, labels, args.steps, args.warmup_steps)
        flags = f"mixed_precision={args.mixed_precision} channels_last={args.channels_last} compile={args.compile}"
        print(f"fast path ({flags}): {result['fast_images_per_s']:.1f} images/s")
        if args.compare:
            result["ratio"] = result["fast_images_per_s"] / result["naive_images_per_s"]
            print(f"ratio: {result['ratio']:.2f}x")
        print(json.dumps(result))


if __name__ == "__main__":
    main()
