"""Sampling settings on one trained run: sampler, steps and guidance scale, scored by a judge.

Each SPEC is SAMPLER:STEPS:GUIDANCE. Prints top-k / exact-set / extra-object rate on test and new_test, the mean
over --seeds (one image per condition).

    python benchmarks/sampling_sweep.py --run outputs/ablation/runs/layout64-s1 dpmsolver:20:3 ddpm:100:3 --seeds 0
"""
from __future__ import annotations

import argparse

from cddpm import canvas, runs, sample
from cddpm import labels as L
from cddpm.data import load_condition_lists
from cddpm.evaluation.evaluator import Evaluator, evaluate_images
from cddpm.workflow import report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True)
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--no-ema", dest="ema", action="store_false")
    p.add_argument("--data", default="data/synthetic-iclevr")
    p.add_argument("--evaluator", default="outputs/evaluator/checkpoint.pth")
    p.add_argument("--edit-threshold", type=float, default=canvas.EDIT_THRESHOLD,
                   help="canvas models: keep a pass's changes only above this (0: keep the whole drawn image)")
    p.add_argument("--max-overlap", type=float, default=canvas.MAX_OVERLAP,
                   help="layout models: how far a new object's box may lie under earlier ones")
    args = p.parse_args()
    canvas.MAX_OVERLAP = args.max_overlap  # a module constant of the library (measured below it): patched in
    model, config, folder = runs.load_model(args.run, ema=args.ema)
    judge = Evaluator.load(args.evaluator)
    for spec in args.specs:
        name, steps, guidance = spec.split(":")
        records = []
        for split in ("test", "new_test"):
            conditions = load_condition_lists(args.data, split)
            for seed in args.seeds:
                request = sample.SampleRequest(sampler=name, steps=int(steps), guidance=float(guidance), seed=seed,
                                               edit_threshold=args.edit_threshold)
                images = sample.generate(model, config["scheduler"], conditions, request)
                records.append(dict(evaluate_images(judge, images, L.encode_batch(conditions)), split=split,
                                    checkpoint=folder.name, sampler=name, steps=int(steps), guidance=float(guidance)))
        rows = {row["split"]: row for row in report.summarise(records)}  # the mean over seeds
        cells = ["/".join(f"{rows[split][k]:.3f}" for k in report.METRICS) for split in ("test", "new_test")]
        print(f"{args.run} {'ema' if args.ema else 'raw'} {spec} edit>{args.edit_threshold:g} "
              f"overlap<={args.max_overlap:g}: test {cells[0]}  new_test {cells[1]}", flush=True)


if __name__ == "__main__":
    main()
