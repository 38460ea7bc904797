"""The package's layering: every module imports on its own, the method and its support import neither
``evaluation`` nor ``workflow``, ``evaluation`` does not import ``workflow``, and no import cycle exists."""
import ast
import os
import subprocess
import sys
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "lib"
PACKAGE = LIB / "cddpm"
TOP = {"cddpm.cli", "cddpm.__main__"}  # the command line sits above everything


def module_name(path: Path) -> str:
    """Dotted name of a module file under lib/."""
    parts = path.relative_to(LIB).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str) -> set[str]:
    """The cddpm modules ``name`` imports anywhere in its file (top level, in functions, under TYPE_CHECKING)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "cddpm")
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            stem = ".".join(base + ([node.module] if node.module else []))
            if stem.split(".")[0] != "cddpm":
                continue
            for alias in node.names:  # `from . import x` names a module when x is one
                found.add(f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in MODULES else stem)
    return {m for m in found if m in MODULES and m != name}


def group(name: str) -> str:
    """evaluation, workflow, top (the CLI) or base (the method and its support, render included)."""
    if name in TOP:
        return "top"
    second = name.split(".")[1] if "." in name else ""
    return second if second in ("evaluation", "workflow") else "base"


ALLOWED = {"base": {"base"}, "evaluation": {"base", "evaluation"}, "workflow": {"base", "evaluation", "workflow"},
           "top": {"base", "evaluation", "workflow", "top"}}


def test_no_module_imports_a_layer_above_its_own():
    wrong = [f"{m} imports {i}" for m in MODULES for i in sorted(imports(m))
             if group(i) not in ALLOWED[group(m)] and i not in {"cddpm"}]
    assert not wrong, "; ".join(wrong)


def test_the_module_import_graph_has_no_cycle():
    graph = {m: imports(m) - {"cddpm"} for m in MODULES}  # every module imports its package; that is no cycle
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(m: str, path: list[str]) -> list[str] | None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path + [m, n]
            if n not in state and (cycle := visit(n, path + [m])):
                return cycle
        state[m] = 2
        return None

    for m in MODULES:
        if m not in state:
            cycle = visit(m, [])
            assert cycle is None, " -> ".join(cycle)


def test_every_module_imports_alone_in_a_fresh_interpreter():
    code = ("import importlib, sys\nfailed = []\nfor name in sys.argv[1:]:\n"
            "    for k in [k for k in sys.modules if k == 'cddpm' or k.startswith('cddpm.')]:\n"
            "        del sys.modules[k]\n"
            "    try:\n        importlib.import_module(name)\n"
            "    except Exception as err:\n        failed.append(f'{name}: {type(err).__name__}: {err}')\n"
            "print('\\n'.join(failed))\n")
    names = [m for m in MODULES if m != "cddpm.__main__"]  # importing the entry point runs the command line
    out = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(LIB)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", out.stdout
