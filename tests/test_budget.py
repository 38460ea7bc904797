"""Budgets in minutes: the steps that fit, and a speed probe that leaves its warm-up out and stops processes together."""
from __future__ import annotations

import pytest

from cddpm import budget


def test_the_steps_that_fit_a_budget():
    assert budget.steps_for_budget(2.0, 10) == 1200
    assert budget.steps_for_budget(2.0, 10, spent_s=90) == 1020  # what set-up and probing took is not there to spend
    assert budget.steps_for_budget(2.0, 10, cap=500) == 500 and budget.steps_for_budget(2.0, 10, cap=5000) == 1200
    assert budget.steps_for_budget(0.1, 1, spent_s=59.5) == 1 and budget.steps_for_budget(5.0, 1, spent_s=120) == 1
    assert budget.steps_for_budget(3.7, 0.5) == 111  # floor: the schedule ends within the budget, not after it


class FakeClock:
    """A step that takes ``first`` seconds for its first ``slow`` calls and ``then`` seconds after."""

    def __init__(self, first: float, slow: int, then: float):
        self.now, self.calls, self.first, self.slow, self.then = 0.0, 0, first, slow, then

    def step(self) -> float:
        self.calls += 1
        self.now += self.first if self.calls <= self.slow else self.then
        return 0.0

    def __call__(self) -> float:
        return self.now


def test_a_probe_times_steps_after_its_warm_up(monkeypatch):
    clock = FakeClock(first=30.0, slow=budget.WARMUP_STEPS, then=0.25)  # slow first steps are left out
    speed = budget.measure(clock.step, clock=clock)
    assert speed.steps_per_s == pytest.approx(4.0) and speed.seconds >= budget.MIN_SECONDS
    assert speed.steps == budget.MIN_SECONDS / 0.25 and clock.calls == budget.WARMUP_STEPS + speed.steps
    slow = FakeClock(first=0.0, slow=0, then=10.0)  # long steps: MIN_STEPS of them, however long
    assert budget.measure(slow.step, clock=slow).steps == budget.MIN_STEPS


def test_processes_stop_probing_together():
    clock = FakeClock(first=0.0, slow=0, then=1.0)
    said = []

    def agree(mine: bool) -> bool:  # another process is done only at its 6th timed step
        said.append(mine)
        return len(said) >= 6

    speed = budget.measure(clock.step, agree, clock=clock)
    assert speed.steps == 6 and said[:2] == [False, False] and said[-1] is True
