"""Sampling speed: images/s per sampler, step count and guidance scale on the current device.

Speed does not depend on the weights, so a preset's untrained model serves unless --run is given.
Run under ``flock /tmp/cddpm-heavy.lock`` on a shared machine so that timings stay honest:

    flock /tmp/cddpm-heavy.lock .venv/bin/python benchmarks/sample_speed.py --preset layout64 \
        --configs dpmsolver:10 dpmsolver:20 dpmsolver:25 ddpm:1000 --guidance 1 3 --images 32
"""
from __future__ import annotations

import argparse
import dataclasses
import platform
import time

import torch

from cddpm import runs, sample
from cddpm.choices import DEFAULT_PRESET
from cddpm.device import resolve as resolve_device
from cddpm.diffusion import train_scheduler
from cddpm.model import ConditionalUNet, preset
from cddpm.paths import write_json


def _config(text: str) -> tuple[str, int]:
    name, _, steps = text.partition(":")
    if name not in sample.SAMPLERS or not steps.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not SAMPLER:STEPS with SAMPLER in {', '.join(sample.SAMPLERS)}")
    return name, int(steps)


def measure(model: torch.nn.Module, scheduler_config: dict, sampler: str, steps: int, guidance: float,
            images: int, batch_size: int) -> dict:
    """Seconds and images/s of sampling ``images`` conditions of the test-split kind (after a short warm-up)."""
    labels = [["red sphere", "cyan cube", "gray cylinder"][: 1 + i % 3] for i in range(images)]
    warm = sample.SampleRequest(sampler=sampler, steps=2, guidance=guidance, batch_size=batch_size)
    sample.generate(model, scheduler_config, labels[:batch_size], warm)
    start = time.perf_counter()
    sample.generate(model, scheduler_config, labels, dataclasses.replace(warm, steps=steps))
    seconds = time.perf_counter() - start
    return dict(sampler=sampler, steps=steps, guidance=guidance, images=images, batch_size=batch_size,
                seconds=round(seconds, 3), images_per_s=round(images / seconds, 3))


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default=DEFAULT_PRESET, help="model preset to time (ignored with --run)")
    p.add_argument("--run", default=None, help="time this run's model instead of a preset")
    p.add_argument("--configs", type=_config, nargs="+",
                   default=[("dpmsolver", 10), ("dpmsolver", 20), ("dpmsolver", 25), ("ddim", 50), ("ddpm", 1000)],
                   help="SAMPLER:STEPS pairs (default dpmsolver:10 dpmsolver:20 dpmsolver:25 ddim:50 ddpm:1000)")
    p.add_argument("--guidance", type=float, nargs="+", default=[1.0], help="scales; w != 1 doubles the batch")
    p.add_argument("--images", type=int, default=32, help="images per measurement (the test split has 32)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default=None, help="default: cuda when present, else cpu")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    if args.run:
        model, config, _ = runs.load_model(args.run, device=device)
        scheduler_config, name = config["scheduler"], args.run
    else:
        torch.manual_seed(0)
        model = ConditionalUNet(preset(args.preset)).to(device).eval()
        scheduler_config, name = dict(train_scheduler().config), f"preset {args.preset}"
    cpu = platform.processor() or platform.machine()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{cpu}, {torch.get_num_threads()} threads"
    print(f"{name}: {model.num_parameters() / 1e6:.2f} M parameters, {model.config.sample_size}x"
          f"{model.config.sample_size} samples, on {device} ({where})")
    print("| sampler | steps | guidance | images | seconds | images/s |\n|---|---|---|---|---|---|")
    rows = []
    for sampler, steps in args.configs:
        for guidance in args.guidance:
            row = measure(model, scheduler_config, sampler, steps, guidance, args.images, args.batch_size)
            rows.append(row)
            print(f"| {sampler} | {steps} | {guidance:g} | {row['images']} | {row['seconds']:.2f} | "
                  f"{row['images_per_s']:.2f} |", flush=True)
    if args.json:
        write_json(args.json, dict(model=name, device=str(device), where=where, rows=rows))
    return rows


if __name__ == "__main__":
    main()
