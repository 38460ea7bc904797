"""Work sized by minutes: a trainer (both trainers use it) times a few of its own steps on this machine, then takes
as many as fit, so the LR schedule still ends at the last step."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

WARMUP_STEPS = 2     # untimed first steps: memory allocation, kernel selection
MIN_STEPS = 3        # timed steps, at least ...
MIN_SECONDS = 2.0    # ... and for at least this long (many steps on a GPU)
RETIME_AFTER = 0.05  # a run re-times itself once this share of its budget has gone to training: a probe of a few
                     # steps read up to 1.4x too fast or too slow on 2-core VMs (docs/any-cpu.md)


@dataclass(frozen=True)
class Speed:
    """What a probe measured: ``steps`` timed steps in ``seconds``."""

    steps_per_s: float
    steps: int
    seconds: float


def measure(step: Callable[[], object], agree: Callable[[bool], bool] = bool,
            clock: Callable[[], float] = time.perf_counter) -> Speed:
    """Time ``step()`` (a float: it waits for the device) after ``WARMUP_STEPS`` untimed calls until ``MIN_STEPS`` and
    ``MIN_SECONDS`` are reached; ``agree(mine)`` lets processes that train together stop at the same step."""
    for _ in range(WARMUP_STEPS):
        float(step())
    start, steps = clock(), 0
    while True:
        float(step())
        steps += 1
        if agree(steps >= MIN_STEPS and clock() - start >= MIN_SECONDS):
            break
    seconds = clock() - start
    return Speed(steps / seconds, steps, seconds)


def steps_for_budget(steps_per_s: float, minutes: float, spent_s: float = 0.0, cap: int | None = None) -> int:
    """The steps that fit in ``minutes`` at ``steps_per_s`` once ``spent_s`` seconds of it are gone: at least 1,
    at most ``cap``."""
    steps = max(1, math.floor(steps_per_s * (minutes * 60 - spent_s)))
    return steps if cap is None else min(steps, cap)


def retimed_steps(step: int, steps_per_s: float, left_s: float, cap: int | None = None) -> int:
    """The steps a run at ``step``, going at ``steps_per_s`` with ``left_s`` seconds of its budget remaining, can end
    at (:func:`steps_for_budget` of what is left): at least ``step + 1``, at most ``cap``."""
    steps = step + steps_for_budget(steps_per_s, left_s / 60)
    return steps if cap is None else min(steps, cap)
