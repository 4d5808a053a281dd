"""int8 models: full-integer static quantization of a converted .tflite, checked
against the fp32 PyTorch model on held-out images.

The fp32 file litert-torch writes (:mod:`itpl.deploy.export`) is quantized by
``ai-edge-quantizer`` (its ``static_wi8_ai8`` recipe): weights int8 per output
channel (symmetric), activations int8 per tensor (asymmetric), biases int32,
inputs and outputs int8 too. It works on the flatbuffer, so the graph that was
profiled, resized and checked in fp32 is the graph that gets quantized.

Activation ranges are the minimum and maximum over all calibration images
(what TFLite's converter does with a representative dataset). The quantizer's
own default is a moving average of per-sample ranges, which forgets the
largest values: on a ResNet-20 it clipped one held-out image's logits to a
third of their size (63% error on that image, 14% over 100 images, against
4.6% with the full range; 128 calibration images each).

Latency does not depend on the scales, so models quantized only to be timed
(profiles, ``--verify``, refinement) are calibrated on a few random inputs
(:func:`quantize_for_timing`); anything a user runs is calibrated on their
data and checked (:func:`export_int8`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

PRECISIONS = ("fp32", "int8")
# The int8 check on held-out images. Trained networks typically quantize to 1-5%
# output error; a ResNet-20 trained briefly on the quality benchmark's images gave
# 4.6% and 94% top-1 agreement (its logits close together). Random-init networks
# are much worse (20-35% even with batch norms re-estimated): they are no test.
DEFAULT_MAX_ERROR = 0.10  # ||int8 - fp32|| / ||fp32|| over the held-out outputs
DEFAULT_MIN_AGREEMENT = 0.90  # share of held-out images with the same top-1 class
NO_DATA = ("int8 export needs calibration images (`data`): activation scales are set from "
           "the ranges seen on them, and random inputs give ranges unlike real images "
           "(clipped or coarse activations)")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def _modules():
    from itpl.deploy.export import _captured_fds

    try:
        with _captured_fds():
            from ai_edge_quantizer import calibrator, quantizer, recipe, recipe_manager
            from ai_edge_quantizer.utils import qsv_utils
    except ImportError:
        raise ValueError("int8 export needs ai-edge-quantizer: pip install 'itpl[export]'") from None
    return calibrator, quantizer, recipe, recipe_manager, qsv_utils


def quantize_file(float_path: str, out_path: str, batches: np.ndarray) -> None:
    """Quantize the fp32 .tflite at ``float_path`` to full int8 at ``out_path``.

    Parameters
    ----------
    float_path : str
        A model with one signature (litert-torch's ``serving_default``, or an
        itpl micro-model) taking one float32 input.
    out_path : str
        Output file.
    batches : numpy.ndarray
        Calibration inputs, ``(steps, *input shape of the file)``.
    """
    from itpl.deploy.export import _captured_fds, interpreter

    calibrator, quantizer, recipe, recipe_manager, qsv_utils = _modules()
    interp = interpreter(float_path)
    signatures = interp.get_signature_list()
    if len(signatures) != 1:
        raise ValueError(f"'{float_path}' has {len(signatures)} signatures; int8 export needs one")
    key, sig = next(iter(signatures.items()))
    if len(sig["inputs"]) != 1:
        raise ValueError(f"'{float_path}' takes {len(sig['inputs'])} inputs; int8 export needs one")
    shape = tuple(interp.get_input_details()[0]["shape"])
    batches = np.asarray(batches, np.float32)
    if batches.ndim != len(shape) + 1 or batches.shape[1:] != shape or len(batches) < 1:
        raise ValueError(f"calibration batches must be (steps, {', '.join(map(str, shape))}), "
                         f"got {batches.shape}")
    if not np.isfinite(batches).all():
        raise ValueError("calibration data holds NaN or Inf")
    rules = recipe_manager.RecipeManager()
    rules.load_quantization_recipe(recipe.static_wi8_ai8())
    with _captured_fds(), warnings.catch_warnings():  # progress bars, notes, warnings
        warnings.simplefilter("ignore")
        calib = calibrator.Calibrator(float_path, num_threads=1,
                                      qsv_update_func=qsv_utils.min_max_update)
        calib.calibrate({key: [{sig["inputs"][0]: b} for b in batches]}, rules)
        result = quantizer.Quantizer(float_path, recipe.static_wi8_ai8()).quantize(
            calib.get_model_qsvs(), enable_progress_report=False)
    with open(out_path, "wb") as f:
        f.write(result.quantized_model)


def quantize_for_timing(float_path: str, out_path: str, seed: int = 0) -> None:
    """:func:`quantize_file` on two random inputs: a model to time, not to run
    (int8 kernels take as long whatever the scales)."""
    from itpl.deploy.export import interpreter

    shape = interpreter(float_path).get_input_details()[0]["shape"]
    x = np.random.default_rng(seed).standard_normal((2, *shape)).astype(np.float32)
    quantize_file(float_path, out_path, x)


def precision_of(path: str) -> str:
    """``"int8"`` when the model at ``path`` takes int8 input and every conv and
    linear weight is int8, ``"fp32"`` when it takes float32, else an error."""
    from itpl.deploy.export import interpreter

    interp = interpreter(path)
    dtype = interp.get_input_details()[0]["dtype"]
    if dtype == np.float32:
        return "fp32"
    weights = weight_types(path)
    if dtype == np.int8 and weights and set(weights.values()) == {"int8"}:
        return "int8"
    raise ValueError(f"'{path}' is neither fp32 nor full int8 (input {np.dtype(dtype).name}, "
                     f"weights {sorted(set(weights.values()))})")


def weight_types(path: str) -> dict[str, str]:
    """Tensor name -> dtype name of every conv, depthwise and linear weight of ``path``."""
    from itpl.deploy.export import interpreter

    interp = interpreter(path)
    details = {d["index"]: d for d in interp.get_tensor_details()}
    names = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}
    return {details[op["inputs"][1]]["name"]: np.dtype(details[op["inputs"][1]]["dtype"]).name
            for op in interp._get_ops_details() if op["op_name"] in names}


def run_int8(path: str, x: np.ndarray, interp=None) -> np.ndarray:
    """Float output of the int8 model at ``path`` on float input ``x``: the input
    quantized with the file's input scale, the output dequantized with its own."""
    from itpl.deploy.export import interpreter

    interp = interp or interpreter(path)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    if tuple(inp["shape"]) != x.shape:
        raise ValueError(f"'{path}' takes input {tuple(inp['shape'])}, got {x.shape}")
    scale, zero = inp["quantization"]
    info = np.iinfo(inp["dtype"])
    interp.set_tensor(inp["index"], np.clip(np.round(x / scale) + zero, info.min, info.max)
                      .astype(inp["dtype"]))
    interp.invoke()
    scale, zero = out["quantization"]
    return (interp.get_tensor(out["index"]).astype(np.float32) - zero) * scale


@dataclass
class Int8Check:
    """An int8 file against the fp32 PyTorch model on held-out images."""

    samples: int
    relative_error: float  # ||int8 - fp32|| / ||fp32|| over all held-out outputs
    agreement: float | None  # share of images with the same top-1 (None: one output)
    max_error: float
    min_agreement: float

    @property
    def passed(self) -> bool:
        return self.relative_error <= self.max_error and (
            self.agreement is None or self.agreement >= self.min_agreement)

    def line(self) -> str:
        top1 = "" if self.agreement is None else (
            f"top-1 agreement {self.agreement:.1%} (at least {self.min_agreement:.0%}), ")
        return (f"int8 vs fp32 PyTorch on {self.samples} held-out images: {top1}output error "
                f"{self.relative_error:.2%} of its norm (at most {self.max_error:.0%})")


def check_int8(path: str, model: nn.Module, images: np.ndarray, *,
               max_error: float = DEFAULT_MAX_ERROR,
               min_agreement: float = DEFAULT_MIN_AGREEMENT) -> Int8Check:
    """Compare the int8 file at ``path`` with ``model`` (fp32) on ``images`` (n, *shape)."""
    x = torch.from_numpy(np.asarray(images, np.float32))
    got = TFLiteClassifier(path)(x).numpy().reshape(len(x), -1)
    with torch.no_grad():
        want = model.eval()(x).numpy().reshape(len(x), -1)
    norm = float(np.linalg.norm(want))
    error = float(np.linalg.norm(got - want)) / norm if norm > 0 else float("inf")
    agreement = float(np.mean(got.argmax(1) == want.argmax(1))) if want.shape[1] > 1 else None
    return Int8Check(len(images), error, agreement, max_error, min_agreement)


def split_images(images: np.ndarray, check: int) -> tuple[np.ndarray, np.ndarray]:
    """(calibration, held-out) from one draw: the last ``check`` images are held out,
    or a fifth of them where there are not enough for both."""
    n = len(images)
    if n < 2:
        raise ValueError(f"int8 export needs at least 2 images (calibration and a held-out "
                         f"check), got {n}")
    check = min(check, max(1, n // 5)) if n <= 2 * check else check
    return images[: n - check], images[n - check:]


def export_int8(model: nn.Module, input_shape, path: str, calibration: np.ndarray,
                held_out: np.ndarray, *, batch: int = 1, max_error: float = DEFAULT_MAX_ERROR,
                min_agreement: float = DEFAULT_MIN_AGREEMENT):
    """Convert ``model`` to fp32, quantize it to int8 and check it; write ``path``
    only when the check passes.

    Parameters
    ----------
    model : nn.Module
        The fp32 model.
    input_shape : tuple of int
        One sample's shape.
    path : str
        Output ``.tflite``.
    calibration, held_out : numpy.ndarray
        Images ``(n, *input_shape)``: the first set the activation ranges, the
        second (never seen in calibration) checks the result.
    batch : int
        Static batch of the file.
    max_error, min_agreement : float
        Tolerances of the check (:class:`Int8Check`).

    Returns
    -------
    (ExportResult, Int8Check)
        The fp32 conversion's check and the int8 one.

    Raises
    ------
    ValueError
        When conversion or quantization fails, or the check does not pass.
    """
    import tempfile

    from itpl.deploy.export import export_tflite
    from itpl.util.fileio import staged_outputs

    shape = tuple(input_shape)
    calibration, held_out = (np.asarray(a, np.float32) for a in (calibration, held_out))
    for name, a in (("calibration", calibration), ("held-out", held_out)):
        if a.ndim != len(shape) + 1 or a.shape[1:] != shape or len(a) < 1:
            raise ValueError(f"{name} images must be (n, {', '.join(map(str, shape))}), got {a.shape}")
    steps = max(1, len(calibration) // batch)
    reps = -(-batch * steps // len(calibration))  # fewer images than the batch: repeat them
    batches = np.tile(calibration, (reps,) + (1,) * len(shape))[: steps * batch]
    with tempfile.TemporaryDirectory(prefix="itpl-int8-") as tmp:
        fp32 = export_tflite(model, shape, os.path.join(tmp, "fp32.tflite"), batch=batch)
        with staged_outputs() as stage:
            out = stage.path(path)
            quantize_file(fp32.path, out, batches.reshape(steps, batch, *shape))
            if precision_of(out) != "int8":  # pragma: no cover - the recipe quantizes every conv
                raise ValueError("the quantized model still holds float weights")
            check = check_int8(out, model, held_out, max_error=max_error,
                               min_agreement=min_agreement)
            if not check.passed:
                raise ValueError(f"int8 check failed, nothing written: {check.line()}")
    fp32.path = path
    return fp32, check


class TFLiteClassifier(torch.nn.Module):
    """A .tflite file (fp32 or int8) as a module giving float logits, so that
    :func:`itpl.train.finetune.evaluate` scores it exactly as it scores PyTorch models.

    Inputs are run in chunks of the file's static batch size (the last one
    padded); int8 files get their input quantized and their output dequantized
    with the file's own scales (:func:`run_int8`).
    """

    def __init__(self, path: str, threads: int = 1):
        super().__init__()
        from itpl.deploy.export import interpreter

        self.path = path
        self.interp = interpreter(path, threads)
        detail = self.interp.get_input_details()[0]
        self.batch, self.input_shape = int(detail["shape"][0]), tuple(detail["shape"][1:])
        self.int8 = np.dtype(detail["dtype"]) != np.float32

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from itpl.deploy.export import run_tflite

        x = x.detach().cpu().numpy().astype(np.float32)
        outs = []
        for start in range(0, len(x), self.batch):
            chunk = x[start:start + self.batch]
            pad = self.batch - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), np.float32)])
            y = (run_int8(self.path, chunk, self.interp) if self.int8
                 else run_tflite(self.path, chunk, interp=self.interp))
            outs.append(y[:len(y) - pad])
        return torch.from_numpy(np.concatenate(outs))
