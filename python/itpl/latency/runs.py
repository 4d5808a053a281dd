"""What a latency profile times, and how: micro-models, whole models, the tile probe,
each as a drift-cancelled ratio to the unpruned model (:mod:`itpl.deploy.timing`), kept in
a cache that lets an interrupted profile resume."""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from itpl.deploy.flatbuffer import LayerShape, compute_ops, micro_model, read_model, resize_model
from itpl.deploy.timing import Relative, Timer
from itpl.model.graph import Layer, ModelGraph

CACHE_FORMAT = "itpl.profile-cache/2"


class SampleCache:
    """Ratios to a reference appended one JSON line each, after a header naming the
    model, device and batch they belong to; a cache for anything else starts over.

    Every line also carries the reference bursts timed with it (per reference
    name), so a resumed profile turns ratios into milliseconds with the whole
    run's reference.
    """

    def __init__(self, path: str | None, header: dict):
        self.path, self.samples, self.resumed = path, {}, 0
        self.reference_ms: dict[str, list[float]] = {}
        if not path:
            return
        header = json.loads(json.dumps(header))  # as it reads back from disk
        lines = []
        if os.path.exists(path):
            try:
                with open(path, encoding="utf-8") as f:
                    lines = f.read().splitlines()
            except (OSError, UnicodeDecodeError):
                lines = []  # unreadable: start over (the file is rewritten below)
        if lines and _loads(lines[0]) == header:
            for line in lines[1:]:
                rec = _loads(line)  # None for a line cut short by an interruption
                if _valid(rec):
                    self.reference_ms.setdefault(rec["reference"], []).extend(rec["reference_ms"])
                    if rec["key"] is not None:
                        self.samples[rec["key"]] = rec["ratios"]
        self.resumed = len(self.samples)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:  # rewritten whole: drops a torn last line
            f.write(json.dumps(header) + "\n")
            for key, ratios in self.samples.items():
                f.write(json.dumps({"key": key, "ratios": ratios, "reference": "",
                                    "reference_ms": []}) + "\n")
            for name, times in self.reference_ms.items():
                f.write(json.dumps({"key": None, "ratios": [], "reference": name,
                                    "reference_ms": times}) + "\n")

    def get(self, key: str) -> list[float] | None:
        return self.samples.get(key)

    def ratio(self, key: str) -> float:
        return Relative(self.samples[key]).ratio

    def put(self, key: str, ratios: list[float], reference: str,
            reference_ms: list[float]) -> None:
        self.samples[key] = list(ratios)
        self.reference_ms.setdefault(reference, []).extend(reference_ms)
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps({"key": key, "ratios": list(ratios), "reference": reference,
                                    "reference_ms": list(reference_ms)}) + "\n")


def _loads(line: str):
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def _valid(rec) -> bool:
    if not (isinstance(rec, dict) and isinstance(rec.get("ratios"), list)
            and isinstance(rec.get("reference_ms"), list) and isinstance(rec.get("reference"), str)):
        return False
    if not all(isinstance(v, (int, float)) and v > 0 for v in rec["ratios"] + rec["reference_ms"]):
        return False
    key = rec.get("key")
    return key is None or (isinstance(key, str) and bool(rec["ratios"]))


class Sampler:
    """Times jobs not yet in the cache as ratios to ``timer``'s reference, named ``name``.

    A job is a function writing a .tflite to a path. Jobs are timed in
    batches of up to ``batch`` models (and ``batch_bytes`` of model files):
    ``rounds`` rounds of the whole batch in one device call, each round the
    batch's models in a shuffled order with a reference burst between every
    two (:meth:`itpl.deploy.timing.Timer.rounds`), so ``k`` models take ``2k + 1``
    bursts a round, and a phone gets a batch in one push and one shell
    command. A model whose ratios disagree by more than ``precision`` gets
    more rounds, up to three times as many, without the rest of its batch;
    the count of jobs that never got there is kept in ``imprecise``. Each
    batch is in the cache before the next is timed, so an interruption loses
    one batch at most.
    """

    def __init__(self, timer: Timer, name: str, store: SampleCache, *, rounds: int = 3,
                 precision: float = 0.03, progress: bool = False, batch: int = 16,
                 batch_bytes: float = 200e6):
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        self.timer, self.name, self.store = timer, name, store
        self.rounds, self.precision = rounds, precision
        self.batch, self.batch_bytes = batch, batch_bytes
        self.progress, self.imprecise, self.timed = progress, 0, 0
        timer.reference_ms += store.reference_ms.get(name, [])

    def run(self, jobs: list[tuple[str, object]], label: str) -> None:
        todo = [(k, j) for k, j in jobs if self.store.get(k) is None]
        bar = None
        if self.progress and todo:
            from tqdm import tqdm

            bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=label, unit="model",
                       leave=False)
        with tempfile.TemporaryDirectory(prefix="itpl-profile-") as tmp:
            while todo:
                keys, paths, size = [], [], 0
                while todo and len(keys) < self.batch and (not keys or size < self.batch_bytes):
                    key, write = todo.pop(0)
                    path = os.path.join(tmp, f"sample{len(keys)}.tflite")
                    write(path)
                    keys.append(key)
                    paths.append(path)
                    size += os.path.getsize(path)
                before = len(self.timer.reference_ms)
                got = self.timer.measure(paths, rounds=self.rounds, max_rounds=3 * self.rounds,
                                         precision=self.precision, each=True)
                # every line carries its share of the batch's reference bursts
                # (the cache keeps them for the whole run, not per sample)
                reference = self.timer.reference_ms[before:]
                for i, (key, rel) in enumerate(zip(keys, got)):
                    self.imprecise += rel.precision > self.precision
                    self.timed += 1
                    self.store.put(key, rel.ratios, self.name, reference if i == 0 else [])
                if bar is not None:
                    bar.update(len(keys))
        if bar is not None:
            bar.close()


# --- whole models --------------------------------------------------------------

def compute_layers(graph: ModelGraph) -> list[Layer]:
    return [l for l in graph.layers if l.kind in ("conv", "depthwise", "grouped", "linear")]


def _match_ops(ops: list[tuple[str, list[int]]], layers: list[Layer]) -> list[Layer] | None:
    """The layer behind each conv/linear op of a converted model, or None.

    The converter may order independent branches differently from PyTorch's
    execution, so each op takes the first unused layer of its kind and full
    shape; :func:`itpl.deploy.flatbuffer.resize_model` checks that the channel
    counts then agree along the graph.
    """
    if len(ops) != len(layers):
        return None
    unused, matched = list(layers), []
    for kind, shape in ops:
        for layer in unused:
            full_in, full_out = (round(d.const + sum(d.coefs.values()))
                                 for d in (layer.in_dim, layer.out_dim))
            if kind == "depthwise":
                ok = layer.kind == "depthwise" and shape[-1] == full_out
            elif kind == "linear":
                ok = layer.kind == "linear" and shape == [full_out, full_in]
            else:
                ok = layer.kind in ("conv", "grouped") and shape[0] == full_out and \
                    shape[-1] * layer.groups == full_in
            if ok:
                unused.remove(layer)
                matched.append(layer)
                break
        else:
            return None
    return matched


class WholeModels:
    """Writes the network at given widths: the converted model resized, or, where
    its ops cannot be matched to the layers, a fresh conversion of a pruned copy.

    ``base`` is the path of the unpruned model's .tflite (in ``folder``), the
    reference every profile and refine timing is a ratio to. With ``precision``
    int8 every file is the fp32 one (resized or converted) quantized
    (:func:`itpl.deploy.quantize.quantize_for_timing`): the int8 flatbuffer itself is
    not resized, the fp32 graph is, then quantized (under a second for
    MobileNetV1, against seconds for a conversion).
    """

    def __init__(self, graph: ModelGraph, batch: int, folder: str, precision: str = "fp32"):
        from itpl.deploy.export import export_tflite
        from itpl.deploy.quantize import check_precision

        self.graph, self.batch, self.precision = graph, batch, check_precision(precision)
        self.base = os.path.join(folder, "base.tflite")
        export_tflite(graph.model, graph.input_shape, self._float(self.base), batch=batch)
        with open(self._float(self.base), "rb") as f:
            self.flatbuffer = read_model(f.read())
        self._finish(self.base)
        self.layers = _match_ops(compute_ops(self.flatbuffer), compute_layers(graph))
        self.resizable = self.layers is not None

    def _float(self, path: str) -> str:
        return path if self.precision == "fp32" else f"{path}.fp32.tflite"

    def _finish(self, path: str) -> None:
        if self.precision == "int8":
            from itpl.deploy.quantize import quantize_for_timing

            quantize_for_timing(self._float(path), path)
            os.unlink(self._float(path))

    def write(self, widths: list[int], path: str) -> None:
        alpha = np.asarray(widths, dtype=np.float64) / self.graph.widths
        if self.resizable:
            channels = [(round(l.in_dim.at(alpha)), round(l.out_dim.at(alpha))) for l in self.layers]
            try:
                data = resize_model(self.flatbuffer, channels)
                with open(self._float(path), "wb") as f:
                    f.write(data)
                self._finish(path)
                return
            except ValueError:
                self.resizable = False
        export_pruned(self.graph, widths, self._float(path), self.batch)
        self._finish(path)


def export_pruned(graph: ModelGraph, widths: list[int], path: str, batch: int = 1) -> None:
    """Convert a copy of ``graph.model`` pruned to ``widths`` (L1 channels)."""
    from itpl.deploy.export import export_tflite
    from itpl.model.surgery import pruned_copy

    model = pruned_copy(graph.model, graph.input_shape, widths)
    export_tflite(model, graph.input_shape, path, batch=batch)


# --- the channel tile ----------------------------------------------------------

# Layers timed at growing width to find the device's channel tile.
PROBES = (LayerShape("conv", (28, 28)), LayerShape("depthwise", (28, 28), (3, 3), (1, 1), (1, 1)))
PROBE_WIDTHS = range(8, 129, 8)
TILES = (8, 16, 32)


def probe_jobs(batch: int, precision: str = "fp32"):
    jobs = []
    for shape in PROBES:
        for c in PROBE_WIDTHS:
            c_in = c if shape.kind == "depthwise" else 128
            jobs.append((f"probe/{shape.key}/n{batch}/{c_in}>{c}",
                         lambda p, s=shape, a=c_in, b=c: write_micro(p, s, a, b, batch, precision)))
    return jobs


def channel_tile(times: dict[str, float], tolerance: float = 0.3) -> int:
    """The device's channel tile: 8, 16 or 32, the coarsest step the probe layers show.

    SIMD kernels process channels in tiles, so latency does not grow smoothly
    with width: it steps once per tile (a quadratic latency model is exact
    only on multiples of it). A probe has a tile of at least ``2h`` when, over
    its widths in steps of ``h``, the time hardly grows inside a ``2h`` tile
    (``h`` to ``2h``) while it does grow across one (``2h`` to ``3h``): the
    median increment inside is at most ``tolerance`` times the median
    increment across. Medians, so one timing the OS disturbed cannot move the
    tile (a least-squares line test did, in 2 runs of 5). The device's tile
    is the coarsest over the probes: multiples of it suit every layer.
    """
    tile = TILES[0]
    for shape in PROBES:
        by_width = {int(k.rsplit(">", 1)[1]): t for k, t in times.items()
                    if k.startswith(f"probe/{shape.key}/")}
        found = TILES[0]
        for coarser in TILES[1:]:
            h = coarser // 2
            steps = {w: by_width[w + h] - by_width[w] for w in by_width if w % h == 0
                     and w + h in by_width}
            inside = [d for w, d in steps.items() if (w // h) % 2 == 1]  # h -> 2h, 3h -> 4h, ...
            across = [d for w, d in steps.items() if (w // h) % 2 == 0]  # 2h -> 3h, ...
            if not inside or not across:
                break
            grow = float(np.median(across))
            if not (grow > 0 and float(np.median(inside)) <= tolerance * grow):
                break
            found = coarser
        tile = max(tile, found)
    return tile


def probe_tile(sampler: Sampler, batch: int, precision: str = "fp32") -> int:
    """Time the probe layers not yet sampled, then read the tile off them."""
    probes = probe_jobs(batch, precision)
    sampler.run(probes, "channel tile")
    return channel_tile({k: sampler.store.ratio(k) for k, _ in probes})


def measure_channel_tile(device, *, threads: int = 1, batch: int = 1, rounds: int = 3,
                         precision: str = "fp32") -> int:
    """Time the probe layers on ``device`` and return its channel tile (:func:`channel_tile`).

    The same probes as a profile's first step, on their own (the widest
    conv probe is the reference): a few seconds on a CPU, for choosing
    ``round_to`` without a whole profile. ``precision`` int8 times int8 layers
    (XNNPACK's int8 kernels tile channels their own way).
    """
    with tempfile.TemporaryDirectory(prefix="itpl-tile-") as tmp:
        reference = os.path.join(tmp, "reference.tflite")
        write_micro(reference, PROBES[0], 128, PROBE_WIDTHS[-1], batch, precision)
        sampler = Sampler(Timer(device, reference, threads=threads), "probe",
                          SampleCache(None, {}), rounds=rounds)
        return probe_tile(sampler, batch, precision)


def write_micro(path: str, shape: LayerShape, c_in: int, c_out: int, rows: int,
                precision: str = "fp32") -> None:
    """One layer's micro-model; int8: the fp32 one quantized (as the whole models are)."""
    if precision == "fp32":
        with open(path, "wb") as f:
            f.write(micro_model(shape, c_in, c_out, batch=rows))
        return
    from itpl.deploy.quantize import quantize_for_timing

    write_micro(f"{path}.fp32.tflite", shape, c_in, c_out, rows)
    quantize_for_timing(f"{path}.fp32.tflite", path)
    os.unlink(f"{path}.fp32.tflite")
