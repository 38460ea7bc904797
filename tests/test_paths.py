"""Atomic writes: the whole file or the old one, the umask's permissions, no temporary file left behind."""
from __future__ import annotations

import json
import stat

import pytest

from cddpm import paths
from cddpm.evaluation.evaluator import Evaluator, build_network


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_json_and_an_evaluator_checkpoint_get_the_umask_mode(tmp_path, umask_022):
    written = paths.write_json(tmp_path / "new" / "report.json", {"topk": 0.5})
    assert json.loads(written.read_text()) == {"topk": 0.5} and written.read_text().endswith("}\n")
    checkpoint = Evaluator(build_network()).save(tmp_path / "checkpoint.pth")
    assert mode(written) == mode(checkpoint) == 0o644  # not tempfile.mkstemp's 0600
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["checkpoint.pth", "new", "report.json"]


@pytest.mark.parametrize("error", [OSError("No space left on device"), KeyboardInterrupt()])
def test_a_failing_writer_leaves_the_old_file_and_no_temporary_one(tmp_path, error):
    path = paths.write_text(tmp_path / "table.md", "old\n")

    def half_then_fail(tmp):
        tmp.write_text("half")
        raise error

    with pytest.raises(type(error)):
        paths.atomic_write(path, half_then_fail)
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["table.md"]
    with pytest.raises(TypeError):  # an error before the writer has written anything
        paths.write_json(tmp_path / "other.json", {"not json": object()})
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]
