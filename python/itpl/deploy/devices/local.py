"""The local CPU through the LiteRT interpreter (XNNPACK), in this process."""

from __future__ import annotations

import os
import platform
import statistics
import time
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from itpl.deploy.devices.base import Device, Timing


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class LocalDevice(Device):
    """This machine's CPU; the embedded default device."""

    name = "local"

    def facts(self, threads: int) -> dict:
        try:
            runtime = f"ai-edge-litert {version('ai-edge-litert')}"
        except PackageNotFoundError:
            runtime = "tflite-runtime"
        return {"device": "local", "cpu": _cpu_name(), "cores": os.cpu_count(),
                "os": f"{platform.system()} {platform.release()}", "abi": platform.machine(),
                "runtime": runtime, "threads": threads}

    def time_bursts(self, sequence: list[str], *, threads: int, burst_ms: float,
                    min_runs: int = 1) -> list[float]:
        """See :meth:`Device.time_bursts`: every model of the sequence stays
        loaded for the call, so a burst is only invocations."""
        from itpl.deploy.export import interpreter

        loaded: dict[str, object] = {}
        out = []
        for path in sequence:
            interp = loaded.get(path)
            if interp is None:
                interp = loaded[path] = interpreter(path, threads)
                for detail in interp.get_input_details():
                    interp.set_tensor(detail["index"],
                                      np.zeros(detail["shape"], dtype=detail["dtype"]))
                for _ in range(2):  # the first invocation packs weights
                    interp.invoke()
            times: list[float] = []
            end = time.perf_counter() + burst_ms / 1e3
            while len(times) < min_runs or time.perf_counter() < end:
                t0 = time.perf_counter()
                interp.invoke()
                times.append((time.perf_counter() - t0) * 1e3)
            out.append(statistics.median(times))
        return out

    def time_model(self, path: str, *, threads: int, warmup: int = 5, min_repeats: int = 20,
                   max_seconds: float = 10.0) -> Timing:
        """Repeat in rounds of ``min_repeats`` (or more, to fill 20 ms) until the
        median moves by under 1% between rounds or ``max_seconds`` have passed."""
        from itpl.deploy.export import interpreter

        interp = interpreter(path, threads)
        for detail in interp.get_input_details():
            interp.set_tensor(detail["index"], np.zeros(detail["shape"], dtype=detail["dtype"]))
        warmup, t0 = max(1, warmup), time.perf_counter()
        for _ in range(warmup):
            interp.invoke()
        # Rounds last at least 20 ms, so a tiny model's median is not a few
        # microseconds of timer jitter.
        each = (time.perf_counter() - t0) / warmup
        per_round = max(min_repeats, min(2000, int(0.02 / max(each, 1e-7))))
        samples: list[float] = []
        start, previous = time.perf_counter(), None
        while True:
            for _ in range(per_round):
                t0 = time.perf_counter()
                interp.invoke()
                samples.append((time.perf_counter() - t0) * 1e3)
            median = statistics.median(samples)
            stable = previous is not None and abs(median - previous) <= 0.01 * previous
            if stable or time.perf_counter() - start > max_seconds:
                return Timing.from_samples(samples)
            previous = median
