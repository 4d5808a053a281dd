"""Measuring a profile: :func:`profile_model` times a model's layers and whole
models on a device and fits them (the profile's type and file are in
:mod:`itpl.latency.profile`)."""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from itpl.deploy.devices.base import Device
from itpl.deploy.timing import Spread, Timer
from itpl.latency.fit import TERMS, add_layer, columns, feature_map_form, fit_layer
from itpl.latency.fit import calibrate as calibrate_forms
from itpl.latency.fit import grid as layer_grid
from itpl.latency.fit import configurations, layer_shape, rows, solver_like, term_of
from itpl.latency.profile import IDENTITY, Profile, fingerprint, write_profile
from itpl.latency.runs import (CACHE_FORMAT, PROBES, SampleCache, Sampler, WholeModels,
                               compute_layers, probe_tile, write_micro)
from itpl.method.widths import allowed_widths
from itpl.model.cost import QuadraticCost
from itpl.model.graph import ModelGraph


def profile_to_file(graph: ModelGraph, device: Device, path: str, **options) -> Profile:
    """:func:`profile_model` with its sample cache at ``PATH.cache``, then the
    profile written to ``path`` and the cache removed: a rerun after an
    interruption resumes from the cache, a rerun after success starts afresh."""
    cache = f"{path}.cache"
    profile = profile_model(graph, device, cache=cache, **options)
    write_profile(profile, path)
    os.unlink(cache)
    return profile



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

    Every timing is a ratio to a reference timed beside it (:mod:`itpl.deploy.timing`):
    whole models to the unpruned network, layers to one small 1x1 conv. The
    profile's milliseconds are whole-model ratios times the median of all the
    unpruned network's bursts in the run.

    Parameters
    ----------
    graph : ModelGraph
        The network, from :func:`itpl.model.graph.analyze`.
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
        Smallest width ratio, as in :func:`itpl.method.solve.solve`.
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
