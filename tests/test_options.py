"""Every ``cddpm`` flag has a user: a test, a profile, a notebook, a row of docs/ablations.md or a measured row
elsewhere in docs/, or a benchmark that pins it; a flag nothing uses is deleted, not kept."""
from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

from cddpm import choices, cli

ROOT = Path(__file__).resolve().parents[1]
USERS = [*sorted((ROOT / "tests").glob("*.py")), *sorted((ROOT / "notebooks").glob("*.ipynb")),
         *sorted((ROOT / "benchmarks").glob("*.py")), ROOT / "lib" / "cddpm" / "workflow" / "profiles.py",
         ROOT / "docs" / "ablations.md"]
MEASURED = sorted((ROOT / "docs").glob("*.md"))  # a table row there is a measurement


def corpus() -> str:
    text = [p.read_text() for p in USERS if p.name != "test_options.py"]
    text += [line for p in MEASURED for line in p.read_text().splitlines() if line.startswith("|")]
    return "\n".join(text)


def unused(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """``command --flag`` of each option of ``parser``'s subcommands that ``text`` never names: by a spelling of
    the flag, or for ``train`` (each flag a ``TrainConfig`` field) by the field set as ``field=``."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found = []
    for command, p in sub.choices.items():
        for action in p._actions:
            flags = [o for o in action.option_strings if o.startswith("--") and o != "--help"]
            named = any(re.search(re.escape(o) + r"(?![\w-])", text) for o in flags)
            if flags and not named and not (command == "train" and re.search(rf"\b{action.dest}=", text)):
                found.append(f"{command} {flags[0]}")
    return found


def test_every_flag_has_a_user():
    assert unused(cli.build_parser(), corpus()) == []


def test_a_flag_nothing_uses_is_found():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub.choices["sample"].add_argument("--throwaway-knob", type=int)
    sub.choices["train"].add_argument("--another-knob", type=float)
    assert unused(parser, corpus()) == ["sample --throwaway-knob", "train --another-knob"]


def test_every_arm_has_its_row_and_every_preset_a_user():
    tree = ast.parse((ROOT / "benchmarks" / "ablation.py").read_text())
    arms = next(n.value for n in tree.body if isinstance(n, ast.AnnAssign) and n.target.id == "ARMS")
    rows = (ROOT / "docs" / "ablations.md").read_text()
    for arm in (k.value for k in arms.keys):
        assert re.search(rf"^\| `?{re.escape(arm)}`? \|", rows, re.M), arm
    users = corpus()
    for name in choices.PRESETS:  # a profile's, a test's or an arm's
        assert re.search(rf"preset\(\"{name}\"|preset=\"{name}\"|\"--preset\", \"{name}\"", users), name
