"""Where the time of one training step and of one sampling pass goes, on this machine's CPU (torch.profiler).

A training step is ``cddpm.train.Trainer.train_step`` (what ``cddpm train`` runs); a sampling pass of a canvas model
is ``--steps`` network evaluations on a batch doubled for classifier-free guidance (the scheduler's own arithmetic is
negligible beside them), so one evaluation is profiled and the pass's time is measured:

    python benchmarks/profile_step.py --preset layout64 --batch-size 32
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/profile_step.py   # as an AVX2-only CPU
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch
from train_throughput import fake_data

from cddpm import canvas
from cddpm.device import choose_precision
from cddpm.model import preset
from cddpm.train import TrainConfig, Trainer


def table(prof: torch.profiler.profile, rows: int) -> str:
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=40)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="layout64")
    p.add_argument("--batch-size", type=int, default=32, help="training batch; sampling draws the test split's 32")
    p.add_argument("--steps", type=int, default=20, help="solver steps of a sampling pass")
    p.add_argument("--rows", type=int, default=12)
    args = p.parse_args()
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} threads; precision: {choose_precision('auto', torch.device('cpu'))[1]}")
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(out=out, model=preset(args.preset), preset=args.preset, max_steps=10**6,
                             batch_size=args.batch_size, mixed_precision="auto", device="cpu")
        images, labels = fake_data(config, batches=4)
        parents = torch.full((len(images),), canvas.EMPTY) if config.model.canvas else None
        trainer = Trainer(config, images, labels, parents=parents)
        for _ in range(3):
            trainer.train_step()
        start = time.perf_counter()
        with torch.profiler.profile() as prof:
            trainer.train_step()
        print(f"\none training step of {args.batch_size} images: {time.perf_counter() - start:.3f} s (profiled)")
        print(table(prof, args.rows))

        net, n = trainer.net.eval(), 64  # 32 images, doubled for guidance
        x, t = torch.randn(n, 3, 64, 64), torch.full((n,), 500)
        base = torch.zeros(n, net.canvas_channels, 64, 64) if config.model.canvas else None
        with torch.inference_mode(), trainer.accelerator.autocast():
            net(x, t, labels[:n], base)
            start = time.perf_counter()
            for _ in range(args.steps):
                net(x, t, labels[:n], base)
            seconds = time.perf_counter() - start
            with torch.profiler.profile() as prof:
                net(x, t, labels[:n], base)
        print(f"\none sampling pass ({args.steps} evaluations of {n} images): {seconds:.2f} s; one evaluation:")
        print(table(prof, args.rows))


if __name__ == "__main__":
    main()
