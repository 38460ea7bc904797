"""Condition lists beyond the two splits, to test whether a model generalises: ``same_colour``, ``same_shape`` and a
root's ``rare_pairs`` (the pairs seen together least often in training)."""
from __future__ import annotations

import itertools
import os
from collections import Counter
from pathlib import Path

import numpy as np

from .. import labels as L
from ..choices import PROBE_SET, SEED
from ..data import load_condition_file, load_mapping
from ..paths import check_file_target, write_json

NAMES = ("same_colour", "same_shape", "rare_pairs")


def probe_sets(train_lists: list[list[str]], per_set: int = PROBE_SET, seed: int = SEED) -> dict[str, list[list[str]]]:
    """``per_set`` object lists of each kind in ``NAMES`` (fewer where fewer exist), drawn with ``seed``."""
    if per_set < 1:
        raise ValueError(f"--per-set {per_set} must be >= 1")
    if seed < 0:
        raise ValueError(f"--seed {seed} must be an integer >= 0")
    if not any(len(objects) > 1 for objects in train_lists):
        raise ValueError("--data's train.json holds no image of two or more objects, so no pair of objects is rarer "
                         "than another; point --data at a root with multi-object scenes")
    rng = np.random.default_rng(seed)

    def pick(candidates: list[tuple[str, ...]]) -> list[list[str]]:
        order = rng.permutation(len(candidates))[:per_set]
        return [list(candidates[i]) for i in order]

    same_colour = [p for c in L.COLOURS for p in itertools.permutations([f"{c} {s}" for s in L.SHAPES])]
    same_shape = [tuple(f"{c} {s}" for c in rng.permutation(trio)) for s in L.SHAPES
                  for trio in itertools.combinations(L.COLOURS, 3)]
    together = Counter(frozenset(p) for objects in train_lists for p in itertools.combinations(objects, 2))
    pairs = list(itertools.combinations(L.CLASSES, 2))
    ties = rng.permutation(len(pairs))  # a seeded order among pairs seen equally often
    rare = sorted(range(len(pairs)), key=lambda i: (together[frozenset(pairs[i])], ties[i]))[:per_set]
    return {"same_colour": pick(same_colour), "same_shape": pick(same_shape),
            "rare_pairs": [list(pairs[i]) if rng.random() < 0.5 else list(pairs[i])[::-1] for i in rare]}


def write_probes(root: str | os.PathLike, out: str | os.PathLike, per_set: int = PROBE_SET, seed: int = SEED,
                 force: bool = False) -> list[Path]:
    """Write ``OUT/{name}.json`` for each probe set of ``root``'s training scenes; returns the paths. Existing files
    are replaced only with ``force``, and only when they hold object lists (what this wrote before)."""
    sets = probe_sets(list(load_mapping(root, "train").values()), per_set, seed)
    paths = [Path(out) / f"{name}.json" for name in sets]
    for path in paths:
        check_file_target(path, "--out")
        if path.exists():
            if not force:
                raise FileExistsError(f"{path} exists; pass --force to replace it or choose another --out")
            load_condition_file(path)  # refuses a file that is not a list of object lists: not ours to replace
    for path, lists in zip(paths, sets.values()):
        write_json(path, lists)
    return paths
