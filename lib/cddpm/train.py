"""Training a ``ConditionalUNet`` on an i-CLEVR root with accelerate: the split sits on the device and batches are
drawn from a ``(seed, epoch)`` permutation, so a resumed run sees exactly the batches it would have seen."""
from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import broadcast_object_list, is_compiled_module, parse_flag_from_env, set_seed
from accelerate.utils.constants import SCALER_NAME
from accelerate.utils.other import load as accelerate_load
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel
from safetensors.torch import save_file

from . import budget, canvas, figures, folders, runs
from .choices import DEFAULT_DATA, DEFAULT_OUTPUTS, DEFAULT_PRECISION, DEFAULT_PRESET
from .data import ICLEVRDataset, held_out, to_float
from .device import choose_precision, describe_precision
from .device import resolve as resolve_device
from .diffusion import check_prediction_type, train_scheduler, training_loss
from .model import ConditionalUNet, ModelConfig, preset
from .paths import claim_folder, publish, temporary_sibling, write_json, write_text
from .progress import tqdm
from .provenance import mapping_sha

# settings that may differ when a run is resumed; every other one must match the run's config.json
# (``minutes`` is checked against the step count the run was sized to, see _recorded_budget)
RESUMABLE = ("data", "out", "preset", "max_steps", "epochs", "save_every", "keep", "log_every", "minutes",
             "mixed_precision", "channels_last", "compile", "tensorboard", "resume", "inexact_resume", "device",
             "save_minutes")


@dataclass
class TrainConfig:
    """Every setting of a training run, defaulting to the recipe of the demo and cpu profiles (whose runs
    docs/ablations.md measures); ``RUN/config.json`` stores it (``model`` and ``train`` parts)."""

    data: str = DEFAULT_DATA
    out: str = str(folders.run(DEFAULT_OUTPUTS, DEFAULT_PRESET))
    model: ModelConfig | None = None   # None: the preset's
    preset: str | None = DEFAULT_PRESET  # the preset ``model`` started from (then a record only)
    max_steps: int | None = None       # optimiser steps; give this, ``epochs`` or ``minutes`` (then it caps them)
    epochs: float | None = None
    minutes: float | None = None       # time budget: the speed measured at the start sets the steps, so that the
                                       # cosine LR schedule ends on time (config.json's "budget" records them)
    batch_size: int = 32               # per process; one optimiser step sees batch_size * processes * grad_accum
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup: int | None = None          # linear LR warm-up steps, then cosine decay to 0 at the last step; None: a
                                       # tenth of the run, at most 200 (warmup_steps)
    max_grad_norm: float = 1.0
    p_uncond: float = 0.1              # label dropout for classifier-free guidance
    prediction_type: str = "v_prediction"  # or epsilon
    ema_decay: float = 0.9999         # the cap of the EMA decay, which warms up as 1 - (1 + step)^-3/4
    hflip: bool = False                # random horizontal flips: labels allow it, but they mirror the key light
    mixed_precision: str = DEFAULT_PRECISION  # auto | no | fp16 | bf16, checked by cddpm.device.choose_precision
    channels_last: bool = False
    compile: bool = False              # torch.compile the model
    seed: int = 0
    save_every: int = 1000
    save_minutes: float | None = None  # also checkpoint once this much training time passed since the last save
    keep: int = 3                      # checkpoints kept (the newest)
    log_every: int = 50
    tensorboard: bool = False
    resume: bool = False
    inexact_resume: bool = False       # resume although the checkpoint's random states cannot be restored
    device: str | None = None          # cpu or cuda; None: accelerate's choice (the GPU when present)
    hold_out: bool = False             # leave the root's held-out scenes (data.held_out) out of training

    def __post_init__(self):
        if self.model is None:
            self.model = preset(self.preset)
        elif isinstance(self.model, dict):
            self.model = ModelConfig(**self.model)
        self.data, self.out = str(self.data), str(self.out)
        optional = ("max_steps", "epochs", "minutes", "save_minutes")  # None: not given
        positive = ("batch_size", "grad_accum", "save_every", "keep", "log_every", "lr", *optional)
        bad = [f"{k}={v}" for k, v in ((k, getattr(self, k)) for k in positive)
               if not (v is None and k in optional or v is not None and v > 0)]
        if bad:
            raise ValueError(f"{', '.join(bad)} must be positive")
        if self.max_steps is not None and self.epochs is not None:
            raise ValueError("give either max_steps or epochs, not both")
        if self.minutes is not None and self.epochs is not None:
            raise ValueError("give minutes with max_steps as its cap, not with epochs")
        if min(self.warmup or 0, self.weight_decay, self.max_grad_norm) < 0:
            raise ValueError("warmup, weight_decay and max_grad_norm must be >= 0")
        if not 0 <= self.p_uncond < 1:
            raise ValueError(f"p_uncond={self.p_uncond} must lie in [0, 1); 0.1 is usual, 0 disables guidance")
        if not 0 <= self.seed < 2**32:  # set_seed seeds numpy, which takes 32 bits
            raise ValueError(f"seed={self.seed} must be an integer from 0 to {2**32 - 1} (--seed)")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay={self.ema_decay} must lie in [0, 1), e.g. 0.9999")
        check_prediction_type(self.prediction_type)
        if self.hflip and self.model.crop:
            raise ValueError("hflip=True with a crop model would mirror the crop but not its position channels; "
                             "leave --hflip out")

    def train_dict(self) -> dict:
        """The ``train`` part of ``config.json``: every field but ``model`` and ``data``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("model", "data")}


def load_config(run: str | Path) -> TrainConfig:
    """The ``TrainConfig`` a run was trained with, read back from its ``config.json``."""
    stored = runs.read_config(run)
    unknown = sorted(set(stored["train"]) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ValueError(f"{Path(run) / 'config.json'} has unknown training settings {unknown} (written by another "
                         "cddpm version?); use the version that wrote it, or train a new run")
    return TrainConfig(**{**stored["train"], "model": stored["model"], "data": stored["data"], "out": str(run)})


def describe_dataset(ds: ICLEVRDataset, held: torch.Tensor | None = None) -> dict:
    """Size and content hashes of a preloaded training split (its train.json and its decoded pixels), and how many
    held-out images training leaves out: what a resumed run must find again."""
    pixels = hashlib.sha1(ds.images.contiguous().numpy().data).hexdigest()[:16]  # hashes the buffer, no copy
    out = {"split": "train", "images": len(ds), "train_json_sha1": mapping_sha(ds.mapping), "images_sha1": pixels}
    return out if held is None else {**out, "held_out_images": int(held.sum())}


def warmup_steps(warmup: int | None, total_steps: int) -> int:
    """The LR warm-up of a run of ``total_steps``: ``warmup`` capped at half the run, so that it still decays to 0 at
    its last step; by default a tenth of the run, at most 200 steps (a 10-minute CPU run is a few hundred steps)."""
    return min(total_steps // 10, 200) if warmup is None else min(warmup, total_steps // 2)


def make_accelerator(config: TrainConfig) -> Accelerator:
    """The accelerate driver of a run: device, mixed precision (``config.mixed_precision`` resolved for the device
    accelerate picks), gradient accumulation, trackers."""
    on_cpu = config.device is not None and resolve_device(config.device).type == "cpu"
    # the device accelerate will pick, found as its AcceleratorState does (accelerate launch may ask for the CPU)
    device = PartialState(cpu=on_cpu or parse_flag_from_env("ACCELERATE_USE_CPU")).device
    precision, _ = choose_precision(config.mixed_precision, device)
    return Accelerator(mixed_precision=precision, gradient_accumulation_steps=config.grad_accum,
                       log_with="tensorboard" if config.tensorboard else None, project_dir=config.out, cpu=on_cpu)


class Batches:
    """One process's training data on its device and its micro-batches: images in [-1, 1], labels and, for a
    canvas model, the input image it extends (and for a layout model the box around what it added)."""

    def __init__(self, config: TrainConfig, images: torch.Tensor, labels: torch.Tensor, acc: Accelerator,
                 parents: torch.Tensor | None = None, boxes: canvas.TrainingBoxes | None = None):
        self.config, self.accelerator = config, acc
        examples = torch.arange(len(images)) if parents is None else torch.nonzero(parents != canvas.NONE).flatten()
        n, self.per_epoch = len(examples), len(examples) // (config.batch_size * acc.num_processes)
        if n == 0:
            raise ValueError(f"{config.data}/train.json lists no images"
                             f"{' that extend another by one object' if parents is not None else ''}; render the "
                             "root again or point --data at one with training images")
        if self.per_epoch == 0:
            raise ValueError(f"batch size {config.batch_size} x {acc.num_processes} process(es) exceeds the {n} "
                             "training images; lower --batch-size")
        self.parents, self.floor, self.boxes, self.background, self.layout_table = None, None, None, None, None
        if parents is not None:
            floor = canvas.background(images[parents == canvas.EMPTY])
            self.background = to_float(floor)  # the model's empty-floor buffer
            self.floor, self.parents = floor.to(acc.device), parents.to(acc.device)
        if boxes is not None:
            box, ok = boxes.box, boxes.index[boxes.plausible]  # only plausible boxes enter the layout table
            self.layout_table = canvas.layout_table(box[boxes.plausible], labels[ok].argmax(1),
                                                    torch.Generator().manual_seed(config.seed))
            self.boxes = torch.zeros(len(images), 4, dtype=torch.long).index_copy(0, examples, box).to(acc.device)
        self.images, self.labels, self.examples = images.to(acc.device), labels.to(acc.device), examples.to(acc.device)
        self._epoch, self._order = -1, None

    def __call__(self, micro: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Micro-batch number ``micro``: this process's slice of a (seed, epoch) permutation, as floats on the device:
        images, labels and (canvas models) the model input they extend."""
        cfg, acc = self.config, self.accelerator
        epoch, i = divmod(micro, self.per_epoch)
        if epoch != self._epoch:
            order = np.random.default_rng([cfg.seed, epoch]).permutation(len(self.examples))
            self._epoch, self._order = epoch, self.examples[torch.from_numpy(order).to(acc.device)]
        start = (i * acc.num_processes + acc.process_index) * cfg.batch_size
        index = self._order[start:start + cfg.batch_size]
        x, base = to_float(self.images[index]), None
        if self.parents is not None:
            base = to_float(canvas.parent_images(self.images, self.parents, self.floor, index))
        if self.boxes is not None:
            base = torch.cat([base, canvas.box_mask(self.boxes[index], x.shape[-1]).to(base.dtype)], 1)
            if cfg.model.crop:
                base, corner, side = canvas.around(base, self.boxes[index], cfg.model.crop, cfg.model.zoom)
                x = canvas.cut(x, corner, cfg.model.crop, side)
        if cfg.hflip:
            flip = (torch.rand(len(x), device=x.device) < 0.5)[:, None, None, None]
            x = torch.where(flip, x.flip(3), x)
            base = None if base is None else torch.where(flip, base.flip(3), base)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
            base = None if base is None else base.contiguous(memory_format=torch.channels_last)
        return x, self.labels[index], base


class Trainer:
    """The model, optimiser, LR schedule and EMA of one run, one optimiser step at a time over :class:`Batches`,
    with the checkpoint hooks that save and restore them exactly."""

    def __init__(self, config: TrainConfig, images: torch.Tensor, labels: torch.Tensor,
                 accelerator: Accelerator | None = None, parents: torch.Tensor | None = None,
                 boxes: canvas.TrainingBoxes | None = None):
        if config.max_steps is None and config.epochs is None:
            raise ValueError("the run has no length; give max_steps, epochs or minutes (--max-steps N, --epochs E "
                             "or --minutes M)")
        if config.model.canvas != (parents is not None):
            raise ValueError("a canvas model trains on (image, parent) pairs and only a canvas model does; "
                             "pass parents from cddpm.canvas.pairs exactly when config.model.canvas is set")
        self.config = config
        self.noise_scheduler = train_scheduler(prediction_type=config.prediction_type)
        self.accelerator = acc = accelerator or make_accelerator(config)
        if config.model.layout and boxes is None:
            boxes = layout_boxes(images, parents, acc)
        self.batches = Batches(config, images, labels, acc, parents, boxes if config.model.layout else None)
        self.per_epoch = self.batches.per_epoch
        self.total_steps = config.max_steps or max(1, math.ceil(config.epochs * self.per_epoch / config.grad_accum))
        torch.manual_seed(config.seed)  # the same initial weights on every process
        self.net = ConditionalUNet(config.model)
        if self.batches.background is not None:
            self.net.background.copy_(self.batches.background)
        if self.batches.layout_table is not None:
            self.net.layout_boxes.copy_(self.batches.layout_table)
        if config.channels_last:
            self.net.to(memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(self.net.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                      fused=True if acc.device.type == "cuda" else None)
        lr_scheduler = self._schedule(optimizer, self.total_steps)
        self.model, self.optimizer, self.lr_scheduler = acc.prepare(self.net, optimizer, lr_scheduler)
        if config.compile and not is_compiled_module(self.model):
            self.model = torch.compile(self.model)
        # EMA warm-up (diffusers' recipe): decay 1 - (1 + step)^-3/4, capped at ema_decay; about 0.997 after
        # 2k steps and 0.9994 after 20k, so short CPU runs and long GPU runs both get a sensible average
        self.ema = EMAModel(self.net.parameters(), decay=config.ema_decay, use_ema_warmup=True, power=0.75,
                            foreach=True)
        self.step, self.train_seconds = 0, 0.0
        acc.register_save_state_pre_hook(self._save_weights)
        acc.register_load_state_pre_hook(self._load_weights)
        set_seed(config.seed, device_specific=True)  # noise, timesteps, label dropout, flips

    def _schedule(self, optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
        """The cosine LR schedule with warm-up of a run of ``total_steps``; accelerate steps a prepared scheduler once
        per process per optimiser step."""
        n = self.accelerator.num_processes
        return get_cosine_schedule_with_warmup(optimizer, warmup_steps(self.config.warmup, total_steps) * n,
                                               total_steps * n)

    def resize(self, total_steps: int) -> None:
        """End the run at ``total_steps`` instead: its LR schedule (warm-up included) is that of a run of that
        length from here on."""
        inner = self.lr_scheduler.scheduler
        self.total_steps = total_steps
        throwaway = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        inner.lr_lambdas = self._schedule(throwaway, total_steps).lr_lambdas
        inner.last_epoch -= 1
        inner.step()  # the learning rate of this step on the new schedule

    def train_step(self) -> torch.Tensor:
        """One optimiser step over ``grad_accum`` micro-batches; returns the mean loss (a device tensor)."""
        cfg, acc = self.config, self.accelerator
        total = torch.zeros((), device=acc.device)
        for a in range(cfg.grad_accum):
            x0, labels, base = self.batches(self.step * cfg.grad_accum + a)
            with acc.accumulate(self.model):
                loss = training_loss(self.model, self.noise_scheduler, x0, labels, cfg.p_uncond, canvas=base)
                acc.backward(loss)
                if acc.sync_gradients and cfg.max_grad_norm:
                    acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                self.lr_scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
            total += loss.detach()
        self.ema.step(self.net.parameters())
        self.step += 1
        return total / cfg.grad_accum

    @property
    def epoch(self) -> float:
        """Epochs completed (fractional)."""
        return self.step * self.config.grad_accum / self.per_epoch

    def save(self, run: str | Path) -> Path:
        """Write ``RUN/checkpoints/step-N`` atomically (temporary folder, then rename); keep the newest ``keep``."""
        acc = self.accelerator
        final = runs.checkpoint_dir(run, self.step)
        tmp = temporary_sibling(final, owner=broadcast_object_list([os.getpid()])[0])  # the main process's: one for all
        acc.wait_for_everyone()
        try:
            acc.save_state(str(tmp))  # optimiser, LR scheduler, RNG states (+ weights, EMA, state via _save_weights)
        except BaseException:  # a full disk or an interrupt: no half-written folder is left behind
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        acc.wait_for_everyone()
        if acc.is_main_process:
            publish(tmp, final)
            runs.prune(run, self.config.keep)
        acc.wait_for_everyone()
        return final

    def load(self, folder: Path) -> None:
        """Continue from a checkpoint folder written by ``save``: exactly (accelerate restores the random states), or a
        one-line refusal unless ``inexact_resume``."""
        acc = self.accelerator
        before = runs.previous(folder)
        self._fix = (f"move {folder} aside and --resume again to continue from {before.name}" if before else
                     "the run keeps no earlier checkpoint; train a new --out")
        for name in ("optimizer.bin", "scheduler.bin", f"random_states_{acc.process_index}.pkl"):
            path = folder / name
            try:
                states = accelerate_load(path, map_location="cpu")
                if name.startswith("random_states") and "torch_manual_seed" not in states:
                    raise ValueError("no torch random state in it")
            except Exception as err:  # missing, truncated or foreign: torch raises many types
                problem = runs.unreadable(path, err, self._fix)
                if not name.startswith("random_states"):
                    raise problem from None
                if not self.config.inexact_resume:
                    raise ValueError(f"cannot resume exactly: {problem}; or pass --inexact-resume to go on with "
                                     "other noise and data order") from None
                _say(acc, f"warning: {path} cannot be read; resuming inexactly (--inexact-resume)")
        # a bf16 or fp32 checkpoint resumed in fp16 (on another GPU) has no loss scale to restore: it starts afresh
        scaler = acc.scaler
        if not (folder / SCALER_NAME).is_file():
            acc.scaler = None
        try:
            acc.load_state(str(folder))
        finally:
            acc.scaler = scaler

    def _save_weights(self, models: list, weights: list, folder: str) -> None:
        """accelerate hook: the plain ConditionalUNet's weights (no DDP/compile prefixes), the EMA and the step."""
        weights.clear()  # accelerate would store the wrapped model's keys; we write our own files instead
        if not self.accelerator.is_main_process:
            return
        folder = Path(folder)
        state = {k: v.detach().contiguous().cpu() for k, v in self.net.state_dict().items()}
        save_file(state, folder / runs.MODEL_FILE)
        names = [name for name, _ in self.net.named_parameters()]
        state.update({k: v.detach().contiguous().cpu() for k, v in zip(names, self.ema.shadow_params)})
        save_file(state, folder / runs.EMA_FILE)
        ema = {k: v for k, v in self.ema.state_dict().items() if k != "shadow_params"}
        write_json(folder / runs.STATE_FILE, {
            "step": self.step, "epoch": self.epoch, "train_seconds": self.train_seconds, "ema": ema,
            "num_processes": self.accelerator.num_processes})

    def _load_weights(self, models: list, folder: str) -> None:
        """accelerate hook: restore what ``_save_weights`` wrote."""
        models.clear()
        folder = Path(folder)
        state = runs.read_state(folder)
        self.net.load_state_dict(runs.load_weights(folder / runs.MODEL_FILE, self._fix))
        ema = runs.load_weights(folder / runs.EMA_FILE, self._fix)
        shadow = [ema[name].to(param.device) for name, param in self.net.named_parameters()]
        self.ema.load_state_dict({**state["ema"], "shadow_params": shadow})
        self.step, self.train_seconds = state["step"], state["train_seconds"]


class _StopOnInterrupt:
    """The first Ctrl-C asks the loop to stop after the current step (and save); a second one aborts."""

    def __init__(self, enabled: bool):
        self.requested = False
        self._enabled = enabled and threading.current_thread() is threading.main_thread()

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)

    def __enter__(self):
        if self._enabled:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._enabled:
            signal.signal(signal.SIGINT, self._previous)


def _mismatches(stored: dict, config: TrainConfig, dataset: dict) -> list[str]:
    """``field (run X, now Y)`` for every model, data or fixed training setting that differs from the run."""
    now = {"model": config.model.to_dict(), "train": config.train_dict(), "dataset": dataset}
    diffs = []
    for part, values in json.loads(json.dumps(now)).items():  # as config.json holds them (tuples as lists)
        was = stored.get(part, {})
        for key, value in values.items():
            if (part != "train" or key not in RESUMABLE) and (key not in was or was[key] != value):
                diffs.append(f"{part}.{key} (run {was.get(key, 'unset')}, now {value})")
    return diffs


def _starting_point(config: TrainConfig, dataset: dict) -> Path | None:
    """The checkpoint to resume from (None: a fresh run); refuses to overwrite or to resume a different run."""
    run = claim_folder(config.out, "--out", "training run", lambda run: [] if (run / "config.json").is_file() or
                       [p.name for p in run.iterdir()] == [runs.LOCK_FILE] else None)
    if not (run / "config.json").is_file():
        return None
    if not config.resume:
        raise FileExistsError(f"{run} already holds a training run; pass --resume to continue it or choose another --out")
    diffs = _mismatches(runs.read_config(run), config, dataset)
    if diffs:
        raise ValueError(f"cannot resume {run}: {'; '.join(diffs)}; use the run's settings (a field it lacks: the cddpm "
                         "version that wrote it) or train a new --out")
    found = runs.checkpoints(run)
    return found[-1] if found else None


def _say(acc: Accelerator, message: str) -> None:
    """A status line on stderr (stdout stays for results), once per machine, without breaking the progress bar."""
    if acc.is_local_main_process:
        tqdm.write(message, file=sys.stderr)


def layout_boxes(images: torch.Tensor, parents: torch.Tensor, acc: Accelerator) -> canvas.TrainingBoxes:
    """The boxes a layout model trains on (:func:`cddpm.canvas.training_boxes` against the empty floor), their
    statistics said once."""
    found = canvas.training_boxes(images, parents)
    for line in found.summary():
        _say(acc, f"layout boxes, {line}")
    return found


def _probe(config: TrainConfig, images: torch.Tensor, labels: torch.Tensor, parents: torch.Tensor | None,
           boxes: canvas.TrainingBoxes | None) -> tuple[budget.Speed, float]:
    """This run's speed on this machine, timed on a throwaway Trainer (on its own accelerator, with a schedule it
    never finishes), and the seconds that Trainer took to set up."""
    built = time.perf_counter()
    probe = Trainer(dataclasses.replace(config, max_steps=10**6, tensorboard=False), images, labels, None, parents,
                    boxes)
    built = time.perf_counter() - built

    def agree(mine: bool) -> bool:  # processes stop probing together: each probe step is a collective one
        if mine:
            probe.accelerator.set_trigger()
        return probe.accelerator.check_trigger()

    return budget.measure(probe.train_step, agree), built


def _size_budget(config: TrainConfig, images: torch.Tensor, labels: torch.Tensor, parents: torch.Tensor | None,
                 boxes: canvas.TrainingBoxes | None, acc: Accelerator, called: float) -> dict:
    """The steps of a ``minutes`` run on this machine: as many as fit at the probed speed in what is left of the
    budget (counted from ``called``), the run's own set-up counted once more."""
    speed, built = _probe(config, images, labels, parents, boxes)
    gc.collect()  # the probe's model, optimiser and device copy of the data
    rate, spent = speed.steps_per_s, time.perf_counter() - called + built
    if acc.num_processes > 1:  # one step count for all
        rate, spent = acc.reduce(torch.tensor([rate, spent], device=acc.device), "mean").tolist()
    steps = budget.steps_for_budget(rate, config.minutes, spent, config.max_steps)
    images_per_s = rate * config.batch_size * acc.num_processes * config.grad_accum
    _say(acc, f"{config.out}: {config.minutes:g}-minute budget: {rate:.3g} steps/s ({images_per_s:.0f} images/s) over "
              f"{speed.steps} timed steps on this machine, {spent:.0f} s before training -> {steps} steps"
              + (" (the max_steps cap)" if steps == config.max_steps else ""))
    return {"minutes": config.minutes, "steps": steps, "steps_per_s": rate, "images_per_s": images_per_s,
            "probe_steps": speed.steps, "probe_seconds": speed.seconds, "seconds_before_training": spent,
            "max_steps": config.max_steps}


def _retime(trainer: Trainer, sized: dict, config: TrainConfig, acc: Accelerator, spent: float) -> dict:
    """Size a budgeted run again from its own steps so far (``spent``: seconds since it was called), end it there,
    and record both sizes in ``config.json``; returns the new budget record."""
    rate, spent = acc.reduce(torch.tensor([trainer.step / trainer.train_seconds, spent], device=acc.device),
                             "mean").tolist()
    steps = budget.retimed_steps(trainer.step, rate, config.minutes * 60 - spent, config.max_steps)
    trainer.resize(steps)
    _say(acc, f"{config.out}: re-timed at step {trainer.step}: {rate:.3g} steps/s (the probe read "
              f"{sized['steps_per_s']:.3g}) -> {steps} steps instead of {sized['steps']}")
    sized = {**sized, "steps": steps, "probed_steps": sized["steps"], "retimed_at_step": trainer.step,
             "retimed_steps_per_s": rate}
    if acc.is_main_process:
        path = Path(config.out) / "config.json"
        write_json(path, {**json.loads(path.read_text()), "budget": sized})
    return sized


def _recorded_budget(run: Path, config: TrainConfig) -> dict:
    """The steps a ``minutes`` run was sized to at its start: a resume keeps them (or refuses), so it stays exact."""
    recorded = runs.read_config(run).get("budget")
    if recorded is None or recorded["minutes"] != config.minutes:
        was = f"sized for {recorded['minutes']:g} minutes ({recorded['steps']} steps)" if recorded else "set in steps"
        raise ValueError(f"cannot resume {run} with a {config.minutes:g}-minute budget: its length was {was}; resume "
                         "with its own settings, give --max-steps N to set another length, or move it aside")
    return recorded


def train(config: TrainConfig, on_log: Callable[[dict], None] | None = None) -> dict:
    """Train (or, with ``config.resume``, continue) the run in ``config.out``; return the last log record.
    ``on_log(record)`` gets each ``metrics.jsonl`` record on the main process; Ctrl-C saves, then raises."""
    called = time.perf_counter()
    acc = make_accelerator(config)
    with runs.locked(config.out, acc.is_main_process):  # one trainer per run folder
        return _train(config, on_log, acc, called)


def _train(config: TrainConfig, on_log: Callable[[dict], None] | None, acc: Accelerator, called: float) -> dict:
    """:func:`train`'s work, done while the run folder is locked."""
    precision = {"used": acc.mixed_precision, "reason": choose_precision(config.mixed_precision, acc.device)[1]}
    run = Path(config.out)
    with acc.main_process_first():
        ds = ICLEVRDataset(config.data, size=config.model.sample_size, preload=True)
    held = held_out(list(ds.mapping)) if config.hold_out else None
    dataset = describe_dataset(ds, held)
    names, images, labels, parents = list(ds.mapping), ds.images, ds.labels, None
    if held is not None:  # whole scenes, so every kept image still finds the one it extends
        names, images, labels = [n for n, h in zip(names, held.tolist()) if not h], images[~held], labels[~held]
    if config.model.canvas:
        objects = [ds.mapping[n] for n in names]
        parents, labels = canvas.pairs(names, objects)
        dataset.update(canvas.usage(names, objects, parents))
        left = "; ".join(f"{n} {why}" for why, n in dataset["unused"].items())
        _say(acc, f"canvas training uses {dataset['used']} of {len(names)} images in {config.data}/train.json"
                  + (f"; left out: {left}" if left else ""))
    start = _starting_point(config, dataset)
    acc.wait_for_everyone()  # every process has looked at the run before the main one writes to it
    sized, boxes = None, layout_boxes(images, parents, acc) if config.model.layout else None
    if config.minutes is not None:
        sized = (_recorded_budget(run, config) if start is not None else
                 _size_budget(config, images, labels, parents, boxes, acc, called))
    trainer = Trainer(config if sized is None else dataclasses.replace(config, max_steps=sized["steps"]), images,
                      labels, acc, parents, boxes)
    if start is not None:
        trainer.load(start)
        if trainer.step > trainer.total_steps:
            raise ValueError(f"{run} is at step {trainer.step}, past the {trainer.total_steps} steps of --max-steps/"
                             "--epochs; give a larger value to continue, or leave it out")
        _say(acc, f"resuming {run} from {start.name}"
                  + (f" (sized for {sized['minutes']:g} minutes at its start: {sized['steps']} steps)" if sized else ""))
    _say(acc, describe_precision(precision["used"], precision["reason"]))  # after every refusal: an error stays one line
    metrics = run / runs.METRICS_FILE
    if acc.is_main_process:
        write_json(run / "config.json", {
            "model": config.model.to_dict(), "train": config.train_dict(),
            "scheduler": dict(trainer.noise_scheduler.config), "data": str(Path(config.data).resolve()),
            "dataset": dataset, "processes": acc.num_processes, "device": str(acc.device), "precision": precision,
            **({"budget": sized} if sized else {})})
        kept = [r for r in runs.read_metrics(run) if r["step"] <= trainer.step]
        write_text(metrics, "".join(json.dumps(r) + "\n" for r in kept))
    if config.tensorboard:
        acc.init_trackers("tensorboard")
    retime = sized is not None and start is None  # once, before the first checkpoint, so a resume stays exact

    if trainer.step >= trainer.total_steps:
        _say(acc, f"{run} is already trained to step {trainer.step}; raise --max-steps/--epochs to continue")
    images_per_step = config.batch_size * acc.num_processes * config.grad_accum
    saved_at = logged_at = trainer.train_seconds  # training time at the last checkpoint (save_minutes), the last log
    clock = time.perf_counter() - trainer.train_seconds  # train_seconds = perf_counter() - clock; saving is not counted
    record, loss_sum, window = {}, 0.0, 0
    bar = tqdm(total=trainer.total_steps, initial=trainer.step, desc=run.name, unit="step", dynamic_ncols=True,
               disable=not acc.is_local_main_process)
    with _StopOnInterrupt(acc.num_processes == 1) as stop:
        while trainer.step < trainer.total_steps:
            loss_sum, window = loss_sum + trainer.train_step(), window + 1
            bar.update()
            trainer.train_seconds = time.perf_counter() - clock
            if retime and broadcast_object_list([trainer.step >= budget.MIN_STEPS and trainer.train_seconds
                                                 >= budget.RETIME_AFTER * config.minutes * 60])[0]:
                retime = False
                sized = _retime(trainer, sized, config, acc, time.perf_counter() - called)
                bar.total = trainer.total_steps
            boundary = trainer.step % config.log_every == 0
            last = trainer.step == trainer.total_steps or stop.requested
            if boundary or last:
                loss = acc.reduce(loss_sum / window, "mean").item()  # waits for the device
                trainer.train_seconds = time.perf_counter() - clock
                record = {"step": trainer.step, "epoch": round(trainer.epoch, 4), "loss": loss,
                          "lr": trainer.lr_scheduler.get_last_lr()[0],
                          "images_per_s": window * images_per_step / (trainer.train_seconds - logged_at),
                          "train_seconds": round(trainer.train_seconds, 2), "log_every": config.log_every}
                logged_at, loss_sum, window = trainer.train_seconds, 0.0, 0
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{record['lr']:.2e}", img_s=f"{record['images_per_s']:.0f}")
                if acc.is_main_process:
                    with metrics.open("a") as f:
                        f.write(json.dumps(record) + "\n")
                    if on_log is not None:
                        on_log(record)
                if config.tensorboard:
                    acc.log({k: record[k] for k in ("loss", "lr", "images_per_s", "epoch")}, step=trainer.step)
            save_due = (boundary and config.save_minutes is not None  # the main process's clock decides for all
                        and broadcast_object_list([trainer.train_seconds - saved_at >= config.save_minutes * 60])[0])
            if trainer.step % config.save_every == 0 or last or save_due:
                retime = False
                pause = time.perf_counter()
                trainer.save(run)
                clock += time.perf_counter() - pause
                saved_at = trainer.train_seconds
            if last:
                break
    bar.close()
    if acc.is_main_process:
        figures.loss_curve(run, run / "loss.png")
    if config.tensorboard:
        acc.end_training()
    checkpoint = runs.checkpoint_dir(run, trainer.step)
    if stop.requested:
        raise KeyboardInterrupt(f"stopped at step {trainer.step}; saved {checkpoint}; continue with --resume")
    return {**record, "step": trainer.step, "checkpoint": str(checkpoint), "run": str(run),
            **({"budget": sized} if sized else {})}
