"""The device interface and the timing record every device returns."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass
class Timing:
    """Latency of one model on one device, milliseconds.

    ``statistic`` says what ``median_ms`` is: ``"median"``, or ``"average"``
    where the device's tool prints only an average (most ``benchmark_model``
    builds).
    """

    median_ms: float
    min_ms: float
    max_ms: float
    repeats: int
    statistic: str = "median"

    @classmethod
    def from_samples(cls, samples_ms: list[float]) -> Timing:
        return cls(statistics.median(samples_ms), min(samples_ms), max(samples_ms), len(samples_ms))


class Device:
    """Times .tflite files. Subclasses implement ``facts`` and ``time_model``."""

    name = "device"

    def facts(self, threads: int) -> dict:
        """Device description recorded in results (name, CPU, runtime version, threads)."""
        raise NotImplementedError

    def time_model(self, path: str, *, threads: int, warmup: int = 5, min_repeats: int = 20,
                   max_seconds: float = 10.0) -> Timing:
        """Median/min/max latency of one invocation of ``path``."""
        raise NotImplementedError

    def time_bursts(self, sequence: list[str], *, threads: int, burst_ms: float,
                    min_runs: int = 1) -> list[float]:
        """Time the models of ``sequence`` in its order, one burst each (a path may recur).

        A burst invokes its model, already warmed up, for about ``burst_ms``
        and at least ``min_runs`` times, and yields the median ms of one
        invocation. The
        order is the point: :mod:`itpl.deploy.timing` puts a reference model between
        every two others, so each burst sits seconds or less from its
        reference. This generic version times each entry on its own; devices
        that can keep models loaded, or run a whole sequence in one go,
        override it.
        """
        return [self.time_model(path, threads=threads, warmup=1, min_repeats=min_runs,
                                max_seconds=burst_ms / 1e3).median_ms for path in sequence]
