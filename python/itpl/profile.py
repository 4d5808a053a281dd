"""Latency profiles: per-layer timings on a device, fitted into the quadratic form T.

``itpl profile`` times every conv and linear layer of a model as a one-layer
.tflite (:func:`itpl.tflite_models.micro_model`) on a grid of input and output
widths, and fits each layer's latency (:mod:`itpl.profile_fit`). Channel counts
are affine in the group ratios, so the sum over layers is a quadratic form over
``[1, alpha]``, the paper's T measured instead of counted.

What the layers leave out (the input transpose, padding, residual adds,
pooling, the interpreter's per-op overhead, and the difference between a layer
timed alone and inside the network) is calibrated on whole models: the
converted network, resized to width configurations
(:func:`itpl.tflite_models.resize_model`) like the ones the solver returns, is
timed and the layer sums mapped onto those times. Further configurations,
random and solver-like, never used in the fit, validate the prediction.

Every timing is a ratio to a reference model timed beside it (:mod:`itpl.timing`): the
unpruned network for whole models, one small 1x1 conv for the layers,
so a device that changes speed during the run does not bend the profile. Each
is appended to a cache file as soon as it is measured (:mod:`itpl.profile_runs`),
so an interrupted profile resumes where it stopped, with no sample taken twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from itpl.cost import QuadraticCost
from itpl.devices.base import Device
from itpl.graph import ModelGraph
from itpl.profile_fit import TERMS, add_layer, columns, feature_map_form, fit_layer
from itpl.profile_fit import calibrate as calibrate_forms
from itpl.profile_fit import grid as layer_grid
from itpl.profile_fit import configurations, layer_shape, rows, solver_like, term_of
from itpl.profile_runs import (CACHE_FORMAT, PROBES, SampleCache, Sampler, WholeModels,
                               compute_layers, probe_tile, write_micro)
from itpl.widths import allowed_widths
from itpl.timing import Spread, Timer

FORMAT = "itpl.profile/2"
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
        Every micro-model timing: key, ratios to the layer reference per round, ms.
    calibration : dict
        Width configurations with measured whole-model ms, and the fitted
        offset and per-term scales (:func:`itpl.profile_fit.calibrate`).
    validation : dict
        ``random`` and ``solver`` (solver-like) width configurations never
        used in the fit, with measured and predicted ms and error shares.
    reference : dict
        The unpruned network's timings as the reference of the whole models
        (:class:`itpl.timing.Spread`): ``ms`` is what their ratios were
        multiplied by (the unpruned latency every budget is a ratio of),
        ``relative`` how much the device's speed moved during the run.
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
    reference: dict = field(default_factory=dict)
    seconds: float = 0.0
    groups: list[dict] = field(default_factory=list)
    precision: str = "fp32"  # of the models timed: "fp32" or "int8"
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
        if d.get("format") == "itpl.profile/1":
            raise ValueError(f"{where} is from an older itpl that timed without a reference "
                             "model; run itpl profile again")
        if d.get("format") != FORMAT:
            raise ValueError(f"{where} is not an itpl profile (format {d.get('format')!r}, "
                             f"expected {FORMAT!r})")
        try:
            fields = {k: d[k] for k in ("model", "device", "settings", "layers", "samples",
                                        "calibration", "validation", "reference")}
            precision = d.get("precision", "fp32")  # profiles before int8 were fp32
            if precision not in ("fp32", "int8"):
                raise ValueError(f"unknown precision {precision!r}")
            return cls(**fields, matrix=np.asarray(d["matrix"], dtype=np.float64),
                       seconds=float(d.get("seconds", 0.0)), groups=d.get("groups", []),
                       precision=precision)
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


def check_precision(profile: Profile, precision: str, where: str = "the profile") -> None:
    """Refuse a profile timed at another precision (int8 and fp32 latencies differ)."""
    if profile.precision != precision:
        flag = "--quantize int8" if precision == "int8" else "without --quantize"
        raise ValueError(f"{where} holds {profile.precision} latencies, not {precision}; "
                         f"profile {flag}")


def check_device(profile: Profile, facts: dict | None = None, threads: int | None = None,
                 where: str = "the profile") -> None:
    """Refuse a profile measured on another device or with another thread count."""
    if threads is not None and profile.device.get("threads") != threads:
        raise ValueError(f"{where} was measured with {profile.device.get('threads')} threads, "
                         f"not {threads}; profile again with `threads` {threads}")
    for key in IDENTITY if facts is not None else ():
        if profile.device.get(key) != facts.get(key):
            raise ValueError(f"{where} was measured on another device ({key}: "
                             f"{profile.device.get(key)!r}, here {facts.get(key)!r}); "
                             "profile this device")


# --- the pipeline ------------------------------------------------------------------

def _whole_jobs(models, fp, batch, configs):
    return [(f"model/{fp}/n{batch}/" + ",".join(map(str, c)),
             lambda p, c=c: models.write(c, p)) for c in configs]


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
    calibrate: int = 24,
    validate: int = 20,
    seed: int = 0,
    cache: str | None = None,
    rounds: int = 3,
    precision: str = "fp32",
    progress: bool = False,
) -> Profile:
    """Measure a network's latency model on ``device``.

    Every timing is a ratio to a reference timed beside it (:mod:`itpl.timing`):
    whole models to the unpruned network, layers to one small 1x1 conv. The
    profile's milliseconds are whole-model ratios times the median of all the
    unpruned network's bursts in the run.

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
        Whole-model configurations timed to calibrate the layer sum (the
        unpruned model, uniform scalings, random and solver-like ones) and,
        ``validate`` random plus ``validate`` solver-like ones, to check it.
    seed : int
        Seed of the random configurations.
    cache : str, optional
        Cache file; samples already in it are not measured again.
    rounds : int
        Timing rounds per sample (more where they disagree by over 3%).
    precision : str
        ``"fp32"`` or ``"int8"``: the precision of every model timed (layers,
        tile probes, whole models), recorded in the profile.
    progress : bool
        Progress bars.
    """
    if round_to is not None and round_to < 1:
        raise ValueError(f"round_to must be a positive integer, got {round_to}")
    if grid < 2:
        raise ValueError(f"grid needs at least 2 levels, got {grid}")
    if calibrate < 8:
        raise ValueError(f"calibration needs at least 8 whole-model configurations (unpruned, "
                         f"smallest, three uniform scalings, three more), got {calibrate}")
    if validate < 0 or rounds < 1:
        raise ValueError("validate must be >= 0 and rounds >= 1")
    start = time.perf_counter()
    widths = graph.widths
    facts = device.facts(threads)
    fp = fingerprint(graph)
    # Identity facts only: a phone's wireless-debugging port may change between runs.
    store = SampleCache(cache, {"cache": CACHE_FORMAT, "fingerprint": fp,
                                "device": {k: facts.get(k) for k in IDENTITY}, "batch": batch}
                        | ({"precision": precision} if precision != "fp32" else {}))
    with tempfile.TemporaryDirectory(prefix="itpl-whole-") as tmp:
        models = WholeModels(graph, batch, tmp, precision)
        # A reference much shorter than a burst: its median over many invocations
        # is robust where one invocation of the whole network is often interrupted.
        reference = os.path.join(tmp, "reference.tflite")
        write_micro(reference, PROBES[0], 128, 128, batch, precision)
        sampler = Sampler(Timer(device, reference, threads=threads, seed=seed), "layer", store,
                          rounds=rounds, progress=progress)
        # Whole models beside the unpruned one: a network's time tracks another
        # network's through the device's moods more closely than a layer's does.
        # They are few and are what the profile is judged on: 2%, not 3%.
        whole = Sampler(Timer(device, models.base, threads=threads, seed=seed), "unpruned",
                        store, rounds=rounds, precision=0.02, progress=progress)
        tile = probe_tile(sampler, batch, precision)
        round_to = round_to or tile
        lows = [allowed_widths(w, alpha_min, round_to)[0] for w in widths]

        jobs = []
        layer_points = []  # (layer, shape, columns, [(ci, co, key)])
        for layer in compute_layers(graph):
            shape = layer_shape(graph, layer)
            if shape is None:
                continue
            n = batch * rows(layer)
            points = []
            for ci, co in layer_grid(layer, widths, lows, grid, alpha_min, round_to):
                key = f"{shape.key}/n{n}/{ci}>{co}"
                points.append((ci, co, key))
                jobs.append((key, lambda p, s=shape, a=ci, b=co, n=n: write_micro(p, s, a, b, n, precision)))
            layer_points.append((layer, shape, columns(layer), points))
        unique = list(dict(jobs).items())  # a shape shared by layers is timed once
        # Shuffled, so a device that drifts slowly adds noise to every part of
        # the model rather than a bias to one.
        unique = [unique[i] for i in np.random.default_rng(seed).permutation(len(unique))]
        sampler.run(unique, "layers")

        # Layer sums per calibration term, in units of the layer reference's time;
        # the calibration's scales carry them into the unpruned network's.
        forms = [np.zeros((len(widths) + 1,) * 2) for _ in TERMS]
        layer_records = []
        for layer, shape, cols, points in layer_points:
            coef, err = fit_layer(cols, [(ci, co, store.ratio(k)) for ci, co, k in points])
            add_layer(forms[TERMS.index(term_of(layer))], layer, cols, coef)
            layer_records.append({"name": layer.name, "shape": shape.key, "columns": cols,
                                  "coefficients": coef, "samples": len(points),
                                  "rms_rel_error": err})
        forms[TERMS.index("feature maps")] = feature_map_form(graph, compute_layers(graph))
        layer_sum = QuadraticCost("latency", sum(forms[:-1]), "ratio")

        rng = np.random.default_rng(seed)
        cal = configurations(widths, lows, alpha_min, round_to, rng, (calibrate + 1) // 2,
                       levels=(1.0, 0.0, 0.5, 0.25, 0.75))
        cal += solver_like(layer_sum, widths, alpha_min, round_to, rng, calibrate - len(cal), cal)
        cal_jobs = _whole_jobs(models, fp, batch, cal)
        whole.run(cal_jobs, "calibration")
        measured = np.array([store.ratio(k) for k, _ in cal_jobs])
        alphas = [np.asarray(c, dtype=np.float64) / widths for c in cal]
        offset, scales = calibrate_forms(forms, alphas, measured)
        matrix = sum(s * f for s, f in zip(scales, forms))
        matrix[0, 0] += offset
        ratio_cost = QuadraticCost("latency", matrix, "ratio")

        vrng = np.random.default_rng(seed + 1)
        val_random = [c for c in configurations(widths, lows, alpha_min, round_to, vrng,
                                          validate + len(cal)) if c not in cal][:validate]
        val_solver = solver_like(ratio_cost, widths, alpha_min, round_to, vrng, validate,
                                 cal + val_random)
        val_jobs = _whole_jobs(models, fp, batch, val_random + val_solver)
        whole.run(val_jobs, "validation")
        resizable = models.resizable

    reference = Spread.of(store.reference_ms["unpruned"])
    ms = reference.ms  # whole-model ratios times this are milliseconds
    micro_ms = Spread.of(store.reference_ms["layer"]).ms
    validation = {}
    for kind, configs, jobs in (("random", val_random, val_jobs[:len(val_random)]),
                                ("solver", val_solver, val_jobs[len(val_random):])):
        got = [ms * store.ratio(k) for k, _ in jobs]
        pred = [ms * ratio_cost(np.asarray(c, dtype=np.float64) / widths) for c in configs]
        validation[kind] = _validation(configs, got, pred)
    profile = Profile(
        model={"name": name, "kwargs": dict(kwargs or {}), "input_shape": list(graph.input_shape),
               "fingerprint": fp},
        device=facts,
        settings={"batch": batch, "grid": grid, "round_to": round_to, "alpha_min": alpha_min,
                  "seed": seed, "channel_tile": tile, "rounds": rounds,
                  "resized_whole_models": resizable},
        groups=[{"root": g.root, "width": g.width} for g in graph.groups],
        layers=layer_records,
        samples=[{"key": k, "ratios": store.get(k), "ms": micro_ms * store.ratio(k)}
                 for k, _ in unique],
        calibration={"widths": cal, "measured_ms": (ms * measured).tolist(),
                     "offset_ms": ms * offset, "terms": list(TERMS), "scales": scales},
        validation=validation,
        reference=reference.to_dict() | {
            "model": "unpruned", "layer_reference": "conv 1x1 128>128 at 28x28",
            "imprecise": sampler.imprecise + whole.imprecise,
            "timed": sampler.timed + whole.timed},
        matrix=ms * matrix, seconds=time.perf_counter() - start, resumed=store.resumed,
        precision=precision,
    )
    return profile


def _validation(configs, measured, predicted) -> dict:
    rel = np.abs(np.subtract(predicted, measured)) / np.asarray(measured) if configs else np.zeros(0)
    return {"widths": configs, "measured_ms": list(measured), "predicted_ms": list(predicted),
            "within_10pct": float(np.mean(rel <= 0.10)) if configs else None,
            "within_5pct": float(np.mean(rel <= 0.05)) if configs else None,
            "max_rel_error": float(rel.max()) if configs else None,
            "mean_signed_error": float(np.mean(np.subtract(predicted, measured) /
                                               np.asarray(measured))) if configs else None}
