"""Papermill batches: execute ``03_sample.ipynb`` once per combination, then ``04_report.ipynb``.

The executed notebooks under ``outputs/papermill/NAME/`` are the record of a batch; the samples
and their ``metrics.json`` go to ``outputs/samples/NAME/<combination>/``.
"""
from __future__ import annotations

import itertools
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm


def tag(split: str, seed: int, checkpoint: str, sampler: str, steps: int, guidance: float) -> str:
    """The name of one combination: its sample folder and (after ``03_sample__``) its executed notebook."""
    return f"{split}__seed{seed}__{checkpoint}__{sampler}{steps}__g{guidance:g}"


def samples_dir(name: str, outputs: str = "outputs") -> Path:
    """Where a batch's sample folders (one per combination ``tag``) go, and where ``04_report`` reads them."""
    return Path(outputs) / "samples" / name


@dataclass
class Batch:
    """One papermill batch over seeds x checkpoints x splits x steps x guidance scales."""

    run: str
    name: str
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    checkpoints: list[str] = field(default_factory=lambda: ["last"])
    splits: list[str] = field(default_factory=lambda: ["test", "new_test"])
    samplers: list[str] = field(default_factory=lambda: ["dpmsolver"])
    steps: list[int] = field(default_factory=lambda: [20])
    guidance: list[float] = field(default_factory=lambda: [1.0])
    evaluator: str | None = "outputs/evaluator/checkpoint.pth"
    data: str | None = None
    device: str | None = None          # cuda, cpu, ...; None: cuda when present
    profile: str | None = None
    outputs: str = "outputs"
    notebooks: str = "notebooks"
    force: bool = False
    report: bool = True

    def __post_init__(self):
        from .sample import SAMPLERS

        lists = dict(seeds=self.seeds, checkpoints=self.checkpoints, splits=self.splits, samplers=self.samplers,
                     steps=self.steps, guidance=self.guidance)
        empty = [k for k, v in lists.items() if not v]
        if empty:
            raise ValueError(f"batch {', '.join(empty)} must not be empty; give at least one value each")
        bad = [f"steps {s}" for s in self.steps if s < 1] + [f"guidance {w}" for w in self.guidance if not w >= 0]
        bad += [f"sampler {s!r}" for s in self.samplers if s not in SAMPLERS]
        if bad:
            raise ValueError(f"batch values out of range: {', '.join(bad)}; steps >= 1, guidance >= 0, "
                             f"samplers {', '.join(SAMPLERS)}")

    def combinations(self) -> list[dict]:
        """Every combination as the parameters 03_sample.ipynb takes, plus its ``tag``."""
        combos = []
        for split, seed, ckpt, sampler, steps, w in itertools.product(
                self.splits, self.seeds, self.checkpoints, self.samplers, self.steps, self.guidance):
            combos.append(dict(tag=tag(split, seed, ckpt, sampler, steps, w), split=split, seed=seed, checkpoint=ckpt, sampler=sampler, steps=steps,
                               guidance=float(w)))
        return combos

    @property
    def record_dir(self) -> Path:
        return Path(self.outputs) / "papermill" / self.name

    @property
    def samples_dir(self) -> Path:
        return samples_dir(self.name, self.outputs)

    @property
    def report_dir(self) -> Path:
        return Path(self.outputs) / "report" / self.name


def _notebook(folder: str, name: str) -> Path:
    path = Path(folder) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run from the repository root or pass --notebooks DIR")
    return path


def _execute(notebook: Path, output: Path, parameters: dict) -> None:
    """Run ``notebook`` with papermill; a parameter its ``parameters`` cell lacks is a bug, not a warning."""
    import papermill as pm

    unknown = sorted(set(parameters) - set(pm.inspect_notebook(str(notebook))))
    if unknown:
        raise ValueError(f"{notebook.name} has no parameter(s) {unknown}; add them to its parameters cell")
    pm.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name="python3",
                        progress_bar=False, cwd=os.getcwd())


def run_batch(batch: Batch) -> dict:
    """Execute every combination not yet done (all with ``force``), then the report; failures are listed, not fatal."""
    from . import runs

    runs.read_config(batch.run)  # a missing run fails here, before any notebook starts
    sample_nb = _notebook(batch.notebooks, "03_sample.ipynb")
    report_nb = _notebook(batch.notebooks, "04_report.ipynb")
    batch.record_dir.mkdir(parents=True, exist_ok=True)
    common = {k: v for k, v in dict(run=batch.run, evaluator=batch.evaluator, data_root=batch.data,
                                    profile=batch.profile, device=batch.device).items() if v is not None}
    done, skipped, failed = [], [], []
    for combo in tqdm(batch.combinations(), desc=f"batch {batch.name}", unit="run"):
        tag = combo.pop("tag")
        out_dir = batch.samples_dir / tag
        if not batch.force and (out_dir / "metrics.json").is_file():
            skipped.append(tag)
            continue
        try:
            _execute(sample_nb, batch.record_dir / f"03_sample__{tag}.ipynb",
                     {**common, **combo, "out_dir": str(out_dir), "widget": False})
            done.append(tag)
        except Exception as err:  # one failed combination must not stop the batch
            failed.append(tag)
            print(f"batch {batch.name}: {tag} failed: {type(err).__name__}: {str(err).strip().splitlines()[-1:]}",
                  file=sys.stderr)
    report = None
    if batch.report and (done or skipped):  # with nothing sampled there is nothing to report
        try:
            _execute(report_nb, batch.record_dir / "04_report.ipynb",
                     {**{k: common[k] for k in ("run", "profile") if k in common},
                      "batch_dir": str(batch.samples_dir), "report_dir": str(batch.report_dir)})
            report = str(batch.report_dir)
        except Exception as err:
            failed.append("report")
            print(f"batch {batch.name}: the report failed: {type(err).__name__}: "
                  f"{str(err).strip().splitlines()[-1:]}; see {batch.record_dir / '04_report.ipynb'}", file=sys.stderr)
    return {"done": done, "skipped": skipped, "failed": failed, "report": report}


def run_demo(profile: str | None = None, notebooks: str = "notebooks", outputs: str = "outputs",
             device: str | None = None) -> int:
    """The README's main job: 01_data and 02_train, a sampling batch at the profile's setting (plus a DDPM arm
    where the profile names one), its report, and the judge's own accuracy on ground-truth renders."""
    from . import evaluator, fidelity, profiles, workflow
    from .device import resolve as resolve_device

    start = time.perf_counter()
    p = profiles.get(profile)
    record_dir = Path(outputs) / "papermill" / p.batch
    record_dir.mkdir(parents=True, exist_ok=True)
    for name in ("01_data", "02_train"):
        print(f"demo [{p.name}]: executing {name}.ipynb -> {record_dir / name}.ipynb", flush=True)
        _execute(_notebook(notebooks, f"{name}.ipynb"), record_dir / f"{name}.ipynb",
                 {"profile": p.name, **({"device": device} if device else {})})
    arms = [([p.sampler], [p.steps], p.seeds)] + ([(["ddpm"], [p.ddpm_steps], p.ddpm_seeds or p.seeds)]
                                                  if p.ddpm_steps else [])
    failed = []
    for i, (samplers, steps, seeds) in enumerate(arms):
        result = run_batch(Batch(run=p.run, name=p.batch, seeds=list(seeds), splits=list(p.splits),
                                 samplers=samplers, steps=steps, guidance=list(p.guidance), evaluator=p.evaluator,
                                 device=device,
                                 profile=p.name, outputs=outputs, notebooks=notebooks, report=i == len(arms) - 1))
        failed += result["failed"]
    table = Path(result["report"]) / "table.md" if result["report"] else None
    print(table.read_text() if table and table.is_file() else "no table was written")
    judge = evaluator.Evaluator.load(p.evaluator, resolve_device(device or p.device))
    for split, scores in workflow.judge_on_ground_truth(p, judge).items():
        print(f"the judge on ground-truth renders of {split}: top-k {scores['topk']:.3f}, "
              f"exact-set {scores['exact_set']:.3f} ({scores['n']} images)")
    for (split, w), (measured, n) in workflow.fidelity_of_samples(p, judge, outputs).items():
        print(f"fidelity of {split} at guidance {w:g} ({len(p.seeds)} seeds pooled), in the judge's features: "
              + fidelity.summary(measured, n))
    print(f"demo [{p.name}]: report in {result['report']}, executed notebooks in {record_dir}, "
          f"{time.perf_counter() - start:.0f} s" + (f", {len(failed)} failed: {failed}" if failed else ""))
    return 1 if failed else 0
