"""Fidelity: FD and KID in the judge's features against ground-truth renders, their floor, and where they are reported."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from cddpm import cli, data, folders, render
from cddpm.evaluation import evaluator as E
from cddpm.evaluation import fidelity
from cddpm.evaluation.training import train_evaluator
from cddpm.workflow import profiles, report, steps

CONDITIONS = [["red cube"], ["blue sphere"], ["gray cylinder", "cyan cube"], ["yellow sphere", "green cube"],
              ["purple cylinder", "red sphere", "blue cube"], ["brown cube", "cyan sphere", "gray cube"]]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """A 1-epoch judge on 60 renders, and three render sets of CONDITIONS (2 each) at seeds 1, 2, 3."""
    base = tmp_path_factory.mktemp("fidelity")
    root = render.render_dataset(base / "root", scenes=20, seed=0)
    judge = base / "judge.pth"
    train_evaluator(root, judge, epochs=1, batch_size=16, progress=False)
    sets = {seed: render.render_conditions(CONDITIONS, base / f"gt{seed}", per_condition=2, seed=seed)
            for seed in (1, 2, 3)}
    return dict(base=base, judge=judge, gt=sets)


def pixels(root: Path) -> torch.Tensor:
    return data.ICLEVRDataset(root, preload=True).images


def numbered(source: Path, folder: Path) -> Path:
    """``source``'s renders as folder/0.png .. in train.json order (a stand-in for generated images)."""
    folder.mkdir(parents=True)
    for i, name in enumerate(data.load_mapping(source)):
        shutil.copyfile(source / "iclevr" / name, folder / f"{i}.png")
    return folder


def run_cli(capsys, *args) -> tuple[int, dict | None, str]:
    code = cli.main([*map(str, args)])
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else None, err


def test_identical_sets_are_at_zero_and_a_shifted_set_beyond_the_reseeded_floor(world):
    judge = E.Evaluator.load(world["judge"])
    reference, reseeded = pixels(world["gt"][1]), pixels(world["gt"][2])
    shifted = (reseeded.float() * 0.6).round().to(torch.uint8)  # the same scenes, darker
    same, floor, far = fidelity.distances(fidelity.JudgeFeatures(judge), reference, [reference, reseeded, shifted])
    assert floor["fd"] > 0 and abs(same["fd"]) < 1e-3 * floor["fd"], (same, floor)
    assert far["fd"] > 1.3 * floor["fd"], (floor, far)
    assert abs(same["kid_mean"]) < 0.2 * far["kid_mean"] and far["kid_mean"] > floor["kid_mean"] + 3 * far["kid_std"]
    assert same["kid_subset_size"] == 6  # half of 12 images: the subsets differ, so their spread means something
    again = fidelity.distances(fidelity.JudgeFeatures(judge), reference, [shifted])[0]
    assert again == far  # KID's subsets are drawn from a fixed seed


def test_evaluate_reference_writes_fd_kid_and_the_floor(world, tmp_path, capsys):
    gt = world["gt"]
    file = tmp_path / "conditions.json"
    file.write_text(json.dumps([c for c in CONDITIONS for _ in range(2)]))  # render order: 2 of each in turn
    images = numbered(gt[3], tmp_path / "images")
    code, result, err = run_cli(capsys, "evaluate", "--images", images, "--conditions", file, "--evaluator",
                                world["judge"], "--reference", gt[1], "--floor-reference", gt[2],
                                "--json", tmp_path / "m.json")
    assert code == 0, err
    assert result["reference"] == str(gt[1]) and result["reference_n"] == 12 and result["floor_reference"] == str(gt[2])
    assert result["fd"] > 0 and result["fd_floor"] > 0 and result["kid_std"] >= 0 and result["kid_std_floor"] >= 0
    assert result["fd_over_floor"] == pytest.approx(result["fd"] / result["fd_floor"])
    assert json.loads((tmp_path / "m.json").read_text()) == result
    assert "FD" in err and "floor" in err and err.count("\n") == 1
    # the same images as a labelled root give the same numbers, and the floor is what --root gives for its renders
    code, root, _ = run_cli(capsys, "evaluate", "--root", gt[3], "--evaluator", world["judge"], "--reference", gt[1])
    assert code == 0 and root["fd"] == pytest.approx(result["fd"]) and root["kid_mean"] == pytest.approx(result["kid_mean"])
    code, floor, _ = run_cli(capsys, "evaluate", "--root", gt[2], "--evaluator", world["judge"], "--reference", gt[1])
    assert code == 0 and floor["fd"] == pytest.approx(result["fd_floor"]) and "fd_floor" not in floor


def test_renders_of_other_conditions_are_refused_in_one_line(world, tmp_path, capsys):
    gt = world["gt"]
    other = shutil.copytree(gt[1], tmp_path / "other")
    mapping = data.load_mapping(other)
    mapping[next(iter(mapping))] = ["green sphere"]
    (other / "train.json").write_text(json.dumps(mapping))
    common = ("evaluate", "--root", gt[3], "--evaluator", world["judge"])
    for args, message in [(("--reference", other), "--reference"),
                          (("--reference", gt[1], "--floor-reference", other), "--floor-reference"),
                          (("--reference", gt[1], "--floor-reference", gt[1]), "is the --reference itself"),
                          (("--floor-reference", gt[2]), "give --reference DIR too"),
                          (("--reference", tmp_path), "not a folder of ground-truth renders")]:
        code, _, err = run_cli(capsys, *common, *args)
        assert code == 2 and message in err and err.count("\n") == 1, err
    code, _, err = run_cli(capsys, *common, "--reference", other)
    assert "(['red cube'] 1 of its 12 images, 2 of the images' 12)" in err  # the first condition that differs
    # the floor must be as many renders as the images (the reference: the same conditions in the same proportions)
    half = render.render_conditions(CONDITIONS, tmp_path / "half", per_condition=1, seed=4)
    code, _, err = run_cli(capsys, *common, "--reference", gt[1], "--floor-reference", half)
    assert code == 2 and "as many of each as the images hold" in err


@pytest.mark.parametrize("failure, message", [
    (ModuleNotFoundError("No module named 'torch_fidelity'"), "torch-fidelity is not installed"),
    (OSError("<urlopen error [Errno -3] Temporary failure in name resolution>"), "could not be had: <urlopen"),
])
def test_inception_without_its_weights_is_one_line(world, monkeypatch, capsys, failure, message):
    judge_space = fidelity.FrechetInceptionDistance

    def unavailable(feature, **kwargs):  # the judge's FD works; the Inception one cannot be had
        if isinstance(feature, int):
            raise failure
        return judge_space(feature=feature, **kwargs)

    monkeypatch.setitem(sys.modules, "torch_fidelity", object())  # check() passes; the weights are what fails
    monkeypatch.setattr(fidelity, "FrechetInceptionDistance", unavailable)
    code, _, err = run_cli(capsys, "evaluate", "--root", world["gt"][3], "--evaluator", world["judge"],
                           "--reference", world["gt"][1], "--inception")
    assert code == 2 and "--inception needs torch-fidelity" in err and message in err and err.count("\n") == 1


def test_inception_without_torch_fidelity_is_refused_before_the_work(world, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # import fails, as where it is not installed
    with pytest.raises(ValueError, match="torch-fidelity is not installed"):
        fidelity.check(data.ICLEVRDataset(world["gt"][3]).labels, world["gt"][1], inception=True)


def test_sampling_with_a_reference_writes_the_fields(world, tmp_path, tiny_root):
    from test_sample import make_run

    run = make_run(tmp_path / "run", tiny_root)
    conditions = data.load_condition_lists(tiny_root, "test")
    reference = render.render_conditions(conditions, tmp_path / "ref", per_condition=2, seed=1)
    floor = render.render_conditions(conditions, tmp_path / "floor", per_condition=1, seed=2)
    common = ["sample", "--run", run, "--split", "test", "--sampler", "ddim", "--steps", "2", "--evaluator",
              world["judge"], "--reference", reference]
    assert cli.main([*map(str, common), "--out", str(tmp_path / "s"), "--floor-reference", str(floor)]) == 0
    metrics = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert metrics["n"] == 2 and metrics["reference_n"] == 4 and metrics["fd"] > 0 and metrics["fd_floor"] > 0
    # renders of other conditions are refused before anything is sampled
    assert cli.main([*map(str, common[:-1]), str(world["gt"][1]), "--out", str(tmp_path / "t")]) == 2
    assert not (tmp_path / "t").exists()
    assert cli.main([*map(str, common[:-2]), "--floor-reference", str(floor), "--out", str(tmp_path / "u")]) == 2


def test_the_report_shows_fd_and_kid_columns_where_measured(tmp_path):
    for seed, fd in enumerate((2.0, 4.0)):
        for split, extra in (("test", dict(fd=fd, fd_floor=1.0, kid_mean=0.01 * fd)), ("new_test", {})):
            folder = tmp_path / "b" / f"{split}{seed}"
            folder.mkdir(parents=True)
            (folder / "metrics.json").write_text(json.dumps(dict(
                split=split, checkpoint="last", sampler="dpmsolver", steps=20, guidance=3.0, seed=seed, topk=0.9,
                exact_set=0.8, extra_object_rate=0.1, **extra)))
    rows = report.summarise(report.collect(tmp_path / "b"))
    table = report.markdown_table(rows).splitlines()
    assert table[0].endswith("| FD | FD floor | KID |") and table[1].count("---") == 13
    test_row = next(line for line in table if line.startswith("| test "))
    assert test_row.endswith("| 3.000 ± 1.414 | 1.000 ± 0.000 | 0.0300 ± 0.0141 |")
    assert next(line for line in table if line.startswith("| new_test ")).endswith("| – | – | – |")
    plain = report.markdown_table([{k: v for k, v in r.items() if not k.startswith(("fd", "kid"))} for r in rows])
    assert "FD" not in plain  # no fidelity measured: the table as before


def test_the_demo_measures_its_pooled_samples_against_ground_truth(world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = shutil.copytree(world["gt"][1], tmp_path / "data")
    (root / "test.json").write_text(json.dumps(CONDITIONS))
    p = profiles.get("smoke", data_root=str(root), splits=("test",), seeds=(0, 1), guidance=(2.0,))
    judge = E.Evaluator.load(world["judge"])
    assert steps.fidelity_of_samples(p, judge) == {}  # nothing sampled: nothing measured, nothing rendered
    assert not (tmp_path / "outputs").exists()
    names = list(data.load_mapping(world["gt"][3]))
    for seed in p.seeds:  # seed s's image i: the s-th render of condition i
        folder = folders.samples(p.outputs, p.batch) / folders.tag("test", seed, "last", p.sampler, p.steps, 2.0,
                                                                   p.weights) / "images" / "test"
        folder.mkdir(parents=True)
        for i in range(len(CONDITIONS)):
            shutil.copyfile(world["gt"][3] / "iclevr" / names[2 * i + seed], folder / f"{i}.png")
    (measured, n), = steps.fidelity_of_samples(p, judge).values()
    assert n == 12 and measured["reference_n"] == len(CONDITIONS) * p.gt_per_condition
    assert measured["fd"] > 0 and measured["fd_floor"] > 0
    line = fidelity.summary(measured, n)
    assert line.startswith(f"FD {measured['fd']:.3f} (floor {measured['fd_floor']:.3f}, ") and "12 images" in line
