"""Latency profiles: per-layer timings on a device, fitted into the quadratic form T.

``itpl profile`` times every conv and linear layer of a model as a one-layer
.tflite (:func:`itpl.tflite_models.micro_model`) on a grid of input and output
widths, and fits each layer's latency as ``a + b c_in + c c_out + d c_in c_out``.
Channel counts are affine in the group ratios, so the sum over layers is a
quadratic form over ``[1, alpha]``, the paper's T measured instead of counted.

What the layers leave out (the input transpose, padding, residual adds,
pooling, the interpreter's per-op overhead, and the difference between a layer
timed alone and inside the network) is calibrated on whole models: the
converted network, resized to a few width configurations
(:func:`itpl.tflite_models.resize_model`), is timed and the layer sum is
mapped onto those times by ``offset + scale * sum``. Further random
configurations, never used in the fit, validate the prediction.

Every timing is appended to a cache file as soon as it is measured, so an
interrupted profile resumes where it stopped, with no sample taken twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from itpl.cost import QuadraticCost, _add_affine, _add_product
from itpl.devices.base import Device, Timing
from itpl.graph import Layer, ModelGraph
from itpl.solve import allowed_widths
from itpl.tflite_models import LayerShape, compute_ops, micro_model, read_model, resize_model

FORMAT = "itpl.profile/1"
CACHE_FORMAT = "itpl.profile-cache/1"
# Facts that identify a device; a profile from another device is refused.
IDENTITY = ("device", "cpu", "cores", "abi", "runtime", "manufacturer", "model", "android",
            "binary", "cpu_mask", "threads")


@dataclass
class Profile:
    """A device's latency model of one network. See the module docstring.

    Attributes
    ----------
    model : dict
        ``name``, ``kwargs``, ``input_shape`` and the structural ``fingerprint``.
    device : dict
        Device facts, including ``threads``.
    settings : dict
        ``batch``, ``grid``, ``round_to``, ``alpha_min``.
    layers : list of dict
        Per profiled layer: name, shape key, fit columns and coefficients (ms
        per channel), samples, relative RMS error of the fit.
    samples : list of dict
        Every micro-model timing: shape key, channels, median/min/max ms.
    calibration, validation : dict
        Width configurations with measured and predicted whole-model ms.
    matrix : numpy.ndarray
        T over ``[1, alpha]``, in ms.
    seconds : float
        Wall time of the profiling run.
    """

    model: dict
    device: dict
    settings: dict
    layers: list[dict]
    samples: list[dict]
    calibration: dict
    validation: dict
    matrix: np.ndarray
    seconds: float = 0.0
    groups: list[dict] = field(default_factory=list)
    resumed: int = 0  # samples this run took from the cache (not saved)

    def cost(self) -> QuadraticCost:
        """The latency form, in milliseconds at the profile's batch size."""
        return QuadraticCost(kind="latency", matrix=self.matrix, unit="ms")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["matrix"] = self.matrix.tolist()
        del d["resumed"]
        return {"format": FORMAT, **d}

    @classmethod
    def from_dict(cls, d: dict, where: str = "profile") -> Profile:
        if d.get("format") != FORMAT:
            raise ValueError(f"{where} is not an itpl profile (format {d.get('format')!r}, "
                             f"expected {FORMAT!r})")
        try:
            fields = {k: d[k] for k in ("model", "device", "settings", "layers", "samples",
                                        "calibration", "validation")}
            return cls(**fields, matrix=np.asarray(d["matrix"], dtype=np.float64),
                       seconds=float(d.get("seconds", 0.0)), groups=d.get("groups", []))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where} is damaged: {type(exc).__name__}: {exc}") from None


def read_profile(path: str) -> Profile:
    """Load a ``*.profile.json``."""
    from itpl.fileio import read_json

    return Profile.from_dict(read_json(path, "profile"), f"profile '{path}'")


def write_profile(profile: Profile, path: str) -> None:
    from itpl.fileio import write_json

    write_json(path, profile.to_dict())


def profile_to_file(graph: ModelGraph, device: Device, path: str, **options) -> Profile:
    """:func:`profile_model` with its sample cache at ``PATH.cache``, then the
    profile written to ``path`` and the cache removed: a rerun after an
    interruption resumes from the cache, a rerun after success starts afresh."""
    cache = f"{path}.cache"
    profile = profile_model(graph, device, cache=cache, **options)
    write_profile(profile, path)
    os.unlink(cache)
    return profile


def tile_warning(profile: Profile) -> str | None:
    """Why the profile's widths waste time, when they are not multiples of the device's tile."""
    tile, round_to = profile.settings["channel_tile"], profile.settings["round_to"]
    if round_to % tile:
        return (f"this device computes channels in tiles of {tile}; widths in multiples of "
                f"{round_to} waste time between tiles (try --round-to {tile})")
    return None


def fingerprint(graph: ModelGraph) -> str:
    """Hash of what latency depends on: input shape, groups, and every layer's geometry."""
    parts = [list(graph.input_shape), [(g.root, g.width) for g in graph.groups],
             [(l.name, l.kind, list(l.in_shape), list(l.out_shape), l.kernel, l.groups,
               sorted(l.in_dim.coefs.items()), sorted(l.out_dim.coefs.items()))
              for l in graph.layers]]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def check_profile(profile: Profile, graph: ModelGraph, where: str = "the profile") -> None:
    """Refuse a profile made for another model (or input shape)."""
    m = profile.model
    if m.get("fingerprint") != fingerprint(graph):
        raise ValueError(
            f"{where} was made for model '{m.get('name')}' with input "
            f"{'x'.join(map(str, m.get('input_shape', [])))}, not this one; "
            f"run itpl profile on this model")


def check_device(profile: Profile, facts: dict | None = None, threads: int | None = None,
                 where: str = "the profile") -> None:
    """Refuse a profile measured on another device or with another thread count."""
    if threads is not None and profile.device.get("threads") != threads:
        raise ValueError(f"{where} was measured with {profile.device.get('threads')} threads, "
                         f"not {threads}; profile again with --threads {threads}")
    for key in IDENTITY if facts is not None else ():
        if profile.device.get(key) != facts.get(key):
            raise ValueError(f"{where} was measured on another device ({key}: "
                             f"{profile.device.get(key)!r}, here {facts.get(key)!r}); "
                             "profile this device")


# --- layer geometry ----------------------------------------------------------

def layer_shape(graph: ModelGraph, layer: Layer) -> LayerShape | None:
    """The micro-model shape of a layer, or None where it is not profiled alone
    (grouped convs, 1-D convs and parameter-free ops: the calibration covers them)."""
    if layer.kind == "linear":
        return LayerShape("linear", None, bias=layer.bias, activation=layer.activation)
    if layer.kind not in ("conv", "depthwise") or len(layer.in_shape) != 3:
        return None
    m = graph.module(layer.name)
    kernel, dilation = tuple(m.kernel_size), tuple(m.dilation)
    if isinstance(m.padding, str):  # "valid" or "same" (stride 1 only in PyTorch)
        padding = (0, 0) if m.padding == "valid" else tuple(d * (k - 1) // 2
                                                            for k, d in zip(kernel, dilation))
    else:
        padding = tuple(m.padding)
    if m.padding_mode != "zeros":
        return None
    # Converted convs always carry a bias (folded batch norm, or zeros).
    return LayerShape(layer.kind, tuple(layer.in_shape[1:]), kernel, tuple(m.stride), padding,
                      dilation, layer.activation, True)


def _rows(layer: Layer) -> int:
    """Rows of a linear layer per sample (tokens), 1 for vectors."""
    return max(1, layer.positions) if layer.kind == "linear" else 1


def _grid(layer: Layer, widths: list[int], lows: list[int], levels: int, alpha_min: float,
          round_to: int) -> list[tuple[int, int]]:
    """(c_in, c_out) grid of a layer: each varying side moves its groups through
    ``levels`` allowed widths from the smallest to the full one."""
    def counts(dim):
        if not dim.coefs:
            return [round(dim.const)]
        out = []
        for r in np.linspace(0.0, 1.0, levels):
            alpha = np.ones(len(widths))
            for g in dim.coefs:
                w = widths[g]
                alpha[g] = _nearest(w, lows[g] + r * (w - lows[g]), alpha_min, round_to) / w
            out.append(round(dim.at(alpha)))
        return sorted(set(out))

    if layer.in_dim == layer.out_dim or set(layer.in_dim.coefs) & set(layer.out_dim.coefs):
        # the sides move together: one line through the grid
        line = []
        for r in np.linspace(0.0, 1.0, levels):
            alpha = np.array([_nearest(w, lo + r * (w - lo), alpha_min, round_to) / w
                              for lo, w in zip(lows, widths)])
            line.append((round(layer.in_dim.at(alpha)), round(layer.out_dim.at(alpha))))
        return sorted(set(line))
    return [(ci, co) for ci in counts(layer.in_dim) for co in counts(layer.out_dim)]


def _nearest(full: int, target: float, alpha_min: float, round_to: int) -> int:
    return min(allowed_widths(full, alpha_min, round_to), key=lambda w: abs(w - target))


def _columns(layer: Layer) -> list[str]:
    vary_in, vary_out = bool(layer.in_dim.coefs), bool(layer.out_dim.coefs)
    if layer.in_dim == layer.out_dim:
        return ["1", "in"] if vary_in else ["1"]
    return ["1"] + (["in"] if vary_in else []) + (["out"] if vary_out else []) + \
        (["in*out"] if vary_in and vary_out else [])


def _fit(columns: list[str], points: list[tuple[int, int, float]]) -> tuple[list[float], float]:
    """Least squares on relative error; returns coefficients and relative RMS error."""
    ci, co, t = (np.array(v, dtype=np.float64) for v in zip(*points))
    feats = {"1": np.ones_like(t), "in": ci, "out": co, "in*out": ci * co}
    x = np.stack([feats[c] for c in columns], axis=1)
    coef, *_ = np.linalg.lstsq(x / t[:, None], np.ones_like(t), rcond=None)
    rel = (x @ coef - t) / t
    return coef.tolist(), float(np.sqrt(np.mean(rel ** 2)))


def _add_layer(matrix: np.ndarray, layer: Layer, columns: list[str], coef: list[float]) -> None:
    """Add a layer's fitted latency (channel counts as affine forms) to T."""
    for c, v in zip(columns, coef):
        if c == "1":
            matrix[0, 0] += v
        elif c == "in":
            _add_affine(matrix, layer.in_dim, v)
        elif c == "out":
            _add_affine(matrix, layer.out_dim, v)
        else:
            _add_product(matrix, layer.in_dim, layer.out_dim, v)


# --- measuring -----------------------------------------------------------------

class SampleCache:
    """Timings appended one JSON line each, after a header naming the model,
    device and batch they belong to; a cache for anything else starts over."""

    def __init__(self, path: str | None, header: dict):
        self.path, self.samples, self.resumed = path, {}, 0
        if not path:
            return
        header = json.loads(json.dumps(header))  # as it reads back from disk
        lines = []
        if os.path.exists(path):
            with open(path) as f:
                lines = f.read().splitlines()
        if lines and _loads(lines[0]) == header:
            for line in lines[1:]:
                rec = _loads(line)  # None for a line cut short by an interruption
                if rec and "key" in rec and "timing" in rec:
                    self.samples[rec["key"]] = Timing(**rec["timing"])
        self.resumed = len(self.samples)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:  # rewritten whole: drops a torn last line
            f.write(json.dumps(header) + "\n")
            for key, timing in self.samples.items():
                f.write(json.dumps({"key": key, "timing": asdict(timing)}) + "\n")

    def get(self, key: str) -> Timing | None:
        return self.samples.get(key)

    def put(self, key: str, timing: Timing) -> None:
        self.samples[key] = timing
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps({"key": key, "timing": asdict(timing)}) + "\n")


def _loads(line: str):
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def _compute_layers(graph: ModelGraph) -> list[Layer]:
    return [l for l in graph.layers if l.kind in ("conv", "depthwise", "grouped", "linear")]


def _match_ops(ops: list[tuple[str, list[int]]], layers: list[Layer]) -> list[Layer] | None:
    """The layer behind each conv/linear op of a converted model, or None.

    The converter may order independent branches differently from PyTorch's
    execution, so each op takes the first unused layer of its kind and full
    shape; :func:`itpl.tflite_models.resize_model` checks that the channel
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
    its ops cannot be matched to the layers, a fresh conversion of a pruned copy."""

    def __init__(self, graph: ModelGraph, batch: int, folder: str):
        from itpl.export import export_tflite

        self.graph, self.batch = graph, batch
        base = os.path.join(folder, "base.tflite")
        export_tflite(graph.model, graph.input_shape, base, batch=batch)
        with open(base, "rb") as f:
            self.base = read_model(f.read())
        self.layers = _match_ops(compute_ops(self.base), _compute_layers(graph))
        self.resizable = self.layers is not None

    def write(self, widths: list[int], path: str) -> None:
        alpha = np.asarray(widths, dtype=np.float64) / self.graph.widths
        if self.resizable:
            channels = [(round(l.in_dim.at(alpha)), round(l.out_dim.at(alpha))) for l in self.layers]
            try:
                with open(path, "wb") as f:
                    f.write(resize_model(self.base, channels))
                return
            except ValueError:
                self.resizable = False
        export_pruned(self.graph, widths, path, self.batch)


def export_pruned(graph: ModelGraph, widths: list[int], path: str, batch: int = 1) -> None:
    """Convert a copy of ``graph.model`` pruned to ``widths`` (L1 channels)."""
    from itpl.export import export_tflite
    from itpl.prune import pruned_copy

    model = pruned_copy(graph.model, graph.input_shape, widths)
    export_tflite(model, graph.input_shape, path, batch=batch)


def _configs(widths, lows, alpha_min, round_to, rng, count, levels=()) -> list[list[int]]:
    """Uniform-scaling configurations at ``levels``, then random ones, all distinct."""
    options = [allowed_widths(w, alpha_min, round_to) for w in widths]
    out = [[_nearest(w, lo + r * (w - lo), alpha_min, round_to) for lo, w in zip(lows, widths)]
           for r in levels]
    tries = 0
    while len(out) < count and tries < 100 * count:
        tries += 1
        c = [int(rng.choice(o)) for o in options]
        if c not in out:
            out.append(c)
    return out


def profile_model(
    graph: ModelGraph,
    device: Device,
    *,
    name: str,
    kwargs: dict | None = None,
    threads: int = 1,
    batch: int = 1,
    grid: int = 5,
    round_to: int | None = None,
    alpha_min: float = 0.1,
    calibrate: int = 10,
    validate: int = 20,
    seed: int = 0,
    cache: str | None = None,
    max_seconds: float = 1.0,
    progress: bool = False,
) -> Profile:
    """Measure a network's latency model on ``device``.

    Parameters
    ----------
    graph : ModelGraph
        The network, from :func:`itpl.graph.analyze`.
    device : Device
        Where to time.
    name, kwargs
        Model source, recorded so a profile is matched to its model.
    threads, batch : int
        Interpreter threads and the batch size the latencies are for.
    grid : int
        Width levels per varying side of a layer (``grid`` x ``grid`` samples
        for a layer whose input and output both vary).
    round_to : int, optional
        Widths are multiples of this; grid points and whole-model
        configurations are drawn from them. Default: the device's channel
        tile (:func:`channel_tile`), where latency is linear in width.
    alpha_min : float
        Smallest width ratio, as in :func:`itpl.solve.solve`.
    calibrate, validate : int
        Whole-model configurations timed to fit the overhead (the unpruned
        model and uniform scalings among them) and to check the prediction.
    seed : int
        Seed of the random configurations.
    cache : str, optional
        Cache file; samples already in it are not measured again.
    max_seconds : float
        Time cap per micro-model (whole models get three times as long).
    progress : bool
        Progress bar.
    """
    if round_to is not None and round_to < 1:
        raise ValueError(f"round_to must be a positive integer, got {round_to}")
    if grid < 2:
        raise ValueError(f"grid needs at least 2 levels, got {grid}")
    if calibrate < 5:
        raise ValueError(f"calibration needs at least 5 whole-model configurations (unpruned, "
                         f"smallest, three uniform scalings), got {calibrate}")
    if validate < 0 or not max_seconds > 0:
        raise ValueError("validate must be >= 0 and max_seconds positive")
    start = time.perf_counter()
    widths = graph.widths
    facts = device.facts(threads)
    fp = fingerprint(graph)
    # Identity facts only: a phone's wireless-debugging port may change between runs.
    store = SampleCache(cache, {"cache": CACHE_FORMAT, "fingerprint": fp,
                                "device": {k: facts.get(k) for k in IDENTITY}, "batch": batch})
    tile = _probe_tile(store, device, threads, batch, max_seconds, progress)
    round_to = round_to or tile
    lows = [allowed_widths(w, alpha_min, round_to)[0] for w in widths]

    jobs = []  # (key, writer)
    layer_points = []  # (layer, shape, columns, [(ci, co, key)])
    for layer in _compute_layers(graph):
        shape = layer_shape(graph, layer)
        if shape is None:
            continue
        rows = batch * _rows(layer)
        points = []
        for ci, co in _grid(layer, widths, lows, grid, alpha_min, round_to):
            key = f"{shape.key}/n{rows}/{ci}>{co}"
            points.append((ci, co, key))
            jobs.append((key, lambda p, s=shape, a=ci, b=co, n=rows: _write_micro(p, s, a, b, n)))
        layer_points.append((layer, shape, _columns(layer), points))
    rng = np.random.default_rng(seed)
    cal = _configs(widths, lows, alpha_min, round_to, rng, calibrate, levels=(1.0, 0.0, 0.5, 0.25, 0.75))
    val = [c for c in _configs(widths, lows, alpha_min, round_to, np.random.default_rng(seed + 1),
                               validate + len(cal)) if c not in cal][:validate]
    whole = {}
    for c in cal + val:
        key = f"model/{fp}/n{batch}/" + ",".join(map(str, c))
        whole[tuple(c)] = key
        jobs.append((key, c))

    unique = list(dict(jobs).items())  # a shape shared by layers is timed once
    # Shuffled, so a machine that speeds up or slows down during the run adds
    # noise to every part of the model rather than a bias to one.
    unique = [unique[i] for i in np.random.default_rng(seed).permutation(len(unique))]
    models = _measure(unique, store, device, graph, threads, batch, max_seconds, progress, "profile")

    matrix = np.zeros((len(widths) + 1,) * 2)
    layer_records, sample_records = [], []
    for layer, shape, columns, points in layer_points:
        timed = [(ci, co, store.get(k).median_ms) for ci, co, k in points]
        coef, err = _fit(columns, timed)
        _add_layer(matrix, layer, columns, coef)
        layer_records.append({"name": layer.name, "shape": shape.key, "columns": columns,
                              "coefficients": coef, "samples": len(points), "rms_rel_error": err})
    for key, _ in unique:
        if not key.startswith("model/"):
            sample_records.append({"key": key, **asdict(store.get(key))})
    layer_sum = QuadraticCost("latency", matrix, "ms")

    def ratios(c):
        return np.asarray(c, dtype=np.float64) / widths

    measured = np.array([store.get(whole[tuple(c)]).median_ms for c in cal])
    summed = np.array([layer_sum(ratios(c)) for c in cal])
    offset, scale = _calibrate(summed, measured)
    matrix = scale * matrix
    matrix[0, 0] += offset
    cost = QuadraticCost("latency", matrix, "ms")
    v_measured = [store.get(whole[tuple(c)]).median_ms for c in val]
    v_predicted = [cost(ratios(c)) for c in val]
    rel = np.abs(np.subtract(v_predicted, v_measured)) / np.asarray(v_measured) if val else np.zeros(0)
    profile = Profile(
        model={"name": name, "kwargs": dict(kwargs or {}), "input_shape": list(graph.input_shape),
               "fingerprint": fp},
        device=facts,
        settings={"batch": batch, "grid": grid, "round_to": round_to, "alpha_min": alpha_min,
                  "seed": seed, "channel_tile": tile,
                  "resized_whole_models": bool(models is None or models.resizable)},
        groups=[{"root": g.root, "width": g.width} for g in graph.groups],
        layers=layer_records, samples=sample_records,
        calibration={"widths": cal, "measured_ms": measured.tolist(), "layer_sum_ms": summed.tolist(),
                     "offset_ms": offset, "scale": scale},
        validation={"widths": val, "measured_ms": v_measured, "predicted_ms": v_predicted,
                    "within_10pct": float(np.mean(rel <= 0.10)) if val else None,
                    "within_5pct": float(np.mean(rel <= 0.05)) if val else None,
                    "max_rel_error": float(rel.max()) if val else None},
        matrix=matrix, seconds=time.perf_counter() - start, resumed=store.resumed,
    )
    return profile


def _measure(jobs, store: SampleCache, device: Device, graph: ModelGraph, threads: int,
             batch: int, max_seconds: float, progress: bool, label: str):
    """Time every job not in ``store``. A job writes a micro-model, or is a
    list of widths for the whole network. Returns the whole-model writer, if used."""
    todo = [(k, j) for k, j in jobs if store.get(k) is None]
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=label, unit="model",
                   leave=False)
    models = None
    with tempfile.TemporaryDirectory(prefix="itpl-profile-") as tmp:
        path = os.path.join(tmp, "sample.tflite")
        for key, job in todo:
            if isinstance(job, list):
                if models is None:
                    models = WholeModels(graph, batch, tmp)
                models.write(job, path)
                cap = 3 * max_seconds
            else:
                job(path)
                cap = max_seconds
            store.put(key, device.time_model(path, threads=threads, max_seconds=cap))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return models


# Layers timed at growing width to find the device's channel tile.
_PROBES = (LayerShape("conv", (28, 28)), LayerShape("depthwise", (28, 28), (3, 3), (1, 1), (1, 1)))
_PROBE_WIDTHS = range(8, 129, 8)
TILES = (8, 16, 32)


def _probe_jobs(batch: int):
    jobs = []
    for shape in _PROBES:
        for c in _PROBE_WIDTHS:
            c_in = c if shape.kind == "depthwise" else 128
            jobs.append((f"probe/{shape.key}/n{batch}/{c_in}>{c}",
                         lambda p, s=shape, a=c_in, b=c: _write_micro(p, s, a, b, batch)))
    return jobs


def channel_tile(times: dict[str, float], tolerance: float = 0.05) -> int:
    """The device's channel tile: the smallest of 8, 16, 32 on whose multiples
    the probe layers' latency is linear in width within ``tolerance`` (relative
    RMS). SIMD kernels process channels in tiles, so between multiples latency
    steps instead of growing; a quadratic latency model is exact only on them.
    """
    errors = []
    for tile in TILES:
        worst = 0.0
        for shape in _PROBES:
            points = [(c, t) for k, t in times.items() if k.startswith(f"probe/{shape.key}/")
                      for c in [int(k.rsplit(">", 1)[1])] if c % tile == 0]
            c, t = (np.array(v, dtype=np.float64) for v in zip(*points))
            x = np.stack([np.ones_like(c), c], axis=1) / t[:, None]
            coef, *_ = np.linalg.lstsq(x, np.ones_like(t), rcond=None)
            worst = max(worst, float(np.sqrt(np.mean((x @ coef - 1) ** 2))))
        if worst <= tolerance:
            return tile
        errors.append(worst)
    return TILES[int(np.argmin(errors))]


def measure_channel_tile(device: Device, *, threads: int = 1, batch: int = 1,
                         max_seconds: float = 0.5) -> int:
    """Time the probe layers on ``device`` and return its channel tile (:func:`channel_tile`).

    The same probes as :func:`profile_model`'s first step, on their own: a few
    seconds on a CPU, for choosing ``round_to`` without a whole profile.
    """
    return _probe_tile(SampleCache(None, {}), device, threads, batch, max_seconds, False)


def _probe_tile(store: SampleCache, device: Device, threads: int, batch: int,
                max_seconds: float, progress: bool) -> int:
    """Time the probe layers not yet in ``store``, then read the tile off them."""
    probes = _probe_jobs(batch)
    _measure(probes, store, device, None, threads, batch, max_seconds, progress, "channel tile")
    return channel_tile({k: store.get(k).median_ms for k, _ in probes})


def _write_micro(path: str, shape: LayerShape, c_in: int, c_out: int, rows: int) -> None:
    with open(path, "wb") as f:
        f.write(micro_model(shape, c_in, c_out, batch=rows))


def _calibrate(summed: np.ndarray, measured: np.ndarray) -> tuple[float, float]:
    """``offset + scale * summed ~ measured`` in relative error; scale stays positive."""
    x = np.stack([np.ones_like(summed), summed], axis=1) / measured[:, None]
    (offset, scale), *_ = np.linalg.lstsq(x, np.ones_like(measured), rcond=None)
    if not scale > 0:
        scale, offset = 1.0, float(np.mean(measured - summed))
    return float(offset), float(scale)


def summary_lines(profile: Profile) -> list[str]:
    """The console report of a profile."""
    s, v, c, d = profile.settings, profile.validation, profile.calibration, profile.device
    micro = len(profile.samples)
    lines = [
        f"profiled {profile.model['name']} on {d.get('device')} ({d.get('cpu', d.get('model', '?'))}, "
        f"{d.get('threads')} thread{'s' if d.get('threads') != 1 else ''}, batch {s['batch']}): "
        f"{len(profile.layers)} layers, {micro} layer models, "
        f"{len(c['widths']) + len(v['widths'])} whole models in {profile.seconds:.0f} s"
        + (f" ({profile.resumed} samples from the cache)" if profile.resumed else ""),
        f"channel tile {s['channel_tile']}: widths are multiples of {s['round_to']}",
        f"unpruned latency: measured {c['measured_ms'][0]:.3f} ms, predicted "
        f"{profile.cost().full():.3f} ms",
    ]
    if v["widths"]:
        lines.append(f"validation ({len(v['widths'])} random width configurations): "
                     f"{v['within_10pct']:.0%} within 10%, {v['within_5pct']:.0%} within 5% of "
                     f"measured (largest error {v['max_rel_error']:.1%})")
    return lines
