"""Papermill batches: ``03_sample.ipynb`` once per combination, then ``04_report.ipynb`` (layout: :mod:`cddpm.folders`)."""
from __future__ import annotations

import itertools
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import folders, progress
from ..choices import (
    DEFAULT_NOTEBOOKS,
    DEFAULT_OUTPUTS,
    DEFAULT_PRESET,
    DEFAULT_SAMPLER,
    DEFAULT_STEPS,
    GUIDANCE,
    SPLITS,
    WEIGHTS,
)
from ..progress import tqdm


@dataclass
class Batch:
    """One papermill batch over seeds x checkpoints x weights x splits x steps x guidance scales."""

    run: str
    name: str
    evaluator: str                     # the judge: required, so that no batch is judged by a default it did not name
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    checkpoints: list[str] = field(default_factory=lambda: ["last"])
    weights: list[str] = field(default_factory=lambda: ["ema"])  # ema and/or raw
    splits: list[str] = field(default_factory=lambda: list(SPLITS))
    samplers: list[str] = field(default_factory=lambda: [DEFAULT_SAMPLER])
    steps: list[int] = field(default_factory=lambda: [DEFAULT_STEPS[DEFAULT_SAMPLER]])
    guidance: list[float] = field(default_factory=lambda: [GUIDANCE])
    data: str | None = None
    device: str | None = None          # cuda, cpu, ...; None: cuda when present
    profile: str | None = None
    outputs: str = DEFAULT_OUTPUTS
    notebooks: str = DEFAULT_NOTEBOOKS
    force: bool = False
    report: bool = True

    def __post_init__(self):
        from ..sample import SampleRequest

        lists = dict(seeds=self.seeds, checkpoints=self.checkpoints, weights=self.weights, splits=self.splits,
                     samplers=self.samplers, steps=self.steps, guidance=self.guidance)
        empty = [k for k, v in lists.items() if not v]
        if empty:
            raise ValueError(f"batch {', '.join(empty)} must not be empty; give at least one value each")
        if set(self.weights) - set(WEIGHTS):
            raise ValueError(f"batch weights {self.weights}: use {' and/or '.join(WEIGHTS)}")
        for sampler, steps, w, seed in itertools.product(self.samplers, self.steps, self.guidance, self.seeds):
            SampleRequest(sampler=sampler, steps=steps, guidance=w, seed=seed)  # refuses a bad value in one line

    def combinations(self) -> list[dict]:
        """Every combination as the parameters 03_sample.ipynb takes, plus its ``tag``."""
        return [dict(tag=folders.tag(split, seed, ckpt, sampler, steps, w, weights), split=split, seed=seed,
                     checkpoint=ckpt, weights=weights, sampler=sampler, steps=steps, guidance=float(w))
                for split, seed, ckpt, weights, sampler, steps, w in itertools.product(
                    self.splits, self.seeds, self.checkpoints, self.weights, self.samplers, self.steps, self.guidance)]

    @property
    def record_dir(self) -> Path:
        return folders.papermill(self.outputs, self.name)

    @property
    def samples_dir(self) -> Path:
        return folders.samples(self.outputs, self.name)

    @property
    def report_dir(self) -> Path:
        return folders.report(self.outputs, self.name)


def _notebook(folder: str, name: str) -> Path:
    path = Path(folder) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run from the repository root or pass --notebooks DIR")
    return path


def _execute(notebook: Path, output: Path, parameters: dict, stream: bool = False) -> None:
    """Run ``notebook`` with papermill (a parameter its ``parameters`` cell lacks is an error); ``stream`` shows its
    stderr on ours while it runs."""
    import papermill as pm

    unknown = sorted(set(parameters) - set(pm.inspect_notebook(str(notebook))))
    if unknown:
        raise ValueError(f"{notebook.name} has no parameter(s) {unknown}; add them to its parameters cell")
    before = os.environ.get(progress.ENV)
    if stream:
        os.environ[progress.ENV] = "text"  # the kernel inherits it
    try:
        pm.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name="python3",
                            progress_bar=False, cwd=os.getcwd(),
                            **(dict(stderr_file=sys.stderr, coalesce_streams=True) if stream else {}))
    finally:
        if stream and before is None:
            del os.environ[progress.ENV]
        elif stream:
            os.environ[progress.ENV] = before


def _already_done(batch: Batch, combos: list[dict]) -> set[str]:
    """The tags whose sample folder holds this batch's run, conditions and judge (skipped unless ``force``); a folder
    holding another's (or not recording them) is a one-line refusal before anything runs."""
    import json

    from .. import data, provenance, runs
    from ..evaluation.evaluator import Evaluator

    root = batch.data or runs.read_config(batch.run)["data"]
    wanted = {"run_path": str(Path(batch.run).resolve()),
              "evaluator_sha256": Evaluator.load(batch.evaluator).digest()}  # also: a missing judge fails here
    conditions = {split: provenance.conditions_sha(data.load_condition_lists(root, split)) for split in batch.splits}
    done = set()
    for combo in combos:
        path = batch.samples_dir / combo["tag"] / "metrics.json"
        if batch.force or not path.is_file():
            continue
        try:
            record = json.loads(path.read_text())
        except ValueError:
            raise ValueError(f"{path} is not readable json; pass --force to sample it again") from None
        now = {**wanted, "conditions_sha1": conditions[combo["split"]]}
        other = [k.split("_")[0] for k, v in now.items() if record.get(k) != v]
        if other:
            what = (f"of another {' and '.join(other)} than this batch's" if now.keys() & record.keys() else
                    "that record no run, evaluator or conditions")
            raise FileExistsError(f"{path.parent} holds samples {what}; pass --force to sample it again, or choose "
                                  "another --name or --outputs")
        done.add(combo["tag"])
    return done


def run_batch(batch: Batch) -> dict:
    """Execute every combination not yet done (all with ``force``), then the report; failures are listed, not fatal."""
    from .. import runs

    runs.read_config(batch.run)  # a missing run fails here, before any notebook starts
    sample_nb = _notebook(batch.notebooks, "03_sample.ipynb")
    report_nb = _notebook(batch.notebooks, "04_report.ipynb")
    combos = batch.combinations()
    finished = _already_done(batch, combos)
    batch.record_dir.mkdir(parents=True, exist_ok=True)
    common = {k: v for k, v in dict(run=batch.run, evaluator=batch.evaluator, data_root=batch.data,
                                    profile=batch.profile, device=batch.device, outputs=batch.outputs).items()
              if v is not None}
    done, skipped, failed = [], [], []
    for combo in tqdm(combos, desc=f"batch {batch.name}", unit="run"):
        tag = combo.pop("tag")
        out_dir = batch.samples_dir / tag
        if tag in finished:
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
                     {**{k: common[k] for k in ("run", "profile", "evaluator") if k in common},
                      "batch_dir": str(batch.samples_dir), "report_dir": str(batch.report_dir)})
            report = str(batch.report_dir)
        except Exception as err:
            failed.append("report")
            print(f"batch {batch.name}: the report failed: {type(err).__name__}: "
                  f"{str(err).strip().splitlines()[-1:]}; see {batch.record_dir / '04_report.ipynb'}", file=sys.stderr)
    return {"done": done, "skipped": skipped, "failed": failed, "report": report}


def _arms(p) -> list[tuple[str, int]]:
    """The demo's sampling arms: the profile's sampler and steps, and a DDPM arm where it has ``ddpm_steps``."""
    return [(p.sampler, p.steps)] + ([("ddpm", p.ddpm_steps)] if p.ddpm_steps else [])


def demo_plan(p) -> list[str]:
    """What ``cddpm demo`` will do on profile ``p``: a line per stage with its minutes (a budget the stage sizes its
    work to on this machine, or an estimate of fixed work; both set in ``cddpm.workflow.profiles``), then their sum."""
    from .. import provenance, runs
    from . import profiles

    sized = "a budget: steps sized on this machine at the start"
    preset = p.train.get("preset", DEFAULT_PRESET)
    root, rows = Path(p.data_root), []
    if (root / "train.json").is_file() or not provenance.rendered(p.data_root) and root.exists():
        rows.append(("data", f"use {root}", 0, ""))
    else:
        rows.append(("data", f"render {p.scenes} scenes into {root}", p.render_minutes, "estimated"))
    try:
        judge = profiles.evaluator_path(p)
    except FileNotFoundError:  # filed under the data's key, and the data is rendered first
        judge = None
    if judge is not None and judge.is_file():
        rows.append(("judge", f"use {judge}", 0, ""))
    elif p.evaluator_minutes is not None:
        rows.append(("judge", f"train {judge or 'a judge of the data'}", p.evaluator_minutes, sized))
    else:
        rows.append(("judge", f"train {judge or 'a judge of the data'} for {p.evaluator_epochs or 'the default'} "
                              "epochs", None, ""))
    if runs.checkpoints(p.run):
        rows.append(("train", f"continue {p.run} to the length it started with", None, ""))
    elif p.demo_minutes is not None:
        rest = p.demo_minutes - sum(m or 0 for _, _, m, _ in rows) - p.sample_minutes
        rows.append(("train", f"train {preset} into {p.run}, for what is left of {p.demo_minutes:g} minutes after the "
                              f"stages above, less {p.sample_minutes:g} for sampling", rest, "by the estimates; " + sized))
    elif p.train.get("minutes") is not None:
        rows.append(("train", f"train {preset} into {p.run}", p.train["minutes"], sized))
    else:
        rows.append(("train", f"train {preset} into {p.run} for {p.train.get('max_steps')} steps", None, ""))
    sampling = " and ".join(f"{len(p.seeds) * len(p.splits) * len(p.guidance)} runs of {sampler} {steps} steps"
                            for sampler, steps in _arms(p))
    rows.append(("sample", f"{sampling} ({' + '.join(p.splits)}, guidance {' '.join(f'{w:g}' for w in p.guidance)}, "
                           f"{p.weights} weights), "
                           "the report and the judge on ground truth", p.sample_minutes, "estimated"))
    lines = [f"  {stage:<7}{what}: " + ("not estimated" if m is None else f"{m:g} min" + (f" ({how})" if how else ""))
             for stage, what, m, how in rows]
    known = [m for _, _, m, _ in rows if m is not None]
    return lines + [f"  {'in all':<7}{sum(known):g} min" + (" and the stages not estimated" if len(known) < len(rows)
                                                             else "")]


MIN_TRAIN_MINUTES = 1.0  # the demo's training, however little of its budget the fixed work left


def training_minutes(p, spent_s: float) -> float | None:
    """02_train's minutes in the demo: what ``p.demo_minutes`` leaves after ``spent_s`` seconds of data and judge and
    ``p.sample_minutes`` of sampling; a run that has begun keeps the minutes it was sized to (so that it resumes
    exactly); None: the profile's own training length."""
    from .. import runs

    if p.demo_minutes is None:
        return None
    if runs.checkpoints(p.run):
        sized = runs.read_config(p.run).get("budget")
        return sized and sized["minutes"]
    return round(max(MIN_TRAIN_MINUTES, p.demo_minutes - spent_s / 60 - p.sample_minutes), 2)


def run_demo(profile: str | None = None, notebooks: str = DEFAULT_NOTEBOOKS, outputs: str = DEFAULT_OUTPUTS,
             device: str | None = None, data: str | None = None, evaluator: str | None = None) -> int:
    """The README's main job: 01_data, 02_train, a sampling batch at the profile's setting (and a DDPM arm), its report
    and the judge on ground truth, on the synthetic set or ``data``, everything under ``outputs``."""
    from .. import data as D
    from .. import provenance
    from ..device import resolve as resolve_device
    from ..evaluation import evaluator as ev
    from ..evaluation import fidelity
    from . import profiles, steps

    start = time.perf_counter()
    if evaluator is not None and not Path(evaluator).is_file():
        raise FileNotFoundError(f"--evaluator {evaluator} not found; give the judge's checkpoint (the course's "
                                "checkpoint.pth) or leave it out to train one on the data")
    p = profiles.get(profile, outputs=outputs, data_root=data, evaluator=evaluator)
    if data is not None:  # the user's root and judge are checked before anything runs
        D.load_mapping(p.data_root)
        for split in p.splits:
            D.load_condition_lists(p.data_root, split)
    if evaluator is not None:
        provenance.say(provenance.judge_note(evaluator, ev.Evaluator.load(evaluator).trained_on, p.data_root))
    own = provenance.rendered(p.data_root) or data is None
    print(f"demo [{p.name}]: data {p.data_root}" + ("" if own else " (not our render: its held-out scenes stay "
          "out of training and check the judge)") + f"; judge {evaluator or 'trained on it by 01_data'}; "
          f"everything under {outputs}", flush=True)
    record_dir = folders.papermill(outputs, p.batch)
    record_dir.mkdir(parents=True, exist_ok=True)
    print(f"demo [{p.name}]: the plan (minutes from cddpm/profiles.py)", *demo_plan(p), sep="\n", flush=True)
    given = {k: v for k, v in dict(profile=p.name, outputs=outputs, data_root=data, device=device).items()
             if v is not None}
    for name in ("01_data", "02_train"):
        extra = {"evaluator": evaluator} if name == "01_data" and evaluator else {}
        minutes = training_minutes(p, time.perf_counter() - start) if name == "02_train" else None
        if minutes is not None:
            extra["minutes"] = minutes
            print(f"demo [{p.name}]: the training's budget: {minutes:g} minutes", flush=True)
        print(f"demo [{p.name}]: executing {name}.ipynb -> {record_dir / name}.ipynb", flush=True)
        begun = time.perf_counter()
        _execute(_notebook(notebooks, f"{name}.ipynb"), record_dir / f"{name}.ipynb", {**given, **extra}, stream=True)
        print(f"demo [{p.name}]: {name} took {time.perf_counter() - begun:.0f} s", flush=True)
    judge_path = str(profiles.evaluator_path(p))
    arms, failed = _arms(p), []
    for i, (sampler, arm_steps) in enumerate(arms):
        result = run_batch(Batch(run=p.run, name=p.batch, evaluator=judge_path, seeds=list(p.seeds),
                                 weights=[p.weights], splits=list(p.splits), samplers=[sampler], steps=[arm_steps],
                                 guidance=list(p.guidance), data=p.data_root, device=device, profile=p.name,
                                 outputs=outputs, notebooks=notebooks, report=i == len(arms) - 1))
        failed += result["failed"]
    table = Path(result["report"]) / "table.md" if result["report"] else None
    print(table.read_text() if table and table.is_file() else "no table was written")
    judge = ev.Evaluator.load(judge_path, resolve_device(device or p.device))
    on_ground_truth = steps.judge_on_ground_truth(p, judge)
    for what, scores in on_ground_truth.items():
        print(f"the judge on {what}: top-k {scores['topk']:.3f}, exact-set {scores['exact_set']:.3f} "
              f"({scores['n']} images)")
    caveat = steps.judge_caveat(on_ground_truth)
    if caveat:
        print(caveat)
    for (split, w), (measured, n) in steps.fidelity_of_samples(p, judge).items():
        print(f"fidelity of {split} at guidance {w:g} ({len(p.seeds)} seeds pooled), in the judge's features: "
              + fidelity.summary(measured, n))
    print(f"demo [{p.name}]: report in {result['report']}, executed notebooks in {record_dir}, "
          f"{time.perf_counter() - start:.0f} s" + (f", {len(failed)} failed: {failed}" if failed else ""))
    return 1 if failed else 0
