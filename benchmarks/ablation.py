"""Equal-wall-clock ablations: train an arm for N minutes with `cddpm train`, then score its checkpoints.

Each arm is a list of `cddpm train` flags (ARMS below), trained with `--minutes`: the trainer times its own steps on
this machine, re-times itself once 5% of the budget has gone, and ends its cosine LR schedule on time; it checkpoints
every ``minutes / saves`` of training. Every checkpoint is then sampled on test and new_test (DPM-Solver++, one image
per condition, the run's seed) and scored by the judging evaluator; one JSON line per (checkpoint, guidance) goes to
OUT/results.jsonl. `--report` turns that file into the markdown table and the accuracy-versus-minutes plot of
docs/ablations.md.

    python benchmarks/ablation.py --arms canvas64 layout64 --seeds 0 1 2 --minutes 6
    python benchmarks/ablation.py --report --out outputs/ablation --plot docs/ablation_curves.png
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from cddpm import runs
from cddpm.choices import DEFAULT_SAMPLER
from cddpm.data import load_condition_lists, to_uint8
from cddpm.evaluation.evaluator import Evaluator, evaluate_images
from cddpm.evaluation.fidelity import measure
from cddpm.labels import encode_batch
from cddpm.sample import SampleRequest, generate
from cddpm.workflow.report import METRICS, as_text, mean_std

COMMON = ["--prediction-type", "v_prediction", "--mixed-precision", "auto", "--batch-size", "32", "--lr", "1e-3"]
# later flags override earlier ones (argparse), so an arm is COMMON plus what it changes; each arm has its row in
# docs/ablations.md
ARMS: dict[str, list[str]] = {
    "reference": ["--preset", "reference", "--prediction-type", "epsilon", "--mixed-precision", "auto",
                  "--batch-size", "32", "--lr", "2e-4"],
    # whole scenes: layout64's network without the canvas (64x64 through the 2x2 fold, AdaGN, embedded label)
    "p2-embed": ["--preset", "layout64", *COMMON, "--model", "canvas=false", "layout=false"],
    "canvas64": ["--preset", "canvas64", *COMMON],  # p2-embed drawing one object at a time onto a canvas
    "layout64": ["--preset", "layout64", *COMMON],  # canvas64 told each object's box
    # layout64 at full resolution (no 2x2 fold): one more, narrower level at 64x64
    "layout64-p1": ["--preset", "layout64", *COMMON, "--model", "patch_size=1", "block_out_channels=16,32,64,64,128",
                    "attention_levels=4"],
    # layout64 drawing each object in a 32x32 window around its box at full resolution (no fold): the crop64 preset,
    # which is layout64 with --model crop=32 patch_size=1
    "layout64-crop32": ["--preset", "crop64", *COMMON],
    # crop64 with a 40x40 window, which holds 99% of the training boxes whole (1.6x the pixels per pass)
    "crop64-40": ["--preset", "crop64", *COMMON, "--model", "crop=40"],
    # crop64 with a 24x24 window (0.6 of the pixels per pass; 60% of the training boxes whole)
    "crop64-24": ["--preset", "crop64", *COMMON, "--model", "crop=24"],
    # crop64 with windows 1.25 times each box's longer side, resampled to 32x32
    "crop64-zoom": ["--preset", "crop64", *COMMON, "--model", "zoom=1.25"],
    # both: windows 1.25 times the box resampled to 24x24, the zoom64 preset (the default)
    "zoom64": ["--preset", "zoom64", *COMMON],
}


def train_arm(arm: str, seed: int, minutes: float, data: str, out: Path, saves: int) -> Path:
    """Train one arm for ``minutes`` of its own timing, checkpointing every ``minutes / saves``; return the run."""
    run = out / "runs" / f"{arm}-s{seed}"
    if (run / "config.json").is_file():
        return run
    subprocess.run([sys.executable, "-m", "cddpm", "train", "--out", str(run), "--data", data, "--seed", str(seed),
                    "--minutes", str(minutes), "--save-minutes", str(minutes / saves), "--save-every", str(10**9),
                    "--keep", str(saves + 1), *ARMS[arm]], check=True, stdout=subprocess.DEVNULL)
    return run


def score_run(arm: str, seed: int, run: Path, data: str, evaluator: Evaluator, guidances: list[float],
              steps: int, results: Path) -> None:
    """Score every checkpoint of ``run`` at guidance 3 (the curve) and the last one at every guidance."""
    done = {(r["checkpoint"], r["guidance"]) for r in runs.read_metrics(results) if r["run"] == str(run)}
    found = runs.checkpoints(run)
    for folder in found:
        state = runs.read_state(folder)
        for g in (guidances if folder == found[-1] else [3.0]):
            if (folder.name, g) in done:
                continue
            model, config, _ = runs.load_model(run, folder.name, True)
            row = {"arm": arm, "seed": seed, "run": str(run), "checkpoint": folder.name, "step": state["step"],
                   "minutes": round(state["train_seconds"] / 60, 2), "guidance": g, "steps": steps,
                   "last": folder == found[-1]}
            for split in ("test", "new_test"):
                conditions = load_condition_lists(data, split)
                start = time.perf_counter()
                images = generate(model, config["scheduler"], conditions,
                                  SampleRequest(sampler=DEFAULT_SAMPLER, steps=steps, guidance=g, seed=seed))
                scores = evaluate_images(evaluator, images, encode_batch(conditions))
                row[split] = {k: scores[k] for k in METRICS}
                row[f"{split}_sample_s"] = round(time.perf_counter() - start, 2)
                if folder == found[-1]:  # kept for the fidelity columns (seeds pooled)
                    kept = images_file(results.parent, arm, seed, split, g)
                    kept.parent.mkdir(parents=True, exist_ok=True)
                    torch.save(to_uint8(images), kept)
            with results.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


def images_file(out: Path, arm: str, seed: int, split: str, guidance: float) -> Path:
    """Where the last checkpoint's samples of one split and guidance are kept (uint8)."""
    return out / "images" / f"{arm}-s{seed}" / f"{split}-g{guidance:g}.pt"


def fidelity(out: Path, rows: list[dict], data: str, judge: Evaluator, gt: Path) -> str:
    """FD (seeds pooled) of test / new_test against ``gt/SPLIT``, and its floor from ``gt/SPLIT_floorN`` (N: the
    seeds, one render per condition each, as many images as the samples): "a / b (a' / b' x floor)"."""
    fds, ratios = [], []
    for split in ("test", "new_test"):
        images = torch.cat([torch.load(images_file(out, r["arm"], r["seed"], split, r["guidance"])) for r in rows])
        labels = encode_batch(load_condition_lists(data, split) * len(rows))
        measured = measure(judge, images, labels, gt / split, gt / f"{split}_floor{len(rows)}")
        fds.append(f"{measured['fd']:.2f}")
        ratios.append(f"{measured['fd_over_floor']:.1f}")
    return f"{' / '.join(fds)} ({' / '.join(ratios)}x)"


def curve_points(rows: list[dict]) -> dict[str, list[list[dict]]]:
    """Per arm, the curve's points at guidance 3: each seed's k-th checkpoint, its last one last (checkpoints are
    saved by minutes, so a run may have one more than another)."""
    by_run = defaultdict(list)
    for r in rows:
        if r["guidance"] == 3.0:
            by_run[r["arm"], r["seed"]].append(r)
    curves = defaultdict(lambda: defaultdict(list))
    for (arm, _), rs in by_run.items():
        fewest = min(len(others) for (other, _), others in by_run.items() if other == arm)
        rs = sorted(rs, key=lambda r: r["step"])
        for k, r in enumerate(rs[:fewest - 1] + rs[-1:]):
            curves[arm][k].append(r)
    return {arm: [points[k] for k in sorted(points)] for arm, points in curves.items()}


def _both(rs: list[dict], metric: str) -> float:
    """The mean over runs of a metric's mean over test and new_test."""
    return statistics.mean((r["test"][metric] + r["new_test"][metric]) / 2 for r in rs)


def report(results: Path, plot: Path | None, arms: list[str] | None = None, seeds: list[int] | None = None,
           data: str | None = None, judge: Evaluator | None = None, gt: Path | None = None) -> str:
    """Markdown tables (last checkpoint, best guidance by mean top-k; the curve) and the accuracy-vs-minutes plot; with a
    ``judge`` and ``gt`` renders of ``data``'s conditions, FD in its features (:func:`fidelity`) for the arms whose
    images were kept."""
    rows = [r for r in runs.read_metrics(results) if (not arms or r["arm"] in arms) and (seeds is None or r["seed"] in seeds)]
    last = defaultdict(list)
    for r in rows:
        if r["last"]:
            last[(r["arm"], r["guidance"])].append(r)
    lines = ["| arm | guidance | seeds | minutes | top-k test | top-k new_test | exact-set test | exact-set new_test | "
             "extra objects | FD test / new_test (x floor) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for arm in dict.fromkeys(r["arm"] for r in rows):
        options = {g: rs for (a, g), rs in last.items() if a == arm}
        if not options:
            continue
        g, rs = max(options.items(), key=lambda kv: _both(kv[1], "topk"))
        cells = [as_text(*mean_std([r[s][m] for r in rs])) for m in ("topk", "exact_set") for s in ("test", "new_test")]
        cells.append(" / ".join(f"{statistics.mean(r[s]['extra_object_rate'] for r in rs):.2f}"
                                for s in ("test", "new_test")))
        kept = all(images_file(results.parent, arm, r["seed"], s, g).is_file() for r in rs for s in ("test", "new_test"))
        cells.append(fidelity(results.parent, rs, data, judge, gt) if judge is not None and gt is not None and kept else "")
        lines.append(f"| {arm} | {g:g} | {len(rs)} | {statistics.mean(r['minutes'] for r in rs):.1f} | "
                     + " | ".join(cells) + " |")
    curves = curve_points(rows)
    lines += ["", "Along the curve (guidance 3): mean minutes, then the mean of both splits' top-k (exact-set).", "",
              "| arm | seeds | points |", "|---|---|---|"]
    lines += [f"| {arm} | {len(xs[0])} | " + " · ".join(
        f"{statistics.mean(r['minutes'] for r in rs):.1f} min: {_both(rs, 'topk'):.2f} ({_both(rs, 'exact_set'):.2f})"
        for rs in xs) + " |" for arm, xs in curves.items()]
    if plot is not None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.5, 4))
        ax = fig.add_subplot()
        for arm, xs in curves.items():
            ax.plot([statistics.mean(r["minutes"] for r in rs) for rs in xs], [_both(rs, "topk") for rs in xs],
                    marker="o", label=arm)
        ax.set(xlabel="training minutes (2 CPU cores)", ylabel="top-k, mean of test and new_test (guidance 3)",
               ylim=(0, 1), title="Accuracy versus training time")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(plot, dpi=100)
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arms", nargs="+", choices=list(ARMS), default=[])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--minutes", type=float, default=10.0, help="training wall-clock per run")
    p.add_argument("--saves", type=int, default=4, help="checkpoints per run (points of the curve)")
    p.add_argument("--data", default="data/synthetic-iclevr")
    p.add_argument("--evaluator", default="outputs/evaluator/checkpoint.pth")
    p.add_argument("--guidance", type=float, nargs="+", default=[1.0, 3.0, 5.0])
    p.add_argument("--steps", type=int, default=20, help="DPM-Solver++ steps")
    p.add_argument("--out", type=Path, default=Path("outputs/ablation"))
    p.add_argument("--report", action="store_true", help="print the table of OUT/results.jsonl")
    p.add_argument("--plot", type=Path, default=None, help="with --report: write the curves PNG here")
    p.add_argument("--only-seeds", action="store_true", help="with --report: only the runs of --seeds (and --arms)")
    p.add_argument("--gt", type=Path, default=None,
                   help="with --report: ground-truth renders GT/test, GT/new_test and floors GT/SPLIT_floorN (N seeds; "
                        "the demo's OUTPUTS/gt/KEY) for an FD column in the --evaluator's features")
    args = p.parse_args()
    torch.manual_seed(0)
    results = args.out / "results.jsonl"
    if args.report:
        judge = Evaluator.load(args.evaluator) if args.gt else None
        print(report(results, args.plot, args.arms, args.seeds if args.only_seeds else None, args.data, judge,
                     args.gt))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    evaluator = Evaluator.load(args.evaluator)
    for arm in args.arms:
        for seed in args.seeds:
            run = train_arm(arm, seed, args.minutes, args.data, args.out, args.saves)
            score_run(arm, seed, run, args.data, evaluator, args.guidance, args.steps, results)


if __name__ == "__main__":
    main()
