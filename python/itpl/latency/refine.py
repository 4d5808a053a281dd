"""A latency budget closed on the device: solve, time the answer, correct, repeat.

A profile predicts whole models within a few percent, but not exactly, and the
device may have changed since it was measured. So when the device is at hand,
each candidate is written as a whole model (the converted network resized, as
in profiling: milliseconds, not a conversion) and timed as a ratio to the
unpruned model in interleaved rounds (:mod:`itpl.deploy.timing`), and the solver's
goal is scaled by target / measured until the measured ratio sits just under
the target. A ratio budget is its own target; a budget in milliseconds is the
ratio of it to the unpruned model's time in the profile (the conditions the
milliseconds were set in), so a device that is faster or slower now than when
profiled neither passes nor fails a budget it would not otherwise.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Callable

from itpl.deploy.timing import Spread, Timer
from itpl.method.solve import Allocation

# The goal is corrected towards AIM x the target, and a candidate measured between
# (AIM - CLOSE_ENOUGH) and (AIM + CLOSE_ENOUGH) x the target ends the search: a
# margin under the budget, since two timing sessions of the same model disagree by
# up to 2-3% (at 0.97, --verify read one MobileNetV2 at 54.8% for a 54% budget).
AIM = 0.95
CLOSE_ENOUGH = 0.02


@dataclass
class Refinement:
    """The allocation chosen on the device and how it was found."""

    allocation: Allocation
    goal: float  # the solver's (predicted ms) budget that produced it
    target_ratio: float  # the budget as a ratio of the unpruned model's latency
    unpruned_ms: float  # the unpruned model's latency in the profile
    met: bool
    reference: Spread  # the unpruned model's bursts during refinement
    steps: list[dict] = field(default_factory=list)  # goal, predicted, ratio per candidate

    @property
    def target_ms(self) -> float:
        return self.target_ratio * self.unpruned_ms


def target_ratio(budget, profile) -> float:
    """A latency budget as a ratio of the unpruned model's latency in ``profile``."""
    if budget.ratio is not None:
        return float(budget.ratio)
    return float(budget.value) / float(profile.reference["ms"])


def refine_on_device(graph, solve_for: Callable[[float], Allocation], budget, profile, device, *,
                     steps: int = 4, progress: bool = False) -> Refinement:
    """Pick the allocation whose *measured* ratio to the unpruned model is closest
    under the budget's.

    Parameters
    ----------
    graph : ModelGraph
        The unpruned model's graph.
    solve_for : callable
        ``goal (predicted ms) -> Allocation``; raises ValueError when infeasible.
    budget : Budget
        ``value`` in ms (of the profile's conditions) or ``ratio`` of the unpruned latency.
    profile : Profile
        The device profile: its prediction, threads, batch and unpruned time.
    device : Device
        Where to time.
    steps : int
        Candidates timed at most.
    """
    from itpl.latency.runs import WholeModels

    target = target_ratio(budget, profile)
    full_ms = float(profile.reference["ms"])
    with tempfile.TemporaryDirectory(prefix="itpl-refine-") as tmp:
        models = WholeModels(graph, profile.settings["batch"], tmp, profile.precision)
        timer = Timer(device, models.base, threads=profile.device["threads"])
        path = os.path.join(tmp, "candidate.tflite")

        def measure(widths) -> float:
            models.write(widths, path)
            return timer.measure([path], rounds=5, precision=0.01)[0].ratio

        goal = target * full_ms  # the open loop's goal: the prediction is in measured ms
        bar = _bar(steps, progress)
        candidates, history, seen = [], [], {}
        for _ in range(4 * steps):  # solver calls; a coarse grid may repeat an answer
            try:
                alloc = solve_for(goal)
            except ValueError:
                break  # the goal fell below the smallest model: keep what we have
            key = tuple(alloc.widths)
            if key in seen:  # same widths: step the goal on, the same way, without timing again
                step = AIM * target / seen[key]
                goal *= min(step, 0.98) if step < 1 else max(step, 1.02)
                continue
            if len(candidates) == steps:
                break
            ratio = seen[key] = measure(alloc.widths)
            history.append({"goal": goal, "predicted": alloc.cost, "ratio": ratio,
                            "ms": ratio * full_ms})
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{ratio:.1%} of unpruned, target {target:.1%}")
            candidates.append((alloc, goal, ratio))
            if abs(ratio / target - AIM) <= CLOSE_ENOUGH:
                break
            goal *= AIM * target / ratio
        if bar is not None:
            bar.close()
    if not candidates:
        raise ValueError(f"no width allocation is feasible for {target:.1%} of the unpruned "
                         "latency on the device")
    under = [c for c in candidates if c[2] <= target]
    safe = [c for c in under if c[2] <= (AIM + CLOSE_ENOUGH) * target] or under
    # The slowest candidate safely under the budget keeps the most; failing that, the fastest.
    alloc, goal, _ = max(safe, key=lambda c: c[2]) if safe else min(candidates, key=lambda c: c[2])
    return Refinement(alloc, goal, target, full_ms, bool(under), timer.spread(), history)


def _bar(total: int, progress: bool):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="timing candidates", unit="model", leave=False)
