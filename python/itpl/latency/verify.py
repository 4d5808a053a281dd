"""``itpl prune --verify``: the pruned model timed beside the unpruned one, and the
budget checked as it was set.

Both models are exported at the profile's batch and timed in interleaved
rounds (:mod:`itpl.deploy.timing`), so the pruned model's latency is a ratio to the
unpruned model's measured in the same seconds. A ratio budget is checked as a
ratio. A budget in milliseconds was set in the conditions of the device
profile, so it is checked there: the ratio times the unpruned model's time in
the profile. The milliseconds measured now, and how much the unpruned model's
time moved while it was timed, are reported beside it.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

from itpl.deploy.timing import UNSTABLE_ADVICE, Spread, Timer


@dataclass
class Verification:
    """The pruned model's latency measured beside the unpruned model's."""

    ratio: float  # pruned / unpruned, median over rounds
    interval: tuple[float, float]  # 95% confidence interval of the ratio
    rounds: int
    unpruned_now: Spread  # the unpruned model's bursts during the check
    threads: int
    batch: int
    device: dict
    device_name: str = "device"
    precision: str = "fp32"  # of the two files timed
    met: bool | None = None  # None for budgets that are not latency
    budget_ratio: float | None = None  # the latency budget as a ratio of the unpruned model
    profile_unpruned_ms: float | None = None  # where an ms budget was set

    def to_dict(self) -> dict:
        d = {"ratio": self.ratio, "interval": list(self.interval), "rounds": self.rounds,
             "unpruned_now": self.unpruned_now.to_dict(), "pruned_ms_now": self.ms_now,
             "threads": self.threads, "batch": self.batch, "device": self.device,
             "met": self.met, "budget_ratio": self.budget_ratio, "precision": self.precision}
        if self.profile_unpruned_ms is not None:
            d["pruned_ms_at_profile"] = self.ratio * self.profile_unpruned_ms
        return d

    @property
    def ms_now(self) -> float:
        return self.ratio * self.unpruned_now.ms

    def line(self, budget: dict) -> str:
        """The console report, given the plan's budget record."""
        lo, hi = self.interval
        text = (f"verified on {self.device_name} ({self.precision}, {self.threads} thread"
                f"{'s' if self.threads != 1 else ''}, batch {self.batch}), {self.rounds} rounds "
                f"beside the unpruned model: {self.ratio:.1%} of its latency (95% CI "
                f"{lo:.1%}-{hi:.1%}), {1 / self.ratio:.2f}x faster; now {self.ms_now:.3f} ms vs "
                f"{self.unpruned_now.ms:.3f} ms (the unpruned model moved "
                f"{self.unpruned_now.relative:.0%})")
        lo_hi = (hi - lo) / 2 / self.ratio
        if lo_hi > 0.03:
            text += f" [warning: the ratio is only known within +-{lo_hi:.0%}: {UNSTABLE_ADVICE}]"
        if self.met is None:
            return text
        verdict = "met" if self.met else "NOT MET"
        if budget.get("set_as") == "ms":
            at = self.ratio * self.profile_unpruned_ms
            return (text + f"; at the profile's {self.profile_unpruned_ms:.3f} ms for the "
                    f"unpruned model that is {at:.3f} ms, budget {budget['value']:.3f} ms: {verdict}")
        return text + f"; budget {self.budget_ratio:.1%} of the unpruned latency: {verdict}"


def verify_latency(pruned, unpruned, input_shape, device, *, threads: int = 1, batch: int = 1,
                   budget: dict | None = None, rounds: int = 10,
                   precision: float = 0.01, dtype: str = "fp32") -> Verification:
    """Export both models and time the pruned one as a ratio to the unpruned one.

    Parameters
    ----------
    pruned, unpruned : torch.nn.Module
        The two models, in eval mode.
    input_shape : tuple of int
        One sample's shape.
    device : Device
        Where to time.
    threads, batch : int
        Interpreter threads and the batch of the exported files.
    budget : dict, optional
        The plan's budget record; a latency budget is checked (``met``).
    rounds, precision
        Rounds at least, and the 95% interval's half-width (relative) that
        ends the timing early; see :meth:`itpl.deploy.timing.Timer.measure`.
    dtype : str
        ``"fp32"``, or ``"int8"`` to time both models quantized (on random
        calibration inputs: int8 latency does not depend on the scales).
    """
    from itpl.deploy.export import export_tflite
    from itpl.deploy.quantize import check_precision, quantize_for_timing

    check_precision(dtype)
    with tempfile.TemporaryDirectory(prefix="itpl-verify-") as tmp:
        paths = []
        for name, m in (("unpruned", unpruned), ("pruned", pruned)):
            path = os.path.join(tmp, f"{name}.tflite")
            export_tflite(m, input_shape, f"{path}.fp32" if dtype == "int8" else path, batch=batch)
            if dtype == "int8":
                quantize_for_timing(f"{path}.fp32", path)
            paths.append(path)
        timer = Timer(device, paths[0], threads=threads)
        got = timer.measure(paths[1:], rounds=rounds, max_rounds=4 * rounds, precision=precision)[0]
    result = Verification(got.ratio, got.interval(), len(got.ratios), timer.spread(), threads,
                          batch, device.facts(threads), device.name, dtype)
    if budget and budget.get("kind") == "latency":
        result.profile_unpruned_ms = float(budget["unpruned_ms"])
        result.budget_ratio = (float(budget["ratio"]) if budget.get("set_as") == "ratio"
                               else float(budget["value"]) / result.profile_unpruned_ms)
        result.met = result.ratio <= result.budget_ratio
    return result
