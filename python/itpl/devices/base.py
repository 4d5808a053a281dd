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
