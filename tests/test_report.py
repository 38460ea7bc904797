import json

import pytest

from cddpm.workflow import report
from cddpm.workflow.batch import Batch


def write_batch(root, accuracies):
    """A fake batch folder: one metrics.json per (split, guidance, seed)."""
    for (split, w, seed), (topk, exact) in accuracies.items():
        d = root / f"{split}__seed{seed}__last__dpmsolver20__g{w:g}"
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps(dict(
            split=split, checkpoint="last", sampler="dpmsolver", steps=20, guidance=w, seed=seed,
            topk=topk, exact_set=exact, extra_object_rate=1 - exact)))
        (d / f"grid_{split}.png").write_bytes(f"{split} {w} {seed}".encode())
    return root


def test_summary_mean_std_and_table(tmp_path):
    acc = {("test", 1.0, 0): (0.5, 0.25), ("test", 1.0, 1): (0.7, 0.35),
           ("test", 3.0, 0): (0.9, 0.8), ("test", 3.0, 1): (0.9, 0.6),
           ("new_test", 1.0, 0): (0.4, 0.2)}
    rows = report.summarise(report.collect(write_batch(tmp_path / "b", acc)))
    assert len(rows) == 3
    row = next(r for r in rows if r["split"] == "test" and r["guidance"] == 1.0)
    assert row["seeds"] == 2
    assert row["topk"] == pytest.approx(0.6) and row["topk_std"] == pytest.approx(0.1414, abs=1e-3)
    single = next(r for r in rows if r["split"] == "new_test")
    assert single["topk_std"] is None  # one seed: no spread to report, not a spread of 0
    table = report.markdown_table(rows)
    assert table.count("\n") == 2 + len(rows) - 1
    assert "| 0.600 ± 0.141 |" in table and "| 0.400 | 0.200 |" in table


def test_raw_weights_and_other_settings_are_rows_of_their_own_not_seeds(tmp_path):
    acc = {("test", 1.0, 0): (0.5, 0.25), ("test", 1.0, 1): (0.7, 0.35)}
    root = write_batch(tmp_path / "b", acc)
    raw = root / "test__seed0__last-raw__dpmsolver20__g1"
    raw.mkdir()
    record = json.loads((root / "test__seed0__last__dpmsolver20__g1" / "metrics.json").read_text())
    (raw / "metrics.json").write_text(json.dumps({**record, "ema": False, "topk": 0.9}))
    rows = report.summarise(report.collect(root))
    assert [(r["weights"], r["seeds"], r["topk"]) for r in rows] == [("ema", 2, pytest.approx(0.6)), ("raw", 1, 0.9)]
    table = report.markdown_table(rows).splitlines()
    assert table[0].startswith("| split | checkpoint | weights |") and "edit threshold" not in table[0]
    edited = root / "test__seed0__last__dpmsolver20__g1__e0.3"
    edited.mkdir()
    (edited / "metrics.json").write_text(json.dumps({**record, "edit_threshold": 0.3}))
    rows = report.summarise(report.collect(root))
    assert len(rows) == 3  # edit threshold 0.3 is not a third seed of the plain setting
    table = report.markdown_table(rows).splitlines()
    assert "| edit threshold |" in table[0] and table[1].count("---") == len(table[0].split("|")) - 2
    assert any("| 0.3 | 1 | 0.500 |" in line for line in table)


def test_build_writes_table_and_figures(tmp_path):
    acc = {(s, w, seed): (0.3 + 0.1 * w, 0.1 * w) for s in ("test", "new_test") for w in (1.0, 2.0, 3.0) for seed in (0, 1)}
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("\n".join(json.dumps({"step": i, "loss": 1 / (i + 1)}) for i in range(30)))
    out = report.build(write_batch(tmp_path / "b", acc), tmp_path / "report", run=run)
    assert len(out["rows"]) == 6 and out["records"] == 12
    for key in ("guidance", "loss"):
        assert (tmp_path / "report" / f"{'accuracy_vs_guidance' if key == 'guidance' else 'loss'}.png").stat().st_size > 1000
    assert "steps" not in out["figures"]  # a single step count gives no steps curve
    assert out["best"]["guidance"] == 3.0 and out["worst"]["guidance"] == 1.0
    assert (tmp_path / "report" / "best_grid.png").read_bytes().startswith(b"test 3.0") or \
        (tmp_path / "report" / "best_grid.png").read_bytes().startswith(b"new_test 3.0")
    assert b" 1.0 " in (tmp_path / "report" / "worst_grid.png").read_bytes()
    assert json.loads((tmp_path / "report" / "table.json").read_text())[0]["seeds"] == 2


def test_missing_batch_and_empty_batch(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        report.collect(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no evaluated metrics.json"):
        report.collect(tmp_path / "empty")


def test_batch_combinations_and_names():
    b = Batch(run="r", name="n", evaluator="e.pth", seeds=[0, 1], splits=["test"], steps=[10, 20], guidance=[1, 2.5])
    combos = b.combinations()
    assert len(combos) == 2 * 2 * 2
    assert {c["tag"] for c in combos} >= {"test__seed0__last__dpmsolver10__g1", "test__seed1__last__dpmsolver20__g2.5"}
    assert {c["weights"] for c in combos} == {"ema"}
    both = Batch(run="r", name="n", evaluator="e.pth", seeds=[0], splits=["test"], weights=["ema", "raw"]).combinations()
    assert [(c["weights"], c["tag"]) for c in both] == [("ema", "test__seed0__last__dpmsolver20__g1"),
                                                        ("raw", "test__seed0__last-raw__dpmsolver20__g1")]
    with pytest.raises(ValueError, match="use ema and/or raw"):
        Batch(run="r", name="n", evaluator="e.pth", weights=["best"])


def test_metrics_table():
    table = report.metrics_table({"topk": 0.91234, "sampler": "dpmsolver", "steps": 20})
    assert table.splitlines()[2:] == ["| topk | 0.9123 |", "| sampler | dpmsolver |", "| steps | 20 |"]
