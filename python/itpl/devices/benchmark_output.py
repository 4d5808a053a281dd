"""Parser of the output of TFLite's ``benchmark_model`` tool (pure; no device).

The tool's summary has changed layout over its releases; all of these are read:

- TF 2.2 onwards (and LiteRT): ``Inference timings in us: Init: 3464, First
  inference: 26334, Warmup (avg): 23452.8, Inference (avg): 22878.9``, since TF
  2.13 with an ``INFO: `` prefix, on Android sometimes a logcat-style prefix.
- TF 1.14 to 2.1: ``Average inference timings in us: Warmup: 14282.5, Init:
  3854, Inference: 12960.9``.
- TF 1.13 and earlier: ``Average inference timings in us: Warmup: 82116, Init:
  3865, no stats: 66417.5``.

Doubles are written by C++ streams with 6 significant digits, so a slow model
prints ``Inference (avg): 1.23457e+06``. Before the summary, each phase prints a
statistics line, ``count=50 first=20580 curr=20513 min=20144 max=21374
avg=20525.6 std=240`` (``count=1 curr=...`` or ``count=N curr=...(all same)``
when every run took the same time); the last one belongs to the timed runs and
gives their count, minimum and maximum, and a median where the tool prints one.

Provenance: the statistics line is ``Stat::OutputToStream`` of
``xla/tsl/util/stats_calculator.h``, read in the headers that the
``tensorflow-cpu`` 2.20.0 wheel ships (the only TF source reachable from
here); its three cases (empty, all the same, the full line) are the ones
above. The summary lines were written from memory of the tool's logs and
have not been checked against ``benchmark_model.cc``, which no wheel ships.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_SUMMARY_NEW = re.compile(
    rf"Inference timings in us:\s*Init:\s*(?P<init>{_NUMBER}),\s*First inference:\s*"
    rf"(?P<first>{_NUMBER}),\s*Warmup \(avg\):\s*(?P<warmup>{_NUMBER}),\s*"
    rf"Inference \(avg\):\s*(?P<avg>{_NUMBER})")
_SUMMARY_OLD = re.compile(
    rf"Average inference timings in us:\s*Warmup:\s*(?P<warmup>{_NUMBER}),\s*Init:\s*"
    rf"(?P<init>{_NUMBER}),\s*(?:Inference|no stats):\s*(?P<avg>{_NUMBER})")
_STATS = re.compile(r"\bcount=(\d+)\b(.*)$")
_PAIR = re.compile(rf"\b([a-z0-9]+)=({_NUMBER})")


@dataclass
class BenchmarkResult:
    """Timings of one ``benchmark_model`` run, microseconds.

    ``median_us`` is the tool's median where it prints one, else its average
    (most releases print only the average).
    """

    avg_us: float
    init_us: float | None
    warmup_avg_us: float | None
    count: int | None
    min_us: float | None
    max_us: float | None
    median_us: float

    @property
    def avg_ms(self) -> float:
        return self.avg_us / 1e3


def parse_benchmark_output(text: str) -> BenchmarkResult:
    """Read the timings from ``benchmark_model``'s console output.

    Raises
    ------
    ValueError
        When no summary line is found, with the output's last lines, which
        usually say why the tool failed (a missing model, a bad flag).
    """
    summary = None
    for pattern in (_SUMMARY_NEW, _SUMMARY_OLD):
        found = list(pattern.finditer(text))
        if found:
            summary = found[-1]
            break
    if summary is None:
        tail = " | ".join(line.strip() for line in text.strip().splitlines()[-4:]) or "no output"
        raise ValueError(f"benchmark_model printed no 'Inference timings' summary; its output "
                         f"ended with: {tail}")
    stats = None
    for line in text[:summary.start()].splitlines():
        m = _STATS.search(line)
        if m:
            stats = {"count": float(m.group(1)),
                     **{k: float(v) for k, v in _PAIR.findall(m.group(2).replace("(all same)", ""))}}
    avg = float(summary.group("avg"))
    if stats is not None and "curr" in stats and "min" not in stats:  # all runs the same
        stats["min"] = stats["max"] = stats["curr"]
    stats = stats or {}
    return BenchmarkResult(
        avg_us=avg,
        init_us=float(summary.group("init")),
        warmup_avg_us=float(summary.group("warmup")),
        count=int(stats["count"]) if "count" in stats else None,
        min_us=stats.get("min"),
        max_us=stats.get("max"),
        median_us=stats.get("median", stats.get("p50", avg)),
    )
