"""Batch 1/4/8 latency tables (the paper's Table 3 layout), timed in interleaved rounds,
JSON results and a regression gate between two result files.

At each batch size the first model is the reference: every other model is timed
between bursts of it (:mod:`itpl.deploy.timing`), so its speedup is a ratio measured in
the same seconds, with a 95% confidence interval over the rounds. The
reference's own milliseconds are the median of its bursts, and their spread is
recorded with the results.
"""

from __future__ import annotations

import logging
import math
import statistics

from itpl.deploy.devices.base import Device
from itpl.deploy.timing import UNSTABLE_ADVICE, Relative, Timer, median_interval

FORMAT = "itpl.bench/2"
# --compare: a slowdown counts only when a one-sided Mann-Whitney test gives p below this.
SIGNIFICANCE = 0.01
log = logging.getLogger(__name__)


def tflite_batch(path: str) -> int:
    """Static batch size of a .tflite model's first input."""
    from itpl.deploy.export import interpreter

    return int(interpreter(path).get_input_details()[0]["shape"][0])


def bench_models(models: list[tuple[str, dict[int, str]]], device: Device, *, threads: int,
                 rounds: int = 10, precision: float = 0.01, progress: bool = False) -> dict:
    """Time every model at every batch it has a file for, beside the first model.

    Parameters
    ----------
    models : list of (label, {batch: .tflite path})
        The first model is the reference of the speedups at every batch it has.
    device : Device
        Where to time.
    threads : int
        Interpreter threads.
    rounds, precision
        Rounds at least, and the 95% interval's half-width (relative) that
        ends the timing before ``4 * rounds``; see :meth:`itpl.deploy.timing.Timer.measure`.

    Returns
    -------
    dict
        ``{"format", "device": facts, "references": {batch: spread}, "results": [{model,
        batch, median_ms, low_ms, high_ms, samples_ms, rounds, reference, ratio,
        speedup, speedup_low, speedup_high}]}``, JSON-ready. ``samples_ms`` are one
        value a round (the ratio times the reference's median), what
        :func:`compare` tests; ``low_ms``/``high_ms`` the 95% interval.
    """
    rows, references = [], {}
    batches = sorted({b for _, files in models for b in files})
    for batch in batches:
        present = [(label, files[batch]) for label, files in models if batch in files]
        reference_label, reference = present[0]
        timer = Timer(device, reference, threads=threads)
        others = present[1:]
        if others:
            got = timer.measure([p for _, p in others], rounds=rounds, max_rounds=4 * rounds,
                                precision=precision)
        else:  # one model: its own bursts are all there is
            timer.rounds([reference], rounds)
            got = []
        spread = timer.spread()
        references[str(batch)] = {"model": reference_label, **spread.to_dict()}
        done = len(got[0].ratios) if got else 1
        rows.append(_row(reference_label, batch, reference_label, Relative([1.0] * done),
                         spread.ms, timer.reference_ms))
        for (label, _), rel in zip(others, got):
            rows.append(_row(label, batch, reference_label, rel, spread.ms,
                             [r * spread.ms for r in rel.ratios]))
        if progress:
            log.info("batch %d: %d models timed in %d rounds", batch, len(present),
                     len(got[0].ratios) if got else rounds)
    return {"format": FORMAT, "device": device.facts(threads), "references": references,
            "results": rows}


def _row(label, batch, reference, rel: Relative, reference_ms: float, samples) -> dict:
    lo, hi = rel.interval() if len(rel.ratios) > 1 else (rel.ratio, rel.ratio)
    if label == reference:  # its milliseconds are its own bursts
        lo_ms, hi_ms = median_interval(samples)
    else:
        lo_ms, hi_ms = lo * reference_ms, hi * reference_ms
    return {"model": label, "batch": batch, "median_ms": rel.ratio * reference_ms,
            "low_ms": lo_ms, "high_ms": hi_ms, "samples_ms": list(samples),
            "ratios": list(rel.ratios),
            "rounds": len(rel.ratios), "reference": reference, "ratio": rel.ratio,
            "speedup": 1 / rel.ratio, "speedup_low": 1 / hi, "speedup_high": 1 / lo}


def add_precisions(result: dict, files: dict[str, dict[int, str]]) -> None:
    """Record each row's precision (fp32, int8, or mixed) from its model's file."""
    from itpl.deploy.quantize import precision_of

    for r in result["results"]:
        try:
            r["precision"] = precision_of(files[r["model"]][r["batch"]])
        except (KeyError, ValueError):
            r["precision"] = "mixed"


def format_table(result: dict) -> str:
    """Rows: models; columns: batch sizes; cells: median ms and speedup vs the first model
    with its 95% interval; then how much each reference moved."""
    batches = sorted({r["batch"] for r in result["results"]})
    labels = list(dict.fromkeys(r["model"] for r in result["results"]))
    cell = {(r["model"], r["batch"]): r for r in result["results"]}
    kinds = {r["model"]: r.get("precision") for r in result["results"]}
    shown = {lbl: f"{lbl} [{kinds[lbl]}]" if kinds.get(lbl) else lbl for lbl in labels}
    width = max(12, max(len(lbl) for lbl in shown.values()))
    facts = result["device"]
    col = 30
    lines = [f"device: {facts.get('device')} ({facts.get('cpu', facts.get('model', '?'))}), "
             f"{facts.get('threads')} threads, {facts.get('runtime', '')}",
             f"{'model':<{width}}" + "".join(f"{'batch ' + str(b):>{col}}" for b in batches)]
    for label in labels:
        parts = []
        for b in batches:
            r = cell.get((label, b))
            if r is None:
                parts.append(f"{'-':>{col}}")
            elif r["model"] == r["reference"]:
                parts.append(f"{r['median_ms']:>10.2f} ms{'(reference)':>{col - 13}}")
            else:
                speed = f" {r['speedup']:.2f}x [{r['speedup_low']:.2f}-{r['speedup_high']:.2f}]"
                parts.append(f"{r['median_ms']:>10.2f} ms{speed:>{col - 13}}")
        lines.append(f"{shown[label]:<{width}}" + "".join(parts))
    for b, ref in sorted(result.get("references", {}).items(), key=lambda kv: int(kv[0])):
        lines.append(f"batch {b}: {ref['model']} moved {ref['relative']:.0%} (10-90% of "
                     f"{ref['bursts']} bursts); speedups are ratios within rounds, 95% intervals")
    wide = [r for r in result["results"] if r["model"] != r["reference"]
            and (r["speedup_high"] - r["speedup_low"]) / 2 > 0.03 * r["speedup"]]
    if wide:
        lines.append(f"warning: {len(wide)} speedups are known only within more than +-3%: "
                     f"{UNSTABLE_ADVICE}")
    return "\n".join(lines)


def read_results(path: str) -> dict:
    """A ``--json`` file written by ``itpl bench``, checked row by row."""
    from itpl.util.fileio import read_json

    data = read_json(path, "bench results")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"'{path}' is not an itpl bench result of this version (format "
                         f"{FORMAT}); run itpl bench --json again")
    rows = data.get("results")
    if not isinstance(rows, list):
        raise ValueError(f"'{path}' has no list of results")
    for i, r in enumerate(rows):
        ok = (isinstance(r, dict) and isinstance(r.get("model"), str)
              and isinstance(r.get("batch"), int) and _positive_number(r.get("median_ms"))
              and _samples(r.get("samples_ms")))
        if not ok:
            raise ValueError(f"'{path}': result {i} is damaged (needs model, batch, a positive "
                             "median_ms and samples_ms)")
    return data


def _samples(values) -> bool:
    return isinstance(values, list) and bool(values) and all(_positive_number(v) for v in values)


def _positive_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def compare(old: dict, new: dict, threshold: float = 0.05) -> list[dict]:
    """Model/batch pairs in both results that got slower by more than ``threshold``
    *and* significantly so.

    Per pair, the per-round samples of the two runs are compared by a
    one-sided Mann-Whitney U test (new slower than old); a pair is flagged
    when its p-value is below :data:`SIGNIFICANCE` and the medians grew by
    more than ``threshold``. Where both runs timed the pair beside the same
    reference model, its ratios to that reference are compared instead of
    milliseconds, so a device that drifted between the runs raises no alarm.
    Raises ValueError when the two results share no model and batch: a
    gate that compared nothing must not pass.

    Returns one dict per pair compared: ``model``, ``batch``, ``old_ms``,
    ``new_ms``, ``change``, ``p_value``, ``basis`` ("ratio" or "ms") and
    ``regressed``.
    """
    from scipy.stats import mannwhitneyu

    if not (math.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold must be a finite number >= 0, got {threshold}")
    before = {(r["model"], r["batch"]): r for r in old["results"]}
    out = []
    for r in new["results"]:
        o = before.get((r["model"], r["batch"]))
        if o is None:
            continue
        by_ratio = (r["model"] != r.get("reference") and o.get("reference") == r.get("reference")
                    and _samples(o.get("ratios")) and _samples(r.get("ratios")))
        if by_ratio:
            a, b = o["ratios"], r["ratios"]
        else:
            a, b = o["samples_ms"], r["samples_ms"]
        change = statistics.median(b) / statistics.median(a) - 1
        p = float(mannwhitneyu(b, a, alternative="greater").pvalue) if len(a) > 1 and len(b) > 1 \
            else 1.0
        out.append({"model": r["model"], "batch": r["batch"], "old_ms": o["median_ms"],
                    "new_ms": r["median_ms"], "change": change, "p_value": p,
                    "basis": "ratio" if by_ratio else "ms",
                    "regressed": change > threshold and p < SIGNIFICANCE})
    if not out:
        raise ValueError("the two results have no model and batch in common: nothing was compared")
    return out
