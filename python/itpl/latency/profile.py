"""Latency profiles: per-layer timings on a device, fitted into the quadratic form T.

This module holds the profile (:class:`Profile`), its file and the checks that
a profile fits a model and a device; :mod:`itpl.latency.measure` measures one.

``itpl profile`` times every conv and linear layer of a model as a one-layer
.tflite (:func:`itpl.deploy.flatbuffer.micro_model`) on a grid of input and output
widths, and fits each layer's latency (:mod:`itpl.latency.fit`). Channel counts
are affine in the group ratios, so the sum over layers is a quadratic form over
``[1, alpha]``, the paper's T measured instead of counted.

What the layers leave out (the input transpose, padding, residual adds,
pooling, the interpreter's per-op overhead, and the difference between a layer
timed alone and inside the network) is calibrated on whole models: the
converted network, resized to width configurations
(:func:`itpl.deploy.flatbuffer.resize_model`) like the ones the solver returns, is
timed and the layer sums mapped onto those times. Further configurations,
random and solver-like, never used in the fit, validate the prediction.

Every timing is a ratio to a reference model timed beside it (:mod:`itpl.deploy.timing`): the
unpruned network for whole models, one small 1x1 conv for the layers,
so a device that changes speed during the run does not bend the profile. Each
is appended to a cache file as soon as it is measured (:mod:`itpl.latency.runs`),
so an interrupted profile resumes where it stopped, with no sample taken twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import numpy as np

from itpl.model.cost import QuadraticCost
from itpl.model.graph import ModelGraph

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
        offset and per-term scales (:func:`itpl.latency.fit.calibrate`).
    validation : dict
        ``random`` and ``solver`` (solver-like) width configurations never
        used in the fit, with measured and predicted ms and error shares.
    reference : dict
        The unpruned network's timings as the reference of the whole models
        (:class:`itpl.deploy.timing.Spread`): ``ms`` is what their ratios were
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
    from itpl.util.fileio import read_json

    return Profile.from_dict(read_json(path, "profile"), f"profile '{path}'")


def write_profile(profile: Profile, path: str) -> None:
    from itpl.util.fileio import write_json

    write_json(path, profile.to_dict())


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
