"""PyTorch -> .tflite through litert-torch, one static batch size per file,
each export checked numerically against PyTorch with the LiteRT interpreter.

The converter and TensorFlow's runtime write progress and log lines straight
to the process's file descriptors; they are silenced while converting and
loading, and a failure is reported by its exception alone.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

# Float32 conversions differ from PyTorch by float rounding and op reordering
# (XNNPACK's kernels): well under 1e-3 of the output's scale.
DEFAULT_RTOL = 1e-3


@dataclass
class ExportResult:
    """One exported file and its numeric check."""

    path: str
    batch: int
    input_shape: list[int]
    max_abs_diff: float
    tolerance: float  # rtol x the largest magnitude of the PyTorch output

    @property
    def relative_diff(self) -> float:
        """max |tflite - torch| over the output's largest magnitude."""
        return self.max_abs_diff / self.tolerance * self.rtol

    rtol: float = DEFAULT_RTOL


@contextlib.contextmanager
def _captured_fds():
    """Send what is written to fds 1 and 2 to a discarded temp file."""
    with tempfile.TemporaryFile() as log:
        saved = [os.dup(1), os.dup(2)]
        try:
            for fd in (1, 2):
                os.dup2(log.fileno(), fd)
            yield
        finally:
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)


def _converter():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with _captured_fds():
            import litert_torch
    except ImportError:
        raise ValueError("export needs litert-torch: pip install 'itpl[export]'") from None
    return litert_torch


def interpreter(path: str, threads: int = 1):
    """A LiteRT interpreter for ``path`` (tflite-runtime only where LiteRT is absent)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - fallback for platforms without LiteRT wheels
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise ValueError("no TFLite interpreter: pip install ai-edge-litert") from None
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file '{path}' does not exist")
    if threads < 1:  # else LiteRT's complaint reads as a broken model file
        raise ValueError(f"threads must be at least 1, got {threads}")
    try:
        with _captured_fds():  # the runtime logs its delegate choice on stderr
            interp = Interpreter(model_path=path, num_threads=threads)
            interp.allocate_tensors()
    except Exception as exc:
        raise ValueError(f"'{path}' is not a valid .tflite model: {str(exc).splitlines()[0]}") from None
    return interp


def run_tflite(path: str, x: np.ndarray, threads: int = 1, interp=None) -> np.ndarray:
    """Output of the .tflite model at ``path`` on input ``x`` (through ``interp``,
    an interpreter of that file, when given)."""
    interp = interp or interpreter(path, threads)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    if tuple(inp["shape"]) != x.shape:
        raise ValueError(f"'{path}' takes input {tuple(inp['shape'])}, got {x.shape}")
    interp.set_tensor(inp["index"], x.astype(inp["dtype"]))
    interp.invoke()
    return interp.get_tensor(out["index"]).copy()


def _failing_layer(model: nn.Module, x: torch.Tensor, convert) -> str | None:
    """The first leaf module (execution order) that does not convert on its own."""
    inputs = []
    hooks = [m.register_forward_hook(lambda m, a, o, n=n: inputs.append((n, m, a)))
             for n, m in model.named_modules() if n and not list(m.children())]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    for name, module, args in inputs:
        try:
            convert(module.eval(), tuple(a for a in args if isinstance(a, torch.Tensor)))
        except Exception:
            return f"{name} ({type(module).__name__})"
    return None


def export_tflite(model: nn.Module, input_shape, path: str, *, batch: int = 1,
                  rtol: float = DEFAULT_RTOL, seed: int = 0) -> ExportResult:
    """Convert ``model`` at a static ``batch`` to ``path`` and check it numerically.

    Parameters
    ----------
    model : nn.Module
        Put in eval mode.
    input_shape : tuple of int
        One sample's shape.
    path : str
        Output ``.tflite`` file; written only when conversion and check succeed.
    batch : int
        Static batch size of the exported graph.
    rtol : float
        Allowed max abs difference relative to the output's max magnitude
        (no absolute floor: tiny outputs are checked at their own scale).
    seed : int
        Seed of the random check input.

    Raises
    ------
    ValueError
        When conversion fails (naming the first layer that does not convert)
        or the .tflite output differs from PyTorch beyond the tolerance.
    """
    from itpl.util.fileio import staged_outputs

    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    litert_torch = _converter()
    from itpl.util import interrupt

    interrupt.check()  # a Ctrl-C during the converter's import may have been swallowed
    model = model.eval()
    x = torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = model(x).numpy()
    if not np.isfinite(expected).all():
        raise ValueError("the model's PyTorch output is not finite (NaN or Inf) on a random "
                         "input: nothing to check the export against")

    with staged_outputs() as stage:
        tmp = stage.path(path)
        try:
            with _captured_fds():
                litert_torch.convert(model, (x,)).export(tmp)
        except Exception as exc:
            layer = _failing_layer(model, x, litert_torch.convert)
            where = f" at layer {layer}" if layer else ""
            raise ValueError(f"conversion to .tflite failed{where}: {type(exc).__name__}: "
                             f"{(str(exc).splitlines() or [''])[0][:300]}") from None
        got = run_tflite(tmp, x.numpy())
        if got.shape != expected.shape:
            raise ValueError(f"exported model gives output shape {got.shape}, PyTorch "
                             f"{expected.shape}")
        diff = float(np.abs(got - expected).max())
        # Relative to the output's own scale: a random-init network's outputs can be
        # 1e-10 or smaller, where any absolute tolerance passes whatever the file holds.
        scale = float(np.abs(expected).max())
        tolerance = rtol * max(scale, float(np.finfo(np.float32).tiny))
        if not diff <= tolerance:
            raise ValueError(f"exported model differs from PyTorch: max abs difference {diff:.3g} "
                             f"> tolerance {tolerance:.3g} ({rtol:g} of the output's largest "
                             f"magnitude, {scale:.3g})")
    return ExportResult(path=path, batch=batch, input_shape=list(input_shape),
                        max_abs_diff=diff, tolerance=tolerance, rtol=rtol)
