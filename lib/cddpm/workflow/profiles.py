"""Named settings for the notebooks and the demo: ``smoke`` (CI), ``demo`` (CPU minutes), ``cpu`` (a CPU hour),
``colab``, ``reference``; each is ``TrainConfig``'s defaults with its ``train`` settings on top."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from .. import folders
from ..choices import DEFAULT_OUTPUTS, DEFAULT_SAMPLER, DEFAULT_STEPS, PER_CONDITION, SCENES, SPLITS, WEIGHTS

LENGTH = ("max_steps", "epochs", "minutes")  # the training fields that set a run's length: one given replaces all


@dataclass(frozen=True)
class Profile:
    """Every knob the notebooks and ``cddpm demo`` read."""

    name: str
    outputs: str = DEFAULT_OUTPUTS          # where everything below that is not given goes (cddpm.folders)
    data_root: str | None = None            # None: the synthetic set (folders.synthetic_data), rendered when missing
    scenes: int = SCENES                    # synthetic scenes rendered when data_root is missing (3 images each)
    seed: int = 0
    evaluator: str | None = None            # None: a judge trained on the data (evaluator_path)
    evaluator_epochs: int | None = 3        # None: the train-evaluator default; with evaluator_minutes, the cap
    evaluator_minutes: float | None = None  # the judge's time budget: its steps fit it on this machine
    gt_per_condition: int = PER_CONDITION   # ground-truth renders per test condition
    run: str | None = None                  # None: OUTPUTS/runs/<the batch name>
    train: dict = field(default_factory=dict)  # TrainConfig fields that differ from its defaults; the run's length
                                            # (max_steps, or minutes sized on this machine with max_steps their cap)
    device: str | None = None               # cuda, cpu, ... for every step; None: cuda when present
    seeds: tuple[int, ...] = (0, 1, 2)
    splits: tuple[str, ...] = SPLITS
    sampler: str = DEFAULT_SAMPLER
    steps: int = DEFAULT_STEPS[DEFAULT_SAMPLER]
    guidance: tuple[float, ...] = (1.0, 3.0)
    weights: str = "ema"                    # ema | raw: which weights of the checkpoint draw (docs/ablations.md)
    ddpm_steps: int | None = None           # steps of a DDPM arm beside the profile's sampler in `cddpm demo`
    batch: str | None = None                # batch (and run) name; None: the profile's name, plus the data's key
                                            # on other data than the synthetic set
    render_minutes: float | None = None     # what the demo's plan expects of its fixed work: rendering the data,
    sample_minutes: float | None = None     # and the sampling batch with its report and judge check (estimates)
    demo_minutes: float | None = None       # `cddpm demo`'s whole budget: its training gets what data and judge left
                                            # of it, less sample_minutes; None: the training's own minutes


PROFILES: dict[str, Profile] = {
    # the default design at CI size: seconds of every step
    "smoke": Profile("smoke", outputs=str(Path(DEFAULT_OUTPUTS) / "smoke"), scenes=16, evaluator_epochs=1,
                     gt_per_condition=1, train=dict(max_steps=4, batch_size=8), seeds=(0, 1), steps=3,
                     guidance=(1.0, 2.0), weights="raw", ddpm_steps=3),
    # `make demo` fits 20 minutes on 2 cores of any speed: judge and training get minutes and size their work to the
    # machine; rendering and sampling are fixed work, estimated for a slow CPU (docs/any-cpu.md), and the training
    # takes what they leave (10 minutes by the estimates, 02_train's own length); guidance 1: the crop models' best at 6
    # minutes, and the raw weights: a run this short ends above its EMA (docs/ablations.md)
    "demo": Profile("demo", evaluator_epochs=None, evaluator_minutes=2, train=dict(minutes=10), guidance=(1.0,),
                    weights="raw", render_minutes=3, sample_minutes=5, demo_minutes=20),
    # one CPU hour, judged by the full evaluator: crop64, whose 32x32 windows an hour of steps fills (it reads above
    # zoom64 there with fewer steps, docs/ablations.md); no DDPM arm: DDPM-1000 costs 50 times a 20-step pass, about
    # 12 minutes a split at guidance 3 on a 2-core CPU (docs/results.md)
    "cpu": Profile("cpu", evaluator_epochs=None, train=dict(preset="crop64", minutes=60), seeds=(0, 1, 2, 3, 4),
                   guidance=(1.0, 3.0)),
    # a Colab disconnect loses at most 10 minutes of training, whatever the GPU (not yet timed on a T4)
    "colab": Profile("colab", evaluator_epochs=None,
                     train=dict(preset="colab", max_steps=40000, batch_size=64, lr=2e-4, save_minutes=10),
                     seeds=(0, 1, 2, 3, 4), guidance=(1.0, 2.0, 3.0), ddpm_steps=1000),
    # the course's recipe
    "reference": Profile("reference", evaluator_epochs=None,
                         train=dict(preset="reference", max_steps=60000, batch_size=64, lr=2e-4,
                                    prediction_type="epsilon"),
                         seeds=(0, 1, 2, 3, 4), sampler="ddpm", steps=1000, guidance=(1.0,), ddpm_steps=1000),
}


def train_config(p: Profile, resume: bool | None = None, **model_overrides):
    """The ``TrainConfig`` of a profile (``resume=None``: continue its run when it has checkpoints); ``model_overrides``
    replace fields of its preset."""
    from .. import model, provenance, runs
    from ..train import TrainConfig

    if resume is None:
        resume = bool(runs.checkpoints(p.run)) if (Path(p.run) / "config.json").is_file() else False
    steps = p.train.get("max_steps")
    saves = {"save_every": max(1, steps // 4)} if steps else {}
    config = TrainConfig(**{**saves, **p.train}, data=p.data_root, out=p.run, resume=resume, device=p.device,
                         hold_out=not provenance.rendered(p.data_root))
    return dataclasses.replace(config, model=model.override(config.model, **model_overrides))


def evaluator_path(p: Profile) -> Path:
    """The profile's judge: the one it names, else the one 01_data trains on its data, filed under the data's key
    (``checkpoint`` with train-evaluator's defaults, else ``minutesM`` or ``epochsN``)."""
    from ..provenance import data_key

    if p.evaluator is not None:
        return Path(p.evaluator)
    name = ("checkpoint" if p.evaluator_epochs is None and p.evaluator_minutes is None else
            f"minutes{p.evaluator_minutes:g}" if p.evaluator_minutes else f"epochs{p.evaluator_epochs}")
    return folders.evaluator(p.outputs, data_key(p.data_root), name)


def get(name: str | None = None, **overrides) -> Profile:
    """The named profile with every non-``None`` override applied (a ``TrainConfig`` field to its ``train``; a length
    given replaces the profile's), its data root, run and batch name filled in; no name: ``CDDPM_PROFILE`` when set
    (CI sets ``smoke``), else ``demo``."""
    name = name or os.environ.get("CDDPM_PROFILE", "demo")
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; use one of {', '.join(PROFILES)}")
    own = {f.name for f in dataclasses.fields(Profile)} - {"train"}
    p, training = PROFILES[name], {k: v for k, v in overrides.items() if k not in own}
    if training:
        from ..train import TrainConfig

        fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"data", "out", "resume", "device", "hold_out"}
        unknown = sorted(set(training) - fields)
        if unknown:
            raise ValueError(f"unknown profile or training field(s) {unknown}; valid: {', '.join(sorted(own | fields))}")
        training = {k: v for k, v in training.items() if v is not None}
        kept = {k: v for k, v in p.train.items() if not (k in LENGTH and training.keys() & set(LENGTH))}
        p = dataclasses.replace(p, train={**kept, **training})
    p = dataclasses.replace(p, **{k: v for k, v in overrides.items() if k in own and v is not None})
    if p.weights not in WEIGHTS:
        raise ValueError(f"weights={p.weights!r}; use one of {', '.join(WEIGHTS)}")
    synthetic = folders.synthetic_data(p.outputs)
    if p.data_root is None or Path(p.data_root) == synthetic:
        p, suffix = dataclasses.replace(p, data_root=str(synthetic)), ""
    else:  # another data set: a run and a batch of their own, never those of the synthetic set
        from ..provenance import data_key

        suffix = "-" + data_key(p.data_root)
    batch = p.batch or p.name + suffix
    return dataclasses.replace(p, batch=batch, run=p.run or str(folders.run(p.outputs, batch)))
