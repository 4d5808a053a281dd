"""Parser of the console output of the ``benchmark_model`` tools (pure; no device).

Layouts read, each taken from the sources named here and tested on verbatim
source-derived and real pasted outputs (``tests/test_benchmark_output.py``):

1. **TFLite's tool** (``benchmark_model.cc``,
   ``BenchmarkLoggingListener::OnBenchmarkEnd``: tensorflow/tensorflow
   ``tensorflow/lite/tools/benchmark/`` at 08df8c40b437, google-ai-edge/LiteRT
   ``tflite/tools/benchmark/`` at f67457790c9c), in microseconds:
   ``Inference timings in us: Init: 3464, First inference: 26334, Warmup
   (avg): 23452.8, Inference (avg): 22878.9``. Lines go through
   ``TFLITE_LOG`` and carry its ``INFO: `` prefix on newer builds, none on
   older ones, a logcat prefix where they were copied from logcat.
2. **Older TFLite tools**: ``Average inference timings in us: Warmup: W,
   Init: I, Inference: A`` (and the Android app's logcat line, which runs
   ``Overall ...`` memory text straight on); oldest, ``..., no stats: A``.
   Seen in real logs (TF 1.x docs, the Android app's README); their source
   tags are not stored here, so no version range is claimed.
3. **LiteRT's tool** (``//litert/tools:benchmark_model``,
   ``litert/tools/benchmark_litert_model.h``, ``BenchmarkLoggingListener``;
   LiteRT v2.0.2 f73c7b76a0ce, v2.1.0 aa698a2459c3, f67457790c9c), in
   **milliseconds** with 2 decimals, one ``LITERT_LOG`` line each (``INFO:
   [benchmark_litert_model.h:100] Inference (avg):      85.23 ms (50 runs)``;
   the prefix is ``litert/c/internal/litert_logging.h``'s ``[file:line]``):
   ``Model initialization``, ``Warmup (first)``, ``Warmup (avg) ... (N
   runs)``, ``Inference (avg) ... (N runs)``, ``(min)``, ``(max)``, ``(std)``.

Every tool prints, after ``Running benchmark for ...``, one statistics line
per phase, the ``OutputToStream`` of ``Stat``/``StatWithPercentiles``
(``xla/tsl/util/stats_calculator.h``, read as vendored by
fractalyze/prime-ir at 277268a0ac4b): ``count=0``; ``count=N curr=X`` with
``(all same)`` when N > 1; or ``count=N first= curr= min= max= avg= std=``;
``StatWithPercentiles`` adds `` p5= median= p95=``. Its phases are
``StatWithPercentiles`` in LiteRT's copy of the tool (f67457790c9c) but a
plain ``Stat`` in tensorflow/tensorflow at 08df8c40b437, so only some builds
print a median. The timed phase's line gives the count, min, max, and the
median where printed: ``median_kind`` records whether ``median_us`` is the
tool's **median** or, where it prints none, its **average**. Doubles come
through C++ streams with 6 significant digits (``1.23457e+06``).

With ``--enable_op_profiling`` (TFLite) or ``--use_profiler`` (LiteRT) the
tools add operator tables (``StatsCalculator::GetOutputString``, and LiteRT's
``litert/runtime/profiler_summarizer.cc``), before or after the summary as the
streams were interleaved. Their ``Timings (microseconds): count=...`` and
``Memory (bytes): count=0`` lines are not phases and are skipped; the "Run
Order" table of the regular runs becomes ``ops``: each operator's average
time in the context of the whole model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|-?inf"
_TFLITE = re.compile(
    rf"Inference timings in us:\s*Init:\s*(?P<init>{_NUMBER}),\s*First inference:\s*"
    rf"(?P<first>{_NUMBER}),\s*Warmup \(avg\):\s*(?P<warmup>{_NUMBER}),\s*"
    rf"Inference \(avg\):\s*(?P<avg>{_NUMBER})")
_TFLITE_OLD = re.compile(
    rf"Average inference timings in us:\s*Warmup:\s*(?P<warmup>{_NUMBER}),\s*Init:\s*"
    rf"(?P<init>{_NUMBER}),\s*(?P<kind>Inference|no stats):\s*(?P<avg>{_NUMBER})")
_LITERT_FIELD = re.compile(
    rf"(?P<key>Model initialization|Warmup \(first\)|Warmup \(avg\)|Inference \((?:avg|min|max|std)\)):"
    rf"\s*(?P<value>{_NUMBER})(?:\s*ms)?(?:\s*\((?P<runs>\d+) runs\))?\s*$")
_LITERT_BANNER = "BENCHMARK RESULTS"
_RUNNING = re.compile(r"Running benchmark for\b")
_STATS = re.compile(r"\bcount=(\d+)\b(.*)$")
_PAIR = re.compile(rf"\b([a-z0-9]+)=({_NUMBER})")
# The op profile's own statistics lines: not phases of the benchmark.
_PROFILE_STAT = re.compile(r"(?:Timings|Memory)\s*\([^)]*\):\s*$")
_REGULAR_PROFILE = "Operator-wise Profiling Info for Regular Benchmark Runs"
_TABLE_HEADER = re.compile(r"=+ (?P<title>[^=]+?) =+")


@dataclass
class OpTiming:
    """One operator of the op profile's "Run Order" table (times in ms)."""

    node_type: str
    name: str
    first_ms: float
    avg_ms: float
    percent: float
    times_called: int


@dataclass
class BenchmarkResult:
    """Timings of one ``benchmark_model`` run, microseconds.

    ``median_us`` is the tool's median where it prints one (``median_kind ==
    "median"``), else its average (``"average"``). ``layout`` names the
    summary read: ``"tflite"``, ``"tflite-average"`` (older tools) or
    ``"litert"``. ``ops`` holds the op profile's operators where one was
    printed.
    """

    avg_us: float
    init_us: float | None
    warmup_avg_us: float | None
    count: int | None
    min_us: float | None
    max_us: float | None
    median_us: float
    median_kind: str = "average"
    std_us: float | None = None
    layout: str = "tflite"
    ops: list[OpTiming] = field(default_factory=list)

    @property
    def avg_ms(self) -> float:
        return self.avg_us / 1e3


def _phase_stats(lines: list[str]) -> list[dict]:
    """The statistics line of each benchmark phase, in order.

    A phase's line is the first bare ``count=`` line after its ``Running
    benchmark for`` line; with no such headers (a log cut short), every bare
    ``count=`` line counts.
    """
    phases, waiting, headers = [], False, any(_RUNNING.search(line) for line in lines)
    for line in lines:
        if _RUNNING.search(line):
            waiting = True
            continue
        m = _STATS.search(line)
        if not m or _PROFILE_STAT.search(line[:m.start()]) or (headers and not waiting):
            continue
        rest = m.group(2).replace("(all same)", " ")
        stats = {"count": float(m.group(1)), **{k: float(v) for k, v in _PAIR.findall(rest)}}
        curr = re.match(rf"\s*curr=({_NUMBER})", rest)
        if "min" not in stats and curr:  # every run took the same time
            stats["min"] = stats["max"] = stats["avg"] = float(curr.group(1))
        phases.append(stats)
        waiting = False
    return phases


def _litert_block(lines: list[str]) -> dict | None:
    """LiteRT's results block: its fields in microseconds, runs counted."""
    start = max((i for i, line in enumerate(lines) if _LITERT_BANNER in line), default=None)
    if start is None:
        return None
    found = {}
    for line in lines[start + 1:]:
        m = _LITERT_FIELD.search(line)
        if m:
            found[m.group("key")] = float(m.group("value")) * 1e3
            if m.group("runs"):
                found[m.group("key") + " runs"] = int(m.group("runs"))
    return found if "Inference (avg)" in found else None


def parse_ops(text: str) -> list[OpTiming]:
    """The operators of the op profile's "Run Order" table for the regular runs
    (the first one after ``Operator-wise Profiling Info for Regular Benchmark
    Runs``, else the last one printed); empty when there is none."""
    lines = text.splitlines()
    regular = next((i for i, line in enumerate(lines) if _REGULAR_PROFILE in line), None)
    starts = [i for i, line in enumerate(lines)
              if (m := _TABLE_HEADER.search(line)) and m.group("title").strip() == "Run Order"]
    if regular is not None:
        starts = [i for i in starts if i > regular][:1]
    if not starts:
        return []
    start = starts[0] if regular is not None else starts[-1]
    header = lines[start + 1] if start + 1 < len(lines) else ""
    columns = re.findall(r"\[([^\]]+)\]", header)
    if not columns or columns[0] != "node type" or columns[-1] != "Name":
        return []
    numbers = columns[1:-1]  # e.g. start, first, avg ms, %, cdf%, mem KB, times called
    cell = rf"({_NUMBER})%?"
    row = re.compile(r"^\s*(?P<type>.*?)" + "".join(rf"\s+{cell}" for _ in numbers)
                     + r"\s+(?P<name>\S.*?)\s*$")
    ops = []
    for line in lines[start + 2:]:
        if not line.strip() or _TABLE_HEADER.search(line):
            break
        m = row.match(line.replace("INFO: ", "", 1) if line.startswith("INFO: ") else line)
        if not m:
            break
        values = dict(zip(numbers, (float(v) for v in m.groups()[1:-1])))
        ops.append(OpTiming(node_type=m.group("type").strip(), name=m.group("name"),
                            first_ms=values.get("first", float("nan")),
                            avg_ms=values.get("avg ms", float("nan")),
                            percent=values.get("%", float("nan")),
                            times_called=int(values.get("times called", 1))))
    return ops


def parse_benchmark_output(text: str) -> BenchmarkResult:
    """Read the timings from a ``benchmark_model`` run's console output.

    Raises
    ------
    ValueError
        When no summary is found, with the output's last lines, which usually
        say why the tool failed (a missing model, a bad flag).
    """
    lines = text.splitlines()
    phases = _phase_stats(lines)
    timed = phases[-1] if phases else {}
    block = _litert_block(lines)
    summary = None
    for pattern, layout in ((_TFLITE, "tflite"), (_TFLITE_OLD, "tflite-average")):
        found = list(pattern.finditer(text))
        if found:
            summary = found[-1], layout
            break
    if summary is not None:
        m, layout = summary
        avg, init, warmup = (float(m.group(k)) for k in ("avg", "init", "warmup"))
    elif block is not None:
        layout, avg = "litert", block["Inference (avg)"]
        init, warmup = block.get("Model initialization"), block.get("Warmup (avg)")
        # the block prints 2 decimals of ms; the phase line, where there is
        # one, has the same runs in whole microseconds
        if "avg" in timed and abs(timed["avg"] - avg) <= 10:
            avg = timed["avg"]
        timed = timed or {"count": block.get("Inference (avg) runs"),
                          "min": block.get("Inference (min)"),
                          "max": block.get("Inference (max)"),
                          "std": block.get("Inference (std)")}
    else:
        tail = " | ".join(line.strip() for line in text.strip().splitlines()[-4:]) or "no output"
        raise ValueError(f"benchmark_model printed no timing summary ('Inference timings in "
                         f"us' or 'BENCHMARK RESULTS'); its output ended with: {tail}")
    if timed.get("count") == 0 or not avg > 0:
        raise ValueError(f"benchmark_model timed no inference (count={timed.get('count')}, "
                         f"average {avg:g} us); run it by hand to see why")
    median = timed.get("median")
    return BenchmarkResult(
        avg_us=avg, init_us=init, warmup_avg_us=warmup,
        count=int(timed["count"]) if timed.get("count") is not None else None,
        min_us=timed.get("min"), max_us=timed.get("max"),
        median_us=avg if median is None else median,
        median_kind="average" if median is None else "median",
        std_us=timed.get("std"), layout=layout, ops=parse_ops(text))
