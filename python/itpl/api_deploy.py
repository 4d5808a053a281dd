"""The Python API of deployment, re-exported by :mod:`itpl`: :func:`convert` (PyTorch
-> .tflite held in memory, checked against PyTorch) and :func:`bench` (batch
latency tables timed beside a reference model)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class TFLiteModel:
    """A converted model held in memory, and its numeric check against PyTorch.

    Attributes
    ----------
    content : bytes
        The ``.tflite`` flatbuffer.
    input_shape : tuple of int
        One sample's shape; the file's input is ``(batch, *input_shape)``.
    batch : int
        The static batch size.
    max_abs_diff : float
        max |tflite - torch| on a random input.
    tolerance : float
        What ``max_abs_diff`` was allowed: ``rtol`` x the largest magnitude of
        the PyTorch output.
    rtol : float
        The relative tolerance of the check.
    """

    content: bytes
    input_shape: tuple[int, ...]
    batch: int
    max_abs_diff: float
    tolerance: float
    rtol: float

    @property
    def relative_diff(self) -> float:
        """max |tflite - torch| over the PyTorch output's largest magnitude."""
        return self.max_abs_diff / self.tolerance * self.rtol

    def save(self, path: str) -> str:
        """Write the ``.tflite`` file (atomically) and return its path."""
        from itpl.util.fileio import check_output, staged_outputs

        path = os.fspath(path)
        check_output(path, "path")
        with staged_outputs() as stage:
            with open(stage.path(path), "wb") as f:
                f.write(self.content)
        return path

    def __repr__(self) -> str:
        return (f"TFLiteModel(input {(self.batch, *self.input_shape)}, {len(self.content)} bytes, "
                f"max |tflite - torch| {self.max_abs_diff:.2e})")


def _module(model, input_shape):
    """``(module, input shape, label)`` of a module, plan file or model name."""
    if isinstance(model, nn.Module):
        shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
        if shape is None:
            raise ValueError(f"cannot infer the input shape of {type(model).__name__}; pass "
                             "`input_shape` C,H,W")
        return model, tuple(int(s) for s in shape), type(model).__name__
    from itpl.pipeline import load_any

    return load_any(os.fspath(model), input_shape=input_shape)


def convert(model, input_shape=None, *, batch: int = 1, rtol: float | None = None,
            seed: int = 0) -> TFLiteModel:
    """Convert a model to LiteRT (``.tflite``) at a static batch size, checked numerically.

    Parameters
    ----------
    model : torch.nn.Module or str
        The model (put in eval mode), a ``*.plan.json`` or a built-in name.
    input_shape : tuple of int, optional
        One sample's shape; default the model's ``input_shape`` attribute.
    batch : int
        Static batch size of the converted graph.
    rtol : float, optional
        Allowed max |tflite - torch| relative to the output's largest
        magnitude (default 1e-3).
    seed : int
        Seed of the random check input.

    Returns
    -------
    TFLiteModel
        The flatbuffer in memory; ``.save(path)`` writes it.

    Raises
    ------
    ValueError
        When conversion fails (naming the first layer that does not convert)
        or the converted model's output differs from PyTorch's beyond ``rtol``.
    """
    from itpl.deploy.export import DEFAULT_RTOL, export_tflite

    module, shape, _ = _module(model, input_shape)
    with tempfile.TemporaryDirectory(prefix="itpl-convert-") as tmp:
        r = export_tflite(module, shape, os.path.join(tmp, "model.tflite"), batch=batch,
                          rtol=DEFAULT_RTOL if rtol is None else rtol, seed=seed)
        with open(r.path, "rb") as f:
            content = f.read()
    return TFLiteModel(content=content, input_shape=shape, batch=batch,
                       max_abs_diff=r.max_abs_diff, tolerance=r.tolerance, rtol=r.rtol)


@dataclass(frozen=True)
class BenchResult:
    """Latency table of :func:`bench`: ``str()`` prints it, :meth:`save` writes the JSON.

    Attributes
    ----------
    data : dict
        ``device`` facts, per batch the ``references`` spread, and ``results``:
        one row per model and batch (``model``, ``batch``, ``median_ms``,
        ``low_ms``/``high_ms``, ``speedup`` with its 95% interval, per-round
        samples), as ``itpl bench --json`` writes.
    """

    data: dict

    @property
    def rows(self) -> list[dict]:
        return self.data["results"]

    def row(self, model: str, batch: int = 1) -> dict:
        """The result of ``model`` at ``batch``."""
        for r in self.rows:
            if r["model"] == model and r["batch"] == batch:
                return r
        raise KeyError(f"no result for {model!r} at batch {batch}")

    def speedup(self, model: str, batch: int = 1) -> float:
        """How many times faster than the reference (the first model) ``model`` ran."""
        return self.row(model, batch)["speedup"]

    def save(self, path: str) -> str:
        """Write the results as JSON (read by ``itpl bench --compare``)."""
        from itpl.util.fileio import write_json

        write_json(os.fspath(path), self.data)
        return path

    def __str__(self) -> str:
        from itpl.deploy.bench import format_table

        return format_table(self.data)


def bench(models, *, device="local", batch=(1, 4, 8), threads: int = 1, rounds: int = 10,
          input_shape=None, progress: bool = False) -> BenchResult:
    """Time models at several batch sizes beside the first, on a device.

    Every model is timed in interleaved rounds between bursts of the first
    one, so each speedup is a ratio measured in the same seconds (robust to
    a device that changes speed), with its 95% interval.

    Parameters
    ----------
    models : dict or list
        ``{label: model}`` or a list of models (labelled by position). A model
        is a :class:`TFLiteModel` (timed at its own batch), a ``.tflite``
        path, an ``nn.Module``, a ``*.plan.json`` or a built-in name (these
        converted at every ``batch``).
    device : str or Device
        ``"local"`` (default), ``"adb"``, ``"adb:SERIAL"``, ...
    batch : sequence of int
        Batch sizes to convert modules, plans and names at.
    threads : int
        Interpreter threads.
    rounds : int
        Interleaved rounds at least (up to 4x as many until each speedup's 95%
        interval is within +-1%).
    input_shape : tuple of int, optional
        For modules without an ``input_shape`` attribute.

    Returns
    -------
    BenchResult
    """
    from itpl.deploy.bench import add_precisions, bench_models, tflite_batch
    from itpl.deploy.devices import as_device
    from itpl.deploy.export import export_tflite

    if not isinstance(models, dict):
        models = {f"model{i}": m for i, m in enumerate(models)}
    if not models:
        raise ValueError("give at least one model to time")
    with tempfile.TemporaryDirectory(prefix="itpl-bench-") as tmp:
        files = []
        for i, (label, model) in enumerate(models.items()):
            if isinstance(model, TFLiteModel):
                path = model.save(os.path.join(tmp, f"{i}.tflite"))
                files.append((str(label), {model.batch: path}))
            elif isinstance(model, (str, os.PathLike)) and os.fspath(model).endswith(".tflite"):
                files.append((str(label), {tflite_batch(os.fspath(model)): os.fspath(model)}))
            else:
                module, shape, _ = _module(model, input_shape)
                files.append((str(label), {b: export_tflite(module, shape, os.path.join(
                    tmp, f"{i}-b{b}.tflite"), batch=b).path for b in batch}))
        result = bench_models(files, as_device(device), threads=threads, rounds=rounds,
                              progress=progress)
        add_precisions(result, dict(files))  # read while the files still exist
    return BenchResult(result)
