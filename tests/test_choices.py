"""One home for shared names and defaults: the command line offers exactly what the library accepts."""
from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys

from cddpm import choices, cli, device, diffusion, model, sample, train
from cddpm.workflow import profiles


def parsers() -> dict[str, argparse.ArgumentParser]:
    root = argparse.ArgumentParser()
    sub = root.add_subparsers()
    for add in (cli._add_render, cli._add_batch, cli._add_demo, cli._add_sample, cli._add_export,
                cli._add_train_evaluator, cli._add_evaluate, cli._add_train):
        add(sub)
    return sub.choices


def option(command: str, flag: str) -> argparse.Action:
    return next(a for a in parsers()[command]._actions if flag in a.option_strings)


def test_the_library_acts_on_exactly_the_shared_choices():
    assert tuple(sample.SAMPLERS) == choices.SAMPLERS and sample.DEFAULT_STEPS is choices.DEFAULT_STEPS
    assert tuple(model.PRESETS) == choices.PRESETS and tuple(profiles.PROFILES) == choices.PROFILES
    assert diffusion.PREDICTION_TYPES == choices.PREDICTION_TYPES
    assert device.MIXED_PRECISIONS == choices.MIXED_PRECISIONS and model.CONDITIONINGS == choices.CONDITIONINGS
    assert profiles.Profile("x").steps == choices.DEFAULT_STEPS[profiles.Profile("x").sampler]
    assert profiles.Profile("x").sampler == choices.DEFAULT_SAMPLER


def test_the_command_line_offers_the_shared_choices_and_defaults():
    assert tuple(option("sample", "--sampler").choices) == choices.SAMPLERS
    assert tuple(option("batch", "--samplers").choices) == choices.SAMPLERS
    shown = {flag: parsers()["batch"]._get_formatter()._get_help_string(option("batch", flag))
             for flag in ("--samplers", "--steps", "--guidance")}  # left out: Batch's own
    assert shown["--samplers"].endswith(f"[{choices.DEFAULT_SAMPLER}]")
    assert option("sample", "--sampler").default == choices.DEFAULT_SAMPLER
    assert shown["--steps"].endswith(f"[{choices.DEFAULT_STEPS[choices.DEFAULT_SAMPLER]}]")
    request = sample.SampleRequest()  # sample.py's defaults are the shared ones, which the flags take
    assert (request.guidance, request.seed, request.edit_threshold) == (choices.GUIDANCE, choices.SEED,
                                                                        choices.EDIT_THRESHOLD)
    assert (option("sample", "--guidance").default, option("sample", "--seed").default,
            option("sample", "--edit-threshold").default) == (choices.GUIDANCE, choices.SEED, choices.EDIT_THRESHOLD)
    assert shown["--guidance"].endswith(f"[{choices.GUIDANCE}]")
    for command, flag in (("render", "--split"), ("sample", "--split"), ("evaluate", "--split"), ("batch", "--splits")):
        assert tuple(option(command, flag).choices) == choices.SPLITS, (command, flag)
    assert tuple(option("train", "--conditioning").choices) == choices.CONDITIONINGS
    assert tuple(option("train", "--prediction-type").choices) == choices.PREDICTION_TYPES
    assert tuple(option("train", "--mixed-precision").choices) == choices.MIXED_PRECISIONS
    assert tuple(option("train-evaluator", "--mixed-precision").choices) == choices.MIXED_PRECISIONS
    shown = parsers()["train-evaluator"]._get_formatter()._get_help_string(option("train-evaluator", "--mixed-precision"))
    assert shown.endswith(f" [{choices.DEFAULT_PRECISION}]")  # train_evaluator's own default, which a left-out flag takes
    assert train.TrainConfig().mixed_precision == choices.DEFAULT_PRECISION
    assert tuple(option("demo", "--profile").choices) == choices.PROFILES
    assert option("sample", "--edit-threshold").default == choices.EDIT_THRESHOLD
    assert option("train-evaluator", "--out").default.as_posix() == choices.DEFAULT_EVALUATOR


def test_a_profile_holds_only_what_differs_from_the_training_defaults():
    for p in profiles.PROFILES.values():
        assert p.train.keys() <= {f.name for f in dataclasses.fields(train.TrainConfig)}, p.name
        assert all(value != getattr(train.TrainConfig, key) for key, value in p.train.items()), p.name
    # the default design is what the demo and CI's smoke run train, at their own length and size; the cpu hour
    # trains crop64, which an hour of steps takes further (docs/ablations.md)
    assert train.TrainConfig.preset == choices.DEFAULT_PRESET == "zoom64"
    assert option("train", "--preset").default is None  # left out: the run's preset, else TrainConfig's
    for name in ("smoke", "demo"):
        assert set(profiles.PROFILES[name].train) <= {"max_steps", "minutes", "batch_size"}, name
    assert profiles.train_config(profiles.get("cpu"), resume=False).model == model.preset("crop64")
    assert profiles.PROFILES["reference"].train["prediction_type"] == "epsilon"


def test_the_train_help_shows_the_defaults_of_the_training_config():
    formatter = parsers()["train"]._get_formatter()
    config = train.TrainConfig()
    for flag, value in (("--preset", config.preset), ("--batch-size", config.batch_size), ("--lr", "0.001"),
                        ("--prediction-type", config.prediction_type),
                        ("--mixed-precision", config.mixed_precision), ("--hflip", "no"), ("--data", config.data)):
        assert formatter._get_help_string(option("train", flag)).endswith(f" [{value}]"), flag
    assert "[" not in formatter._get_help_string(option("train", "--out"))  # required: no default
    assert formatter._get_help_string(option("train", "--warmup")).endswith("(default: a tenth of the run's steps, "
                                                                           "at most 200)")  # no single number


def test_help_does_not_import_torch():
    code = ("import sys\nfrom cddpm import cli\nfor c in ('render', 'boxes', 'batch', 'probes', 'sample'):\n"
            "    try:\n        cli.main([c, '--help'])\n    except SystemExit:\n        pass\n"
            "print('torch' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--edit-threshold" in done.stdout and done.stderr.strip() == "False"


def test_every_command_that_computes_takes_a_device():
    for command in ("sample", "train", "train-evaluator", "evaluate", "batch", "demo"):
        assert option(command, "--device").default is None, command


def test_a_profiles_device_reaches_training():
    config = profiles.train_config(profiles.get("smoke", device="cpu"), resume=False)
    assert config.device == "cpu" and profiles.train_config(profiles.get("smoke"), resume=False).device is None
