"""Summarise a batch of ``cddpm sample`` folders: tables (mean +- std over seeds, grouped by everything but the seed)
and figures."""
from __future__ import annotations

import json
import os
import shutil
import statistics
from collections import Counter, defaultdict
from pathlib import Path

from matplotlib.figure import Figure

from ..figures import loss_curve
from ..paths import write_json, write_text

KEYS = ("split", "checkpoint", "weights", "sampler", "steps", "guidance")
SETTINGS = {"edit_threshold": "edit threshold"}  # also grouped by; a column of the table only where they differ
METRICS = ("topk", "exact_set", "extra_object_rate")
FIDELITY = {"fd": "FD", "fd_floor": "FD floor", "kid_mean": "KID"}  # columns of rows whose every seed has them


def collect(batch_dir: str | os.PathLike) -> list[dict]:
    """Every ``metrics.json`` under ``batch_dir`` (one level down), with its folder as ``dir``."""
    batch_dir = Path(batch_dir)
    if not batch_dir.is_dir():
        raise FileNotFoundError(f"batch folder {batch_dir} does not exist; run `cddpm batch --name ...` first")
    records = []
    for path in sorted(batch_dir.glob("*/metrics.json")):
        record = json.loads(path.read_text())
        if "topk" in record:
            weights = "ema" if record.get("ema", True) else "raw"
            records.append({**record, "weights": weights, "dir": str(path.parent)})
    if not records:
        raise ValueError(f"no evaluated metrics.json under {batch_dir}; sample with --evaluator to get accuracies")
    return records


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation; no deviation (None) from a single seed rather than a false 0."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def summarise(records: list[dict]) -> list[dict]:
    """One row per setting (:data:`KEYS` and :data:`SETTINGS`, everything but the seed): mean and std of each metric
    over seeds."""
    by = KEYS + tuple(SETTINGS)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[tuple(r.get(k) for k in by)].append(r)
    rows = []
    for key, group in sorted(groups.items(), key=lambda kv: tuple(str(v) for v in kv[0])):
        row = dict(zip(by, key), seeds=len(group))
        for m in METRICS + tuple(f for f in FIDELITY if all(g.get(f) is not None for g in group)):
            row[m], row[m + "_std"] = mean_std([g[m] for g in group])
        rows.append(row)
    return rows


def markdown_table(rows: list[dict]) -> str:
    """The summary as a markdown table, accuracies (and FD, its floor and KID where measured) as mean +- std over
    seeds (the mean alone from one seed)."""
    extra = [f for f in FIDELITY if any(f in r for r in rows)]
    varying = [k for k in SETTINGS if len({r.get(k) for r in rows}) > 1]
    head = ("| " + " | ".join(KEYS) + "".join(f" | {SETTINGS[k]}" for k in varying)
            + " | seeds | top-k | exact-set | extra objects |")
    lines = [head + "".join(f" {FIDELITY[f]} |" for f in extra),
             "|" + " --- |" * (len(KEYS) + len(varying) + 4 + len(extra))]
    for r in rows:
        cells = [r.get(k) for k in KEYS + tuple(varying)] + [r["seeds"]]
        cells += [as_text(r[m], r[m + "_std"], ".4f" if m.startswith("kid") else ".3f") if m in r else "–"
                  for m in METRICS + tuple(extra)]
        lines.append("| " + " | ".join("–" if c is None else str(c) for c in cells) + " |")
    return "\n".join(lines)


def as_text(mean: float, std: float | None, form: str = ".3f") -> str:
    """A :func:`mean_std` as a table cell: "mean ± std", or the mean alone (one seed)."""
    return f"{mean:{form}}" + ("" if std is None else f" ± {std:{form}}")


def metrics_table(metrics: dict) -> str:
    """One sampling run's ``metrics.json`` as a two-column markdown table (the conditions list left out)."""
    lines = ["| metric | value |", "| --- | --- |"]
    for key, value in ((k, v) for k, v in metrics.items() if not isinstance(v, list)):
        lines.append(f"| {key} | {value:.4f} |" if isinstance(value, float) else f"| {key} | {value} |")
    return "\n".join(lines)


def _plot_against(rows: list[dict], x: str, path: Path, title: str) -> Path | None:
    """Top-k and exact-set accuracy against ``x`` (one line per split and metric), the other keys fixed at their mode."""
    varying = sorted({r[x] for r in rows})
    if len(varying) < 2:
        return None
    fig = Figure(figsize=(5, 3.4))
    ax = fig.add_subplot()
    for split in sorted({r["split"] for r in rows}):
        sel = [r for r in rows if r["split"] == split]
        # hold the other settings at the most common value so each line varies only x
        others = [k for k in KEYS if k not in ("split", x)]
        common = Counter(tuple(r[k] for k in others) for r in sel).most_common(1)[0][0]
        sel = sorted((r for r in sel if tuple(r[k] for k in others) == common), key=lambda r: r[x])
        for m, style in (("topk", "-o"), ("exact_set", "--s")):
            ax.errorbar([r[x] for r in sel], [r[m] for r in sel], yerr=[r[m + "_std"] or 0.0 for r in sel],
                        fmt=style, capsize=3, label=f"{split} {m}")
    ax.set(xlabel=x, ylabel="accuracy", title=title, ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def check_judge(records: list[dict], evaluator: str | os.PathLike) -> None:
    """Refuse records judged by another evaluator than ``evaluator`` (by weights); older records that name none pass."""
    from ..evaluation.evaluator import Evaluator

    digest = Evaluator.load(evaluator).digest()
    other = [r for r in records if r.get("evaluator_sha256") not in (None, digest)]
    if other:
        raise ValueError(f"{other[0]['dir']} was judged by {other[0].get('evaluator')}, not {evaluator} "
                         f"({len(other)} of {len(records)} folders); a table mixes no judges: sample them again with "
                         "this one (cddpm batch --force) or report with theirs")


def build(batch_dir: str | os.PathLike, out_dir: str | os.PathLike, run: str | os.PathLike | None = None,
          evaluator: str | os.PathLike | None = None) -> dict:
    """Write ``table.md``, ``table.json`` and the figures of a batch to ``out_dir``; return their paths and rows.
    With ``evaluator``, every folder must have been judged by it (:func:`check_judge`)."""
    out_dir = Path(out_dir)
    records = collect(batch_dir)
    if evaluator is not None:
        check_judge(records, evaluator)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = summarise(records)
    write_text(out_dir / "table.md", markdown_table(rows) + "\n")
    write_json(out_dir / "table.json", rows)
    figures = {
        "guidance": _plot_against(rows, "guidance", out_dir / "accuracy_vs_guidance.png", "accuracy vs guidance"),
        "steps": _plot_against(rows, "steps", out_dir / "accuracy_vs_steps.png", "accuracy vs sampler steps"),
        "loss": loss_curve(run, out_dir / "loss.png") if run else None,
    }
    ranked = sorted(records, key=lambda r: (r["topk"], r["exact_set"]))
    best, worst = ranked[-1], ranked[0]
    for which, record in (("best", best), ("worst", worst)):
        grid = Path(record["dir"]) / f"grid_{record['split']}.png"
        if grid.is_file():
            figures[which] = shutil.copyfile(grid, out_dir / f"{which}_grid.png")
    return {"rows": rows, "records": len(records), "table": str(out_dir / "table.md"),
            "figures": {k: str(v) for k, v in figures.items() if v}, "best": best, "worst": worst}
