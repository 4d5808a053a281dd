"""Batch 1/4/8 latency tables (the paper's Table 3 layout), JSON results and
regression comparison between two result files."""

from __future__ import annotations

import statistics
from dataclasses import asdict

from itpl.devices.base import Device

FORMAT = "itpl.bench/1"


def tflite_batch(path: str) -> int:
    """Static batch size of a .tflite model's first input."""
    from itpl.export import interpreter

    return int(interpreter(path).get_input_details()[0]["shape"][0])


def bench_models(models: list[tuple[str, dict[int, str]]], device: Device, *, threads: int,
                 max_seconds: float = 10.0) -> dict:
    """Time every model at every batch it has a file for.

    Parameters
    ----------
    models : list of (label, {batch: .tflite path})
        The first model is the baseline of the speedups.
    device : Device
        Where to time.
    threads : int
        Interpreter threads.

    Returns
    -------
    dict
        ``{"format", "device": facts, "results": [{model, batch, median_ms, min_ms,
        max_ms, repeats, speedup}]}``, JSON-ready.
    """
    rows = []
    for label, files in models:
        for batch, path in sorted(files.items()):
            timing = device.time_model(path, threads=threads, max_seconds=max_seconds)
            rows.append({"model": label, "batch": batch, **asdict(timing)})
    base = {r["batch"]: r["median_ms"] for r in rows if r["model"] == models[0][0]}
    for r in rows:
        r["speedup"] = base[r["batch"]] / r["median_ms"] if r["batch"] in base else None
    return {"format": FORMAT, "device": device.facts(threads), "results": rows}


def median_in_rounds(paths: list[str], device: Device, *, threads: int, rounds: int,
                     max_seconds: float) -> list[float]:
    """Median ms of each model over ``rounds`` rounds that time every model once, in turn.

    On a shared machine the drift then falls on all models alike, and ratios
    between them hold where absolute times do not.
    """
    samples = [[] for _ in paths]
    for _ in range(rounds):
        for i, path in enumerate(paths):
            samples[i].append(device.time_model(path, threads=threads,
                                                max_seconds=max_seconds).median_ms)
    return [statistics.median(v) for v in samples]


def format_table(result: dict) -> str:
    """Rows: models; columns: batch sizes; cells: median ms and speedup vs the first model."""
    batches = sorted({r["batch"] for r in result["results"]})
    labels = list(dict.fromkeys(r["model"] for r in result["results"]))
    cell = {(r["model"], r["batch"]): r for r in result["results"]}
    width = max(12, max(len(lbl) for lbl in labels))
    facts = result["device"]
    lines = [f"device: {facts.get('device')} ({facts.get('cpu', facts.get('model', '?'))}), "
             f"{facts.get('threads')} threads, {facts.get('runtime', '')}",
             f"{'model':<{width}}" + "".join(f"{'batch ' + str(b):>20}" for b in batches)]
    for label in labels:
        parts = []
        for b in batches:
            r = cell.get((label, b))
            if r is None:
                parts.append(f"{'-':>20}")
            else:
                speed = f" ({r['speedup']:.2f}x)" if r.get("speedup") else ""
                parts.append(f"{r['median_ms']:>10.2f} ms{speed:>8}")
        lines.append(f"{label:<{width}}" + "".join(parts))
    return "\n".join(lines)


def read_results(path: str) -> dict:
    """A ``--json`` file written by ``itpl bench``."""
    from itpl.fileio import read_json

    data = read_json(path, "bench results")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"'{path}' is not an itpl bench result (format {FORMAT})")
    return data


def compare(old: dict, new: dict, threshold: float = 0.05) -> list[dict]:
    """Model/batch pairs present in both whose median grew by more than ``threshold``."""
    before = {(r["model"], r["batch"]): r["median_ms"] for r in old["results"]}
    flagged = []
    for r in new["results"]:
        key = (r["model"], r["batch"])
        if key in before and r["median_ms"] > before[key] * (1 + threshold):
            flagged.append({"model": key[0], "batch": key[1], "old_ms": before[key],
                            "new_ms": r["median_ms"], "change": r["median_ms"] / before[key] - 1})
    return flagged
