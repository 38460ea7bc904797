"""Condition lists beyond the splits: `cddpm probes`, and `--conditions FILE` on sample and evaluate."""
from __future__ import annotations

import json

import torch
from test_sample import make_run

from cddpm import labels as L
from cddpm.cli import main
from cddpm.evaluation import probes


def test_probe_sets_hold_what_their_names_say():
    train = [["red cube", "blue sphere"], ["red cube", "blue sphere", "gray cylinder"], ["cyan cube", "red cube"]]
    sets = probes.probe_sets(train, per_set=40, seed=1)
    assert list(sets) == list(probes.NAMES)
    colours = [{o.split()[0] for o in c} for c in sets["same_colour"]]
    shapes = [{o.split()[1] for o in c} for c in sets["same_shape"]]
    assert len(sets["same_colour"]) == 40 and all(len(c) == 1 for c in colours)
    assert all(len({o.split()[1] for o in c}) == 3 for c in sets["same_colour"])
    assert len(sets["same_shape"]) == 40 and all(len(s) == 1 for s in shapes)
    assert all(len({o.split()[0] for o in c}) == 3 for c in sets["same_shape"])
    seen = {frozenset(p) for c in train for p in [(a, b) for a in c for b in c if a != b]}
    assert all(len(c) == 2 and frozenset(c) not in seen for c in sets["rare_pairs"])  # never together in training
    assert len({frozenset(c) for c in sets["rare_pairs"]}) == 40
    for lists in sets.values():
        L.encode_batch(lists)  # valid object lists
    assert probes.probe_sets(train, 40, 1) == sets and probes.probe_sets(train, 40, 2) != sets
    assert len(probes.probe_sets(train, 100)["same_colour"]) == 48  # every order of 8 colours' three shapes


def test_rare_pairs_are_the_least_seen():
    common = ["red cube", "blue sphere"]
    train = [common] * 5 + [[a, b] for a, b in zip(L.CLASSES[::2], L.CLASSES[1::2])]
    everything = len(L.CLASSES) * (len(L.CLASSES) - 1) // 2
    pairs = probes.probe_sets(train, per_set=everything)["rare_pairs"]
    assert frozenset(pairs[-1]) == frozenset(common)  # seen five times: the last


def test_probes_cli_writes_refuses_to_overwrite_and_feeds_sample_and_evaluate(tiny_root, tmp_path):
    from cddpm.evaluation.evaluator import Evaluator, build_network

    out = tmp_path / "probes"
    assert main(["probes", "--data", str(tiny_root), "--out", str(out), "--per-set", "3"]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["rare_pairs.json", "same_colour.json", "same_shape.json"]
    assert main(["probes", "--data", str(tiny_root), "--out", str(out)]) == 2  # exists: --force
    (out / "same_shape.json").write_text('{"not": "ours"}')
    assert main(["probes", "--data", str(tiny_root), "--out", str(out), "--force"]) == 2
    (out / "same_shape.json").unlink()
    assert main(["probes", "--data", str(tiny_root), "--out", str(out), "--force", "--per-set", "2"]) == 0
    assert len(json.loads((out / "same_colour.json").read_text())) == 2

    run = make_run(tmp_path / "run", tiny_root)
    torch.manual_seed(0)
    judge = Evaluator(build_network()).save(tmp_path / "judge.pth")
    assert main(["sample", "--run", str(run), "--conditions", str(out / "same_colour.json"), "--steps", "2",
                 "--frames", "2", "--evaluator", str(judge), "--out", str(tmp_path / "s")]) == 0
    metrics = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert metrics["split"] == "same_colour" and metrics["n"] == 2
    assert sorted(p.name for p in (tmp_path / "s" / "images" / "same_colour").iterdir()) == ["0.png", "1.png"]
    assert main(["evaluate", "--images", str(tmp_path / "s" / "images" / "same_colour"), "--conditions",
                 str(out / "same_colour.json"), "--evaluator", str(judge), "--json", str(tmp_path / "e.json")]) == 0
    scored = json.loads((tmp_path / "e.json").read_text())
    assert scored["split"] == "same_colour" and scored["n"] == 2


def test_a_bad_conditions_file_is_one_line(tmp_path, capsys):
    assert main(["evaluate", "--images", str(tmp_path), "--conditions", str(tmp_path / "none.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('[["red cube", "red cube"]]')
    assert main(["evaluate", "--images", str(tmp_path), "--conditions", str(bad)]) == 2
    assert "duplicate" in capsys.readouterr().err
