"""Latency that holds on a device whose speed drifts: every model timed beside a reference.

A phone (and a shared CPU) switches between speed regimes within seconds:
frequency scaling, big/little migration, heat, neighbours. On a shared 2-core
host the same model timed four times in a row gave 19.5, 20.0, 19.6 and
15.6 ms, while two models timed one right after the other agreed within 3%.
So no latency itpl uses is one absolute timing. :class:`Timer` times each
model in short bursts, each burst between two bursts of a *reference* model
(the unpruned network, as a rule), and keeps the model's time as a ratio to
the geometric mean of the two reference bursts around it. Rounds repeat this
in a shuffled order. Milliseconds come from the ratio times a robust estimate
of the reference over the whole run (the median of all its bursts), and the
spread of those bursts tells how much the device moved meanwhile
(:class:`Spread`).

The mechanism is one place for every caller: profile samples, the channel
tile probe, whole-model calibration and validation, refine candidates,
``--verify`` and ``itpl bench``; and it asks of a device only
:meth:`itpl.deploy.devices.Device.time_bursts`, so phones over ADB use it as the
local CPU does.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

import numpy as np

from itpl.deploy.devices.base import Device

BURST_MS = 25.0  # long enough to hold a few invocations, short next to a regime
# A device whose ratios are noisier than this after the most rounds asked gets a warning.
UNSTABLE_ADVICE = ("the device's speed moved too much for a precise measurement: close other "
                   "apps or programs, pin the benchmark to fixed cores (--cpu-mask on a phone), "
                   "let the phone cool down, or plug it in")


@dataclass
class Spread:
    """How the reference's time moved during a run, milliseconds.

    ``ms`` is the median of all its bursts (the robust estimate the run's
    milliseconds are based on), ``low_ms`` and ``high_ms`` their 10th and 90th
    percentiles, ``bursts`` how many there were.
    """

    ms: float
    low_ms: float
    high_ms: float
    bursts: int

    @property
    def relative(self) -> float:
        """(90th - 10th percentile) / median: 0.25 when the device switched
        between regimes 25% apart about equally often."""
        return (self.high_ms - self.low_ms) / self.ms if self.ms > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "relative": self.relative}

    @classmethod
    def of(cls, samples_ms: list[float]) -> Spread:
        if not samples_ms:
            raise ValueError("no reference timings to summarise")
        low, high = np.percentile(samples_ms, [10, 90])
        return cls(float(statistics.median(samples_ms)), float(low), float(high), len(samples_ms))

    @classmethod
    def from_dict(cls, d: dict) -> Spread:
        return cls(float(d["ms"]), float(d["low_ms"]), float(d["high_ms"]), int(d["bursts"]))

    def describe(self) -> str:
        return (f"{self.ms:.3f} ms (10-90%: {self.low_ms:.3f}-{self.high_ms:.3f} ms, "
                f"{self.relative:.0%} spread over {self.bursts} bursts)")


def median_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median (order statistics).

    With fewer values than the confidence allows (5 or fewer at 95%), the
    range of the values.
    """
    from scipy.stats import binom

    x = np.sort(np.asarray(values, dtype=np.float64))
    n = len(x)
    if n == 0:
        raise ValueError("no values")
    # [x_k, x_{n-1-k}] (sorted, 0-based) misses the median with probability
    # 2 P(B <= k), B ~ Binom(n, 1/2): the largest k that keeps this within 1 - confidence.
    k = int(binom.ppf((1 - confidence) / 2, n, 0.5))
    if binom.cdf(k, n, 0.5) > (1 - confidence) / 2:
        k -= 1
    k = max(0, min(k, (n - 1) // 2))
    return float(x[k]), float(x[n - 1 - k])


@dataclass
class Relative:
    """One model's time as ratios to the reference, one per round."""

    ratios: list[float]

    @property
    def ratio(self) -> float:
        return float(statistics.median(self.ratios))

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        return median_interval(self.ratios, confidence)

    @property
    def precision(self) -> float:
        """Half the 95% interval, relative to the ratio."""
        lo, hi = self.interval()
        return (hi - lo) / 2 / self.ratio if self.ratio > 0 else math.inf


class Timer:
    """Times models as ratios to a reference on ``device``; see the module docstring.

    Parameters
    ----------
    device : Device
        Where to time.
    reference : str
        The reference model's .tflite path.
    threads : int
        Interpreter threads.
    burst_ms : float
        Length of one burst of invocations.
    min_runs : int
        Invocations per burst at least. The median of a burst shrugs off an
        invocation the OS interrupted only when there are several: a
        reference much faster than ``burst_ms`` gets many.
    seed : int
        Seed of the shuffled order within rounds.
    """

    def __init__(self, device: Device, reference: str, *, threads: int,
                 burst_ms: float = BURST_MS, min_runs: int = 3, seed: int = 0):
        if not burst_ms > 0 or min_runs < 1:
            raise ValueError(f"burst_ms must be positive and min_runs at least 1, got "
                             f"{burst_ms} and {min_runs}")
        self.device, self.reference, self.threads = device, reference, threads
        self.burst_ms, self.min_runs = burst_ms, min_runs
        self.reference_ms: list[float] = []  # every reference burst of the run
        self._rng = np.random.default_rng(seed)

    def rounds(self, paths: list[str], rounds: int) -> list[list[float]]:
        """``rounds`` ratios for each of ``paths``: one device call, every model
        bracketed by reference bursts, the order shuffled in each round."""
        if rounds < 1:
            raise ValueError(f"rounds must be at least 1, got {rounds}")
        order = [int(i) for _ in range(rounds) for i in self._rng.permutation(len(paths))]
        sequence = [self.reference]
        for i in order:
            sequence += [paths[i], self.reference]
        times = self.device.time_bursts(sequence, threads=self.threads, burst_ms=self.burst_ms,
                                        min_runs=self.min_runs)
        if len(times) != len(sequence) or not all(t > 0 and math.isfinite(t) for t in times):
            raise ValueError(f"device {self.device.name} returned unusable timings: {times!r}")
        self.reference_ms += times[0::2]
        out: list[list[float]] = [[] for _ in paths]
        for j, i in enumerate(order):
            before, model, after = times[2 * j: 2 * j + 3]
            out[i].append(model / math.sqrt(before * after))
        return out

    def measure(self, paths: list[str], *, rounds: int = 5, max_rounds: int | None = None,
                precision: float = 0.02, each: bool = False) -> list[Relative]:
        """Ratios of ``paths`` to the reference, measured until precise enough.

        ``rounds`` rounds first; then, while some model's 95% interval is
        wider than ``precision`` (half-width, relative) and fewer than
        ``max_rounds`` (default ``3 * rounds``) are done, ``rounds`` more: of
        every model, or with ``each`` of the imprecise ones only (a batch of
        profile samples, where one noisy sample should not re-time the rest).
        """
        max_rounds = max(rounds, max_rounds or 3 * rounds)
        got = self.rounds(paths, rounds)
        while True:
            todo = [i for i, r in enumerate(got) if Relative(r).precision > precision]
            if not todo or len(got[todo[0]]) >= max_rounds:
                break
            todo = todo if each else list(range(len(paths)))
            more = self.rounds([paths[i] for i in todo], min(rounds, max_rounds - len(got[todo[0]])))
            for i, m in zip(todo, more):
                got[i] = got[i] + m
        return [Relative(r) for r in got]

    def spread(self) -> Spread:
        """The reference's timings so far."""
        return Spread.of(self.reference_ms)
