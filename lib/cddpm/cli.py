"""The ``cddpm`` command line: one ``_add_*`` function (arguments) and one handler per subcommand; library imports
happen inside handlers so that ``cddpm --help`` stays instant."""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import json
import sys
from pathlib import Path

from . import __version__
from .choices import (
    CONDITIONINGS,
    DEFAULT_DATA,
    DEFAULT_EVALUATOR,
    DEFAULT_NOTEBOOKS,
    DEFAULT_OUTPUTS,
    DEFAULT_SAMPLER,
    DEFAULT_STEPS,
    DENOISE_FRAMES,
    EDIT_THRESHOLD,
    GUIDANCE,
    IMAGE_SIZE,
    MIXED_PRECISIONS,
    PER_CONDITION,
    PREDICTION_TYPES,
    PRESETS,
    PROBE_SET,
    PROFILES,
    SAMPLE_BATCH,
    SAMPLERS,
    SCENES,
    SEED,
    SPLITS,
    WEIGHTS,
)


def _add_device(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when present)")


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2))


def _add_fidelity(p: argparse.ArgumentParser) -> None:
    f = p.add_argument_group("fidelity", "Frechet distance and KID in the judge's pooled features (cddpm.evaluation.fidelity)")
    f.add_argument("--reference", type=Path, metavar="DIR", help="ground-truth renders of the images' conditions "
                   "(`cddpm render --out DIR --conditions/--split`): adds fd, kid_mean, kid_std")
    f.add_argument("--floor-reference", type=Path, metavar="DIR", help="renders of exactly the images' conditions at "
                   "another --seed: adds the floor (its distances to --reference: fd_floor, ...) and fd_over_floor")
    f.add_argument("--inception", action="store_true", help="also standard Inception FID (fid, fid_floor); needs "
                   "torch-fidelity and a download of its weights")


def _fidelity_options(args) -> dict:
    return dict(reference=args.reference, floor_reference=args.floor_reference, inception=args.inception)


def _default(source, name: str):
    """``name``'s default in ``source`` (a dataclass or a function: the one place it is set), or None."""
    if dataclasses.is_dataclass(source):
        found = {f.name: f for f in dataclasses.fields(source)}.get(name)
        if found is not None and found.default_factory is not dataclasses.MISSING:
            return found.default_factory()
        return None if found is None or found.default is dataclasses.MISSING else found.default
    parameter = inspect.signature(source).parameters.get(name)
    return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


def _defaults_from(module: str, name: str) -> type[argparse.HelpFormatter]:
    """A help formatter that ends each option's help with its default in ``module.name``, imported only when the
    help is shown (building the parser imports no torch); a left-out option (None) takes it."""

    class DefaultsFrom(argparse.HelpFormatter):
        def _get_help_string(self, action: argparse.Action) -> str:
            if action.required or isinstance(action, argparse._StoreTrueAction):
                return action.help
            value = _default(getattr(importlib.import_module(module), name), action.dest)
            if value is None:
                return action.help
            if isinstance(value, bool):
                value = "yes" if value else "no"
            elif isinstance(value, list):
                value = " ".join(map(str, value))
            elif isinstance(value, float):
                value = f"{value:g}"
            return f"{action.help} [{value}]"

    return DefaultsFrom


# --- render ------------------------------------------------------------------------------------

def _add_render(sub) -> None:
    p = sub.add_parser("render", help="render the synthetic i-CLEVR set (or ground truth for conditions)",
                       description="Write a synthetic i-CLEVR root in the official layout.")
    p.add_argument("--out", required=True, type=Path, help="folder to write (refused if not empty unless --force)")
    p.add_argument("--scenes", type=int, default=SCENES, help="scenes of 3 images each [%(default)s]")
    p.add_argument("--seed", type=int, default=SEED, help="scenes, positions, colours [%(default)s]")
    p.add_argument("--size", type=int, default=IMAGE_SIZE, help="image side in pixels (256 for figures) [%(default)s]")
    p.add_argument("--force", action="store_true", help="replace an earlier render in --out")
    p.add_argument("--realistic", action="store_true", help="the same scenes as Blender's CLEVR renders them: each "
                   "scene's own jittered camera and lights, a slightly different light per step, sample noise, "
                   "reflections in metal")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--conditions", type=Path, help="a test.json-style file: render --per-condition images of each")
    src.add_argument("--split", choices=SPLITS, help="render the conditions of this split of --data")
    src.add_argument("--labels-from", type=Path, metavar="ROOT",
                     help="render a twin of ROOT's train.json (with ROOT's test.json and new_test.json)")
    p.add_argument("--data", type=Path, default=Path(DEFAULT_DATA), help="root whose --split conditions to render")
    p.add_argument("--per-condition", type=int, default=PER_CONDITION,
                   help="images per condition with --conditions/--split [%(default)s]")
    p.set_defaults(func=_render)


def _render(args) -> int:
    from . import data, render
    from .paths import is_within

    # the canonical command (no --force, defaults spelled out) goes into meta.json, whoever calls main()
    source = (f"--conditions {args.conditions} --per-condition {args.per_condition}" if args.conditions else
              f"--split {args.split} --data {args.data} --per-condition {args.per_condition}" if args.split else
              f"--labels-from {args.labels_from}" if args.labels_from else f"--scenes {args.scenes}")
    command = (f"cddpm render --out {args.out} {source} --seed {args.seed} --size {args.size}"
               + " --realistic" * args.realistic)
    common = dict(out=args.out, seed=args.seed, size=args.size, force=args.force, command=command,
                  realistic=args.realistic)
    read = args.conditions or (args.data if args.split else args.labels_from)
    if read is not None and is_within(read, args.out):
        raise ValueError(f"--out {args.out} holds the input {read}, which a render would replace; choose another --out")
    if args.conditions or args.split:
        conditions = (data.load_condition_file(args.conditions) if args.conditions
                      else data.load_condition_lists(args.data, args.split))
        path = render.render_conditions(conditions, per_condition=args.per_condition, **common)
    elif args.labels_from:
        splits = {split: data.load_condition_lists(args.labels_from, split) for split in SPLITS}
        path = render.render_twin(data.load_mapping(args.labels_from, "train"), splits=splits, **common)
    else:
        path = render.render_dataset(scenes=args.scenes, **common)
    print(path)
    return 0


# --- boxes -------------------------------------------------------------------------------------

def _add_boxes(sub) -> None:
    p = sub.add_parser("boxes", help="show the boxes a layout model will learn from a root, before training",
                       description="Per step k (NAME_k.png): how many training boxes (around what each image adds "
                                   "to the one it extends), how large, and how many are too large for the layout "
                                   "table; the trainer's own boxes.")
    p.add_argument("--data", type=Path, required=True, help="i-CLEVR root")
    p.add_argument("--json", type=Path, metavar="OUT",
                   help="also write every training image's box, {file name: [y0, x0, y1, x1]} (ends exclusive)")
    p.add_argument("--size", type=int, default=IMAGE_SIZE,
                   help="image side of the boxes: the layout model's sample size [%(default)s]")
    p.add_argument("--force", action="store_true", help="replace a boxes file written before")
    p.set_defaults(func=_boxes)


def _boxes(args) -> int:
    from . import canvas
    from .render import SIZE_RANGE

    if not SIZE_RANGE[0] <= args.size <= SIZE_RANGE[1]:
        raise ValueError(f"--size must be from {SIZE_RANGE[0]} to {SIZE_RANGE[1]}, got {args.size}")
    if args.json is not None:
        canvas.check_boxes_target(args.json, args.data, args.force)
    names, found = canvas.root_boxes(args.data, args.size)
    print("\n".join(found.summary()))
    if args.json is not None:
        print(canvas.write_boxes(args.json, names, found))
    return 0


# --- batch, demo (papermill) -------------------------------------------------------------------

def _add_batch(sub) -> None:
    p = sub.add_parser("batch", help="execute 03_sample.ipynb over seeds/checkpoints/settings, then 04_report.ipynb",
                       description="Papermill batch: one executed 03_sample notebook per combination, then the report.",
                       formatter_class=_defaults_from("cddpm.workflow.batch", "Batch"))
    p.add_argument("--run", required=True, help="training run folder")
    p.add_argument("--name", required=True, help="batch name: OUTPUTS/samples/NAME, OUTPUTS/papermill/NAME, "
                   "OUTPUTS/report/NAME")
    p.add_argument("--seeds", type=int, nargs="+", help="sampling seeds")
    p.add_argument("--checkpoints", nargs="+", help="last and/or step-N")
    p.add_argument("--weights", nargs="+", choices=WEIGHTS, help="the checkpoints' EMA and/or raw weights")
    p.add_argument("--splits", nargs="+", choices=SPLITS, help="condition splits")
    p.add_argument("--samplers", nargs="+", choices=SAMPLERS, help="DDPM, DDIM or DPM-Solver++")
    p.add_argument("--steps", type=int, nargs="+", help="sampling steps")
    p.add_argument("--guidance", type=float, nargs="+", help="classifier-free guidance scales")
    p.add_argument("--evaluator", required=True, help="the judge's checkpoint (the course's checkpoint.pth, or one "
                   f"of `cddpm train-evaluator`, e.g. {DEFAULT_EVALUATOR})")
    p.add_argument("--data", default=None, help="i-CLEVR root for the split conditions (default: the run's)")
    p.add_argument("--notebooks", help="folder holding the notebooks")
    p.add_argument("--outputs", help="outputs folder")
    p.add_argument("--force", action="store_true", help="re-run combinations already done")
    _add_device(p)
    p.set_defaults(func=_batch)


def _batch(args) -> int:
    from .workflow.batch import Batch, run_batch

    fields = {f.name for f in dataclasses.fields(Batch)}  # an option left out (None) takes Batch's default
    result = run_batch(Batch(**{k: v for k, v in vars(args).items() if k in fields and v is not None}))
    _print_json(result)
    return 1 if result["failed"] else 0


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the CPU demo: render, train evaluator and model, sample a batch, report",
                       description="Execute the four notebooks with papermill on a profile (demo by default).")
    p.add_argument("--profile", default=None, choices=PROFILES, help="default: $CDDPM_PROFILE or demo")
    p.add_argument("--data", type=Path, default=None, metavar="ROOT",
                   help="i-CLEVR root to train and judge on, e.g. the course's files (default: the profile's "
                        "synthetic set, rendered when missing)")
    p.add_argument("--evaluator", type=Path, default=None, metavar="PATH",
                   help="the judge, e.g. the course's checkpoint.pth (default: one trained on the data by 01_data)")
    p.add_argument("--notebooks", default=DEFAULT_NOTEBOOKS, help="folder holding the notebooks [%(default)s]")
    p.add_argument("--outputs", type=Path, default=Path(DEFAULT_OUTPUTS),
                   help=f"where everything goes: data when rendered, runs, judges, samples, report [{DEFAULT_OUTPUTS}]")
    _add_device(p)
    p.set_defaults(func=_demo)


def _demo(args) -> int:
    from .workflow.batch import run_demo

    return run_demo(profile=args.profile, notebooks=args.notebooks, outputs=str(args.outputs), device=args.device,
                    data=args.data and str(args.data), evaluator=args.evaluator and str(args.evaluator))


# --- sample ------------------------------------------------------------------------------------

def _add_sampling(p: argparse.ArgumentParser) -> None:
    """The checkpoint and sampling options that ``cddpm sample`` and ``cddpm add`` share (:func:`_request` reads them)."""
    p.add_argument("--checkpoint", default="last", help="last or step-N [%(default)s]")
    p.add_argument("--no-ema", dest="ema", action="store_false", help="use the raw weights instead of the EMA")
    p.add_argument("--sampler", choices=SAMPLERS, default=DEFAULT_SAMPLER,
                   help="DDPM, DDIM or DPM-Solver++ [%(default)s]")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: "
                   + ", ".join(f"{k} {v}" for k, v in DEFAULT_STEPS.items()) + ")")
    p.add_argument("--guidance", type=float, default=GUIDANCE, help="classifier-free guidance scale w (1 = conditional) [%(default)s]")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--edit-threshold", type=float, default=EDIT_THRESHOLD,
                   help="canvas models: a pass keeps only changes above this local mean (0: the whole drawn image) "
                        "[%(default)s]")
    _add_device(p)


def _request(args, **extra):
    """The ``SampleRequest`` of :func:`_add_sampling`'s options (and ``extra`` fields)."""
    from .sample import SampleRequest

    return SampleRequest(sampler=args.sampler, steps=args.steps, guidance=args.guidance, seed=args.seed,
                         edit_threshold=args.edit_threshold, **extra)


def _add_sample(sub) -> None:
    p = sub.add_parser("sample", help="sample a split's conditions (or given labels) and write the course outputs",
                       description="Generate images with a trained run: images, grid, denoising strip, metrics.json.")
    p.add_argument("--run", required=True, type=Path, help="training run folder")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--split", choices=SPLITS, help="sample the conditions of this split")
    src.add_argument("--labels", nargs="+", metavar="OBJECTS",
                     help='one or more comma-separated object lists, e.g. "red sphere,cyan cube" "gray cube"')
    src.add_argument("--conditions", type=Path, metavar="FILE",
                     help="a test.json-style file of object lists (e.g. from cddpm probes); outputs named after it")
    src.add_argument("--layout", type=Path, metavar="FILE",
                     help='layout models: a JSON list of scenes, each a list of {"object": "red cube", "box": '
                          f"[y0, x0, y1, x1]}} ({IMAGE_SIZE}x{IMAGE_SIZE} pixels; box optional); outputs named after "
                          "it (docs/placement.md)")
    p.add_argument("--data", type=Path, default=None, help="i-CLEVR root of --split (default: the run's)")
    _add_sampling(p)
    p.add_argument("--batch-size", type=int, default=SAMPLE_BATCH)
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--evaluator", type=Path, default=None, help="evaluator checkpoint: adds accuracies to metrics.json")
    _add_fidelity(p)
    p.add_argument("--frames", type=int, default=DENOISE_FRAMES, help="frames of the denoising strip [%(default)s]")
    p.set_defaults(func=_sample)


def _sample(args) -> int:
    from . import labels, sample
    from .device import resolve
    from .evaluation.judge import for_sampling

    request = _request(args, batch_size=args.batch_size)
    device = resolve(args.device)
    judge = for_sampling(args.evaluator, device, **_fidelity_options(args))
    metrics = sample.sample_split(
        args.run, args.out, request, split=args.split, labels=args.labels and [labels.parse(t) for t in args.labels],
        conditions=args.conditions, layout=args.layout, data=args.data, checkpoint=args.checkpoint, ema=args.ema,
        judge=judge, frames=args.frames, device=device)
    _print_json(metrics)
    return 0


def _add_add(sub) -> None:
    description = ("Draw the objects one pass each onto the picture, read as training reads images: in the given "
                   "--box, else placed away from what is on the floor; writes OUT/images/{picture's stem}/0.png and "
                   "metrics.json (docs/placement.md).")
    p = sub.add_parser("add", help="add objects to a picture (ours, the course's, a generated one) with a canvas run",
                       description=description)
    p.add_argument("--run", required=True, type=Path, help="training run folder (a canvas model)")
    p.add_argument("--image", required=True, type=Path, metavar="PNG",
                   help="the picture to add to (any size, read like training images)")
    p.add_argument("--labels", required=True, metavar="OBJECTS", help='the objects to add, comma-separated, e.g. '
                   '"red cube,blue sphere"')
    p.add_argument("--box", action="append", metavar="Y0,X0,Y1,X1", help="layout models: the box of the next object "
                   f"in {IMAGE_SIZE}x{IMAGE_SIZE} pixels (ends exclusive); give none, or one per object")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    _add_sampling(p)
    p.set_defaults(func=_add)


def _add(args) -> int:
    from . import labels, sample

    added = labels.parse(args.labels)
    boxes = None if args.box is None else [_box(text) for text in args.box]
    if boxes is not None and len(boxes) != len(added):
        raise ValueError(f"{len(boxes)} --box for {len(added)} objects {added}; give none, or one per object in order")
    _print_json(sample.add_to_image(args.run, args.image, added, args.out, _request(args), boxes=boxes,
                                    checkpoint=args.checkpoint, ema=args.ema, device=args.device))
    return 0


def _box(text: str) -> list[int]:
    """``--box y0,x0,y1,x1`` as four integers."""
    try:
        box = [int(v) for v in text.split(",")]
    except ValueError:
        box = []
    if len(box) != 4:
        raise ValueError(f"--box {text} must be four whole numbers y0,x0,y1,x1 in {IMAGE_SIZE}x{IMAGE_SIZE} pixels, "
                         "e.g. 8,8,40,40")
    return box


# --- export ------------------------------------------------------------------------------------

def _add_export(sub) -> None:
    p = sub.add_parser("export", help="write a run's model as a diffusers pipeline folder (CddpmPipeline)",
                       description="Write a checkpoint and cddpm sample's default sampler as a folder that "
                                   "cddpm.pipeline.CddpmPipeline.from_pretrained(OUT) loads without the run, "
                                   "with a README.md model card.")
    p.add_argument("--run", required=True, type=Path, help="training run folder")
    p.add_argument("--checkpoint", default="last", help="last or step-N [%(default)s]")
    p.add_argument("--no-ema", dest="ema", action="store_false", help="export the raw weights instead of the EMA")
    p.add_argument("--out", required=True, type=Path, help="folder to write (new or empty)")
    p.add_argument("--force", action="store_true", help="replace an earlier export in --out")
    p.set_defaults(func=_export)


def _export(args) -> int:
    from .pipeline import export

    print(export(args.run, args.out, checkpoint=args.checkpoint, ema=args.ema, force=args.force))
    return 0


# --- probes ------------------------------------------------------------------------------------

def _add_probes(sub) -> None:
    p = sub.add_parser("probes", help="write condition lists beyond the splits (same colour, same shape, rare pairs)",
                       description="Write OUT/same_colour.json, same_shape.json and rare_pairs.json (test.json "
                                   "format) from --data's train.json; sample and evaluate them with --conditions FILE.")
    p.add_argument("--out", required=True, type=Path, help="folder for the three files")
    p.add_argument("--data", type=Path, default=Path(DEFAULT_DATA), help="root whose train.json rare pairs come from")
    p.add_argument("--per-set", type=int, default=PROBE_SET, help="object lists per file, like test.json [%(default)s]")
    p.add_argument("--seed", type=int, default=SEED, help="which lists [%(default)s]")
    p.add_argument("--force", action="store_true", help="replace probe files written before")
    p.set_defaults(func=_probes)


def _probes(args) -> int:
    from .evaluation.probes import write_probes

    for path in write_probes(args.data, args.out, args.per_set, args.seed, args.force):
        print(path)
    return 0


# --- train-evaluator ---------------------------------------------------------------------------

def _add_train_evaluator(sub) -> None:
    p = sub.add_parser("train-evaluator", help="train the ResNet18 evaluator (course checkpoint format) on a root",
                       formatter_class=_defaults_from("cddpm.evaluation.training", "train_evaluator"),
                       description="Train the course's ResNet18 from scratch with BCE; save {'model': state_dict} "
                                   "and its validation accuracies (OUT with .json).")
    p.add_argument("--data", type=Path, default=Path(DEFAULT_DATA), help="i-CLEVR root whose train.json to learn")
    p.add_argument("--out", type=Path, default=Path(DEFAULT_EVALUATOR), help="checkpoint to write")
    p.add_argument("--epochs", type=int, help="passes over the training images; with --minutes, their cap")
    p.add_argument("--minutes", type=float, help="time budget: the speed measured at the start sets the steps (the "
                   "last epoch may be partial), so that the schedule ends on time [none]")
    p.add_argument("--batch-size", type=int, help="images per step")
    p.add_argument("--lr", type=float, help="peak learning rate of the one-cycle schedule")
    p.add_argument("--pos-weight", type=float, help="BCE weight of present objects (fewer misses)")
    p.add_argument("--seed", type=int, help="initialisation, validation split, batch order, augmentation")
    p.add_argument("--train-size", type=int, help="learn from images read at this size and upsampled "
                   f"to {IMAGE_SIZE}x{IMAGE_SIZE} (32: the course's own judge, which forgives blur)")
    _add_device(p)
    p.add_argument("--mixed-precision", choices=MIXED_PRECISIONS, help="autocast; auto: bf16 where the hardware "
                   "computes it natively, fp16 on GPUs before Ampere, else fp32")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.set_defaults(func=_train_evaluator)


def _train_evaluator(args) -> int:
    from .evaluation.training import train_evaluator

    options = ("epochs", "minutes", "batch_size", "lr", "pos_weight", "seed", "train_size", "mixed_precision", "device")
    report = train_evaluator(args.data, args.out, force=args.force,
                             **{k: getattr(args, k) for k in options if getattr(args, k, None) is not None})
    _print_json({k: v for k, v in report.items() if k != "history"})
    return 0


# --- evaluate ----------------------------------------------------------------------------------

def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="score generated images (or a labelled root) with an evaluator",
                       description="Top-k (the course's rule), exact-set accuracy and extra-object rate of "
                                   "DIR/0.png..DIR/{N-1}.png against a split's conditions, as one JSON object.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", type=Path, metavar="DIR", help="folder of 0.png .. N-1.png in condition order")
    src.add_argument("--root", type=Path, help="a labelled i-CLEVR root (e.g. ground-truth renders): "
                                               "score every image of its train.json against its labels")
    p.add_argument("--data", type=Path, default=None,
                   help="root holding the --split conditions (default: the root DIR's metrics.json records)")
    p.add_argument("--split", choices=SPLITS, default=None,
                   help="conditions of --images (default: those DIR's metrics.json records; with --data: test)")
    p.add_argument("--conditions", type=Path, metavar="FILE",
                   help="conditions of --images from a test.json-style file instead of --split")
    p.add_argument("--evaluator", type=Path, default=Path(DEFAULT_EVALUATOR),
                   help="checkpoint in the course's format (ours or the course's checkpoint.pth)")
    p.add_argument("--per-image", action="store_true", help="add each image's requested and predicted objects")
    _add_fidelity(p)
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the JSON object to OUT (an existing file only "
                   "when an earlier evaluate wrote it)")
    p.add_argument("--force", action="store_true", help="let --json replace a file cddpm evaluate did not write")
    _add_device(p)
    p.set_defaults(func=_evaluate)


def _conditions_of_images(args) -> tuple[list[list[str]], str, Path | None, dict]:
    """The conditions of ``--images`` (object lists, name, their root) and its sample record: those recorded in its
    ``metrics.json``, or those given, which must then be the recorded ones."""
    from . import data, provenance

    found = provenance.sample_record(args.images)
    path, record = found if found else (None, {})
    recorded_root = Path(record["data"]) if record.get("data") else None
    if args.conditions is not None:
        lists, name, root, given = (data.load_condition_file(args.conditions), args.conditions.stem, recorded_root,
                                    f"--conditions {args.conditions}")
    elif args.split is not None or args.data is not None:
        root, split = args.data or recorded_root, args.split or "test"
        if root is None:
            raise ValueError(f"--split {split} needs --data ROOT: {args.images} has no metrics.json of cddpm sample "
                             "naming the root of its conditions")
        lists, name, given = data.load_condition_lists(root, split), split, f"{root}/{split}.json"
    elif record:
        return data.check_lists(record["conditions"], path), record["split"], recorded_root, record
    else:
        raise ValueError(f"{args.images} has no metrics.json of cddpm sample recording its conditions; give "
                         "--data ROOT --split SPLIT or --conditions FILE")
    if record and provenance.conditions_sha(lists) != provenance.conditions_sha(record["conditions"]):
        raise ValueError(f"{args.images} was sampled for the conditions of {record.get('conditions_source')} "
                         f"(recorded in {path}), not those of {given}; leave out --data/--split/--conditions to use "
                         "its own, or sample these conditions")
    return lists, name, root, record


def _evaluate(args) -> int:
    from . import data, device, provenance
    from .evaluation import evaluator
    from .paths import check_output_file, json_holding, write_json

    if args.json is not None:
        inputs = [args.evaluator, args.conditions, args.reference, args.floor_reference]
        if args.root:
            inputs += [args.root / name for name in (*data.ROOT_FILES, "iclevr")]
        else:
            inputs += sorted(args.images.glob("*.png")) + [args.images / "metrics.json"]
            inputs += [args.data / name for name in data.ROOT_FILES] if args.data is not None else []
        check_output_file(args.json, "--json", inputs, json_holding(*evaluator.REPORT_KEYS), args.force)
    if args.images:  # bad or mismatched conditions are said before the judge is loaded
        lists, name, root, record = _conditions_of_images(args)
    judge = evaluator.Evaluator.load(args.evaluator, device.resolve(args.device))
    if args.images:
        if root is not None and (root / "train.json").is_file():
            provenance.say(provenance.judge_note(args.evaluator, judge.trained_on, root))
        if record.get("evaluator_sha256") not in (None, judge.digest()):
            print(f"note: {args.images} was judged by {record.get('evaluator')} when sampled; these numbers are "
                  f"{args.evaluator}'s", file=sys.stderr)
        result = evaluator.evaluate_folder(judge, args.images, lists, name, with_per_image=args.per_image,
                                           **_fidelity_options(args))
        if result["resized"]:
            print(f"note: resized {result['resized']} images in {args.images} to {IMAGE_SIZE}x{IMAGE_SIZE}",
                  file=sys.stderr)
    else:
        result = evaluator.evaluate_root(judge, args.root, with_per_image=args.per_image, **_fidelity_options(args))
    if args.reference:
        from .evaluation.fidelity import summary

        print(f"fidelity in the judge's features: {summary(result, result['n'])}", file=sys.stderr)
    _print_json(result)
    if args.json:
        write_json(args.json, result)
    return 0


# --- train -------------------------------------------------------------------------------------

def _add_train(sub) -> None:
    p = sub.add_parser(
        "train", help="train (or resume) a conditional DDPM run on an i-CLEVR root",
        formatter_class=_defaults_from("cddpm.train", "TrainConfig"),
        description="Train a ConditionalUNet with accelerate; multi-GPU: accelerate launch --num_processes N "
                    "-m cddpm train ... Options left out take the run's values with --resume, else the defaults "
                    "in brackets (cddpm.train.TrainConfig).")
    p.add_argument("--out", required=True, type=Path, help="run folder: config.json, checkpoints/, metrics.jsonl, loss.png")
    p.add_argument("--data", help="i-CLEVR root")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint "
                   "(starts it when --out holds none)")
    p.add_argument("--inexact-resume", action="store_true", help="with --resume: go on even when the checkpoint's "
                   "random states cannot be restored (other noise and data order; refused otherwise)")
    m = p.add_argument_group("model")
    m.add_argument("--preset", help=" | ".join(PRESETS))
    m.add_argument("--conditioning", choices=CONDITIONINGS, help="label conditioning [the preset's]")
    m.add_argument("--model", nargs="+", action="extend", metavar="FIELD=VALUE",
                   help="override ModelConfig fields, e.g. block_out_channels=32,64,64 sample_size=32")
    t = p.add_argument_group("schedule")
    length = t.add_mutually_exclusive_group()
    length.add_argument("--max-steps", type=int, help="optimiser steps (the cosine LR schedule ends there)")
    length.add_argument("--epochs", type=float, help="passes over the training split, instead of --max-steps")
    t.add_argument("--minutes", type=float, help="time budget: the speed measured at the start sets the steps "
                   "(--max-steps caps them), so that the LR schedule ends on time; a resume keeps them")
    t.add_argument("--batch-size", type=int, help="images per process per micro-batch")
    t.add_argument("--grad-accum", type=int, help="micro-batches per optimiser step")
    t.add_argument("--lr", type=float, help="peak AdamW learning rate")
    t.add_argument("--weight-decay", type=float, help="AdamW weight decay")
    t.add_argument("--warmup", type=int, help="linear warm-up steps before the cosine decay "
                   "(default: a tenth of the run's steps, at most 200)")
    t.add_argument("--max-grad-norm", type=float, help="gradient clipping norm, 0 = off")
    t.add_argument("--p-uncond", type=float, help="probability of dropping the label (classifier-free guidance)")
    t.add_argument("--prediction-type", choices=PREDICTION_TYPES, help="network target")
    t.add_argument("--ema-decay", type=float, help="cap of the EMA decay, which warms up as 1-(1+step)^-0.75")
    t.add_argument("--hflip", action=argparse.BooleanOptionalAction, help="random horizontal flips")
    t.add_argument("--seed", type=int, help="weights, data order, noise")
    f = p.add_argument_group("speed")
    f.add_argument("--mixed-precision", choices=MIXED_PRECISIONS, help="autocast through accelerate; auto: bf16 where "
                   "the hardware computes it natively, fp16 on GPUs before Ampere, else fp32")
    _add_device(f)
    f.add_argument("--channels-last", action=argparse.BooleanOptionalAction, help="channels_last memory format")
    f.add_argument("--compile", action=argparse.BooleanOptionalAction, help="torch.compile the model")
    o = p.add_argument_group("checkpoints and logs")
    o.add_argument("--save-every", type=int, help="checkpoint every N steps (and at the end)")
    o.add_argument("--save-minutes", type=float, help="also checkpoint after M minutes of training since the last "
                   "save, e.g. 10 where a session may end (Colab) [off]")
    o.add_argument("--keep", type=int, help="checkpoints kept, newest first")
    o.add_argument("--log-every", type=int, help="metrics.jsonl record every N steps")
    o.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, help="also log to RUN/tensorboard")
    p.set_defaults(func=_train)


def _train(args) -> int:
    from accelerate import PartialState

    from . import model, train
    from .workflow.profiles import LENGTH

    stored = train.load_config(args.out) if args.resume and (args.out / "config.json").is_file() else None
    base = stored or train.TrainConfig()
    fields = {f.name for f in dataclasses.fields(train.TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    if given.keys() & set(LENGTH):  # a length given replaces the run's
        given = {**dict.fromkeys(LENGTH), **given}
    overrides = model.parse_overrides(args.model or [])
    if args.conditioning:
        overrides["conditioning"] = args.conditioning
    if stored is None or args.preset:
        name = args.preset or train.TrainConfig.preset
        net = model.preset(name, **overrides)
    else:
        name, net = stored.preset, model.override(stored.model, **overrides)
    config = dataclasses.replace(base, **{**given, "model": net, "preset": name, "out": str(args.out)})
    try:
        result = train.train(config)
    except KeyboardInterrupt as stop:
        print(f"cddpm train: interrupted{f'; {stop}' if str(stop) else ''}", file=sys.stderr)
        return 130
    if PartialState().is_main_process:  # one summary under accelerate launch
        _print_json(result)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``cddpm`` parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="cddpm", description="Conditional DDPM on i-CLEVR: render, train, sample, export, evaluate, report.")
    parser.add_argument("--version", action="version", version=f"cddpm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_render, _add_boxes, _add_batch, _add_demo, _add_sample, _add_add, _add_export, _add_probes,
                _add_train_evaluator, _add_evaluate, _add_train):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if getattr(args, "device", None) is not None:  # a bad --device is said before any command starts its work
            from .device import resolve

            resolve(args.device)
        return args.func(args) or 0
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError) as err:
        print(f"cddpm {args.command}: error: {err}", file=sys.stderr)
        return 2
    except PermissionError as err:
        where = f" {err.filename}" if err.filename else ""
        print(f"cddpm {args.command}: error: permission denied{where}; choose a path you can read and write "
              f"({err.strerror or err})", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a vanished mount: say what and where, without a traceback
        where = f" at {err.filename}" if err.filename else ""
        print(f"cddpm {args.command}: error: {err.strerror or err}{where}; free space or fix the path, then run "
              "again (a training run resumes from its last checkpoint)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cddpm {args.command}: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130

