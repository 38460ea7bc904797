"""The ``cddpm`` command line shared by notebooks, scripts and the README.

Each subcommand is one ``_add_*`` function (its arguments) and one handler that calls the library.
Library imports happen inside handlers so that ``cddpm --help`` stays instant.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__

DEFAULT_DATA = "data/synthetic-iclevr"
DEFAULT_EVALUATOR = "outputs/evaluator/checkpoint.pth"


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2))


# --- render ------------------------------------------------------------------------------------

def _add_render(sub) -> None:
    p = sub.add_parser("render", help="render the synthetic i-CLEVR set (or ground truth for conditions)",
                       description="Write a synthetic i-CLEVR root in the official layout.")
    p.add_argument("--out", required=True, type=Path, help="folder to write (refused if not empty unless --force)")
    p.add_argument("--scenes", type=int, default=6003, help="scenes of 3 images each (default 6003 = 18009 images)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=64, help="image side in pixels (64 for training, 256 for figures)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--conditions", type=Path, help="a test.json-style file: render --per-condition images of each")
    src.add_argument("--split", choices=["test", "new_test"], help="render the conditions of this split of --data")
    src.add_argument("--labels-from", type=Path, metavar="ROOT", help="render a twin of ROOT's train.json")
    p.add_argument("--data", type=Path, default=Path(DEFAULT_DATA), help="root whose --split conditions to render")
    p.add_argument("--per-condition", type=int, default=10, help="images per condition with --conditions/--split")
    p.set_defaults(func=_render)


def _render(args) -> int:
    from . import data, render

    command = "cddpm " + " ".join(sys.argv[1:])
    common = dict(out=args.out, seed=args.seed, size=args.size, force=args.force, command=command)
    if args.conditions or args.split:
        if args.conditions:
            conditions = data.read_json(args.conditions)
            if not isinstance(conditions, list):
                raise ValueError(f"{args.conditions} must hold a list of object lists like test.json")
            conditions = [data.labels.check(c) for c in conditions]
        else:
            conditions = data.load_condition_lists(args.data, args.split)
        path = render.render_conditions(conditions, per_condition=args.per_condition, **common)
    elif args.labels_from:
        path = render.render_twin(data.load_mapping(args.labels_from, "train"), **common)
    else:
        path = render.render_dataset(scenes=args.scenes, **common)
    print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cddpm", description="Conditional DDPM on i-CLEVR: render, train, sample, evaluate, report.")
    parser.add_argument("--version", action="version", version=f"cddpm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_render,):
        add(sub)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args) or 0
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError) as err:
        print(f"cddpm {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
