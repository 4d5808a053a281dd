"""A latency budget closed on the device: solve, time the answer, correct, repeat.

A profile predicts random width configurations within a few percent, but the
solver's answers are not random: Eq. 11 keeps some groups at full width and
cuts others hard, and there the prediction is biased (the unpruned model runs
5-11% slower than predicted on the local CPU, likely because a layer timed
alone keeps its weights in cache). So when the device is at hand, each
candidate is written as a whole model (the converted network resized, as in
profiling: milliseconds, not a conversion) and timed, and the solver's goal is
scaled by budget / measured until the measured latency sits just under the
budget. A ratio budget is taken of the unpruned model measured now, beside the
candidates, so drift of the machine since profiling cancels.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Callable

from itpl.solve import Allocation

# Stop once the measurement is within this fraction under the budget.
CLOSE_ENOUGH = 0.02


@dataclass
class Refinement:
    """The allocation chosen on the device and how it was found."""

    allocation: Allocation
    goal: float  # the solver's (predicted) budget that produced it
    target_ms: float  # the budget in measured ms
    unpruned_ms: float | None  # measured unpruned latency (ratio budgets)
    met: bool
    steps: list[dict] = field(default_factory=list)  # goal, predicted, measured per candidate


def refine_on_device(graph, solve_for: Callable[[float], Allocation], budget, predicted_full: float,
                     device, *, threads: int, batch: int = 1, steps: int = 4,
                     max_seconds: float = 2.0, progress: bool = False) -> Refinement:
    """Pick the allocation whose *measured* latency is closest under the budget.

    Parameters
    ----------
    graph : ModelGraph
        The unpruned model's graph.
    solve_for : callable
        ``goal (predicted ms) -> Allocation``; raises ValueError when infeasible.
    budget : Budget
        ``value`` in measured ms, or ``ratio`` of the measured unpruned latency.
    predicted_full : float
        The profile's prediction of the unpruned latency (the first goal of a
        ratio budget is the ratio of it).
    device : Device
        Where to time; ``threads`` and ``batch`` as the profile's.
    steps : int
        Candidates timed at most.
    """
    from itpl.profile import WholeModels

    with tempfile.TemporaryDirectory(prefix="itpl-refine-") as tmp:
        models = WholeModels(graph, batch, tmp)
        path = os.path.join(tmp, "candidate.tflite")

        def measure(widths) -> float:
            models.write(widths, path)
            return device.time_model(path, threads=threads, max_seconds=max_seconds).median_ms

        unpruned = None
        if budget.ratio is not None:
            unpruned = measure(graph.widths)
            target, goal = budget.ratio * unpruned, budget.ratio * predicted_full
        else:
            target = goal = float(budget.value)
        bar = _bar(steps, progress)
        candidates, history, seen = [], [], {}
        for _ in range(4 * steps):  # solver calls; a coarse grid may repeat an answer
            try:
                alloc = solve_for(goal)
            except ValueError:
                break  # the goal fell below the smallest model: keep what we have
            key = tuple(alloc.widths)
            if key in seen:  # same widths: step the goal on, the same way, without timing again
                step = target / seen[key]
                goal *= min(step, 1 - CLOSE_ENOUGH) if step < 1 else max(step, 1 + CLOSE_ENOUGH)
                continue
            if len(candidates) == steps:
                break
            ms = seen[key] = measure(alloc.widths)
            history.append({"goal": goal, "predicted": alloc.cost, "measured_ms": ms})
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{ms:.3f} ms, budget {target:.3f}")
            candidates.append((alloc, goal, ms))
            if (1 - CLOSE_ENOUGH) * target <= ms <= target:
                break
            goal *= target / ms
        if bar is not None:
            bar.close()
    if not candidates:
        raise ValueError(f"no width allocation is feasible for {target:.3f} ms on the device")
    under = [c for c in candidates if c[2] <= target]
    # The slowest candidate under the budget keeps the most; failing that, the fastest.
    alloc, goal, _ = max(under, key=lambda c: c[2]) if under else min(candidates, key=lambda c: c[2])
    return Refinement(alloc, goal, target, unpruned, bool(under), history)


def _bar(total: int, progress: bool):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="timing candidates", unit="model", leave=False)
