"""Fidelity by eye: for a few conditions, a ground-truth render beside each model's sample of the same condition.

Rows are conditions (the first ``--rows`` with a cube among two or more objects, where shape detail shows most),
columns the first render of each condition in ``--reference`` (``cddpm render --split``, which renders the split's
conditions in order: ``condition_{i:03d}_000.png``) and one sample folder each (``NAME=DIR``, DIR holding ``i.png``
of condition i, as ``cddpm sample`` writes them):

    python benchmarks/fidelity_figure.py --reference outputs/demo-avx2b/gt/synthetic-iclevr-2c8e20fd/test \\
        demo-native=outputs/demo-native/samples/demo/test__seed0__last__dpmsolver20__g3/images/test \\
        --out docs/fidelity_test.png
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from cddpm.choices import IMAGE_SIZE
from cddpm.data import read_picture
from cddpm.figures import save_captioned_grid


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", type=Path, required=True, help="ground-truth renders of the samples' conditions "
                   "(cddpm render --split)")
    p.add_argument("samples", nargs="+", metavar="NAME=DIR", help="a column: sample folder of the split")
    p.add_argument("--rows", type=int, default=6)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    conditions = json.loads((args.reference / "meta.json").read_text())["conditions"]
    chosen = [i for i, c in enumerate(conditions) if len(c) > 1 and any("cube" in o for o in c)][:args.rows]
    columns = [("ground truth", None), *(tuple(s.split("=", 1)) for s in args.samples)]
    images, captions = [], []
    for i in chosen:
        for title, folder in columns:
            path = args.reference / "iclevr" / f"condition_{i:03d}_000.png" if folder is None else Path(folder) / f"{i}.png"
            images.append(read_picture(path, IMAGE_SIZE))
            captions.append(f"{title}: {', '.join(conditions[i])}")
    print(save_captioned_grid(torch.stack(images), captions, args.out, ncols=len(columns), scale=1.6))


if __name__ == "__main__":
    main()
