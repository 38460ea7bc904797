"""What a synthetic scene holds: balanced labels, test conditions and object placement. Objects are placed one at a
time from a generator keyed by (seed, scene key), so a scene's first k objects never depend on later ones; each must
stay ``MIN_VISIBLE`` visible when cast at the course's ``IMAGE_SIZE``, whatever size is rendered."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import labels as L
from ..choices import IMAGE_SIZE
from . import raycast as R

# the CLEVR palette and sizes (radius of the bounding circle, Blender units)
RGB = {"gray": (87, 87, 87), "red": (173, 35, 35), "blue": (42, 75, 215), "green": (29, 105, 20),
       "brown": (129, 74, 25), "purple": (129, 38, 192), "cyan": (41, 208, 208), "yellow": (255, 238, 51)}
SIZES = {"large": 0.7, "small": 0.35}
MATERIALS = ("rubber", "metal")
KINDS = {"sphere": R.SPHERE, "cube": R.CUBE, "cylinder": R.CYLINDER}
AREA = 3.0  # object centres lie in [-AREA, AREA]^2, like CLEVR
GAP = 0.2  # least floor distance between two objects' bounding circles
MIN_VISIBLE = 0.8  # least fraction of an object's footprint that no other object hides
MAX_TRIES = 1000
# official split shapes: test.json holds 6/12/14 conditions of 1/2/3 objects, new_test.json 12/20 of 2/3
SPLIT_LENGTHS = {"test": [1] * 6 + [2] * 12 + [3] * 14, "new_test": [2] * 12 + [3] * 20}


@dataclass(frozen=True)
class Thing:
    """One object: its label, material, size, floor position and (cubes only) rotation as cos, sin."""

    label: str
    material: str
    size: str
    x: float
    y: float
    cos: float = 1.0
    sin: float = 0.0

    @property
    def radius(self) -> float:
        return SIZES[self.size]


def balanced_labels(scenes: int, rng: np.random.Generator) -> list[list[str]]:
    """``scenes`` lists of 3 distinct labels; each class is about equally frequent in every slot."""
    counts = np.zeros((L.MAX_OBJECTS, L.NUM_CLASSES), np.int64)
    out = []
    for _ in range(scenes):
        chosen: list[int] = []
        for slot in range(L.MAX_OBJECTS):
            free = np.setdiff1d(np.arange(L.NUM_CLASSES), chosen)
            rare = free[counts[slot, free] == counts[slot, free].min()]
            chosen.append(int(rare[rng.integers(len(rare))]))
            counts[slot, chosen[-1]] += 1
        out.append([L.CLASSES[c] for c in chosen])
    return out


def draw_conditions(lengths: Sequence[int], rng: np.random.Generator) -> list[list[str]]:
    """Distinct condition lists of the given lengths, each without a repeated label."""
    out: list[list[str]] = []
    seen = set()
    for n in lengths:
        while True:
            labels = [L.CLASSES[c] for c in rng.permutation(L.NUM_CLASSES)[:n]]
            if frozenset(labels) not in seen:
                break
        seen.add(frozenset(labels))
        out.append(labels)
    return out


def _draw(label: str, others: list[Thing], rng: np.random.Generator) -> Thing:
    """A random material, size, rotation and a position in view and clear of ``others``."""
    material = MATERIALS[rng.integers(2)]
    size = tuple(SIZES)[rng.integers(2)]
    while True:  # a uniform direction from a point in the unit disc: sqrt is exact, unlike cos/sin
        a, b = rng.uniform(-1, 1, 2)
        norm = math.sqrt(a * a + b * b)
        if 0.1 < norm <= 1:
            break
    for _ in range(MAX_TRIES):
        x, y = rng.uniform(-AREA, AREA, 2)
        thing = Thing(label, material, size, float(x), float(y), float(a / norm), float(b / norm))
        if in_frame(thing) and all(math.hypot(x - o.x, y - o.y) >= thing.radius + o.radius + GAP for o in others):
            return thing
    raise RuntimeError(f"no room for {label!r} next to {others}")


def batch(images: Sequence[Sequence[Thing]]) -> R.Scenes:
    """The ray caster's arrays for a list of images, each a list of up to 3 objects."""
    s = R.Scenes.empty(len(images))
    for i, things in enumerate(images):
        for j, t in enumerate(things):
            colour, shape = t.label.split()
            s.kind[i, j] = KINDS[shape]
            s.x[i, j], s.y[i, j], s.r[i, j], s.cos[i, j], s.sin[i, j] = t.x, t.y, t.radius, t.cos, t.sin
            s.colour[i, j] = (np.array(RGB[colour], np.float32) / 255) ** 2  # sRGB ~ linear ** (1/2)
            s.metal[i, j] = t.material == "metal"
    return s


def in_frame(thing: Thing) -> bool:
    """Whether the object's bounding box projects inside the image."""
    r = thing.radius
    x, y, z = np.meshgrid([thing.x - r, thing.x + r], [thing.y - r, thing.y + r], [0.0, 2 * r])
    u, v = R.project(x, y, z, IMAGE_SIZE)
    return bool(((u >= 0) & (u <= IMAGE_SIZE) & (v >= 0) & (v <= IMAGE_SIZE)).all())


def layout(keys: Sequence[tuple[int, ...]], label_lists: Sequence[Sequence[str]], seed: int) -> list[list[Thing]]:
    """Place the objects of many scenes at once; scene i draws from the generator (seed, *keys[i])."""
    rngs = [np.random.default_rng([seed, *key]) for key in keys]
    scenes: list[list[Thing]] = [[] for _ in keys]
    check = R.renderer(IMAGE_SIZE, R.SAMPLES)
    for k in range(L.MAX_OBJECTS):
        todo = [i for i, labels in enumerate(label_lists) if len(labels) > k]
        for _ in range(MAX_TRIES):
            if not todo:
                break
            tries = [scenes[i] + [_draw(label_lists[i][k], scenes[i], rngs[i])] for i in todo]
            got = check.render(batch(tries), shade=False)
            ok = (got.visible >= MIN_VISIBLE * got.covered).all(1)
            for i, things, good in zip(todo, tries, ok):
                if good:
                    scenes[i] = things
            todo = [i for i, good in zip(todo, ok) if not good]
        if todo:
            raise RuntimeError(f"could not place object {k + 1} of scenes {todo[:5]} visibly")
    return scenes
