"""Micro-models written from the flatbuffer schema run in the real LiteRT
interpreter and compute what a float64 NumPy reference computes; resized
converted models have exactly the ops and shapes litert-torch writes for the
physically pruned network."""

import copy

import numpy as np
import pytest

from itpl.deploy.export import export_tflite, interpreter
from itpl.deploy.flatbuffer import LayerShape, compute_ops, micro_model, read_model, resize_model
from itpl.method.widths import allowed_widths
from itpl.model.graph import analyze
from itpl.model.surgery import apply_pruning, select_channels
from itpl.model.zoo import build
from tests.small_models import ResidualNet


def _run(data: bytes, x: np.ndarray, tmp_path) -> np.ndarray:
    path = tmp_path / "m.tflite"
    path.write_bytes(data)
    interp = interpreter(str(path))
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


def _weights(data: bytes):
    """Filter and bias of the one compute op, as float64 arrays in TFLite layout."""
    model = read_model(data)
    graph = model.subgraphs[0]
    op = graph.operators[-1]
    out = []
    for i in op.inputs[1:3]:
        t = graph.tensors[i]
        out.append(np.frombuffer(model.buffers[t.buffer].data.tobytes(), np.float32)
                   .reshape([int(d) for d in t.shape]).astype(np.float64))
    return out


def _conv_reference(x, w, b, shape: LayerShape, depthwise: bool):
    """NHWC convolution in float64 by explicit patches."""
    (ph, pw), (sh, sw), (dh, dw), (kh, kw) = shape.padding, shape.stride, shape.dilation, shape.kernel
    x = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    oh, ow = shape.out_hw()
    y = np.zeros((x.shape[0], oh, ow, w.shape[-1] if depthwise else w.shape[0]))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]
            y += patch * w[0, i, j] if depthwise else patch @ w[:, i, j, :].T
    return y + b


ACT = {"none": lambda v: v, "relu": lambda v: np.maximum(v, 0), "relu6": lambda v: np.clip(v, 0, 6)}


@pytest.mark.parametrize("shape,c_in,c_out", [
    (LayerShape("conv", (9, 9), (3, 3), (2, 2), (1, 1), activation="relu6"), 5, 7),  # PAD + VALID
    (LayerShape("conv", (8, 7), (3, 3), (1, 1), (1, 1), activation="relu"), 4, 6),  # SAME
    (LayerShape("conv", (8, 8), (1, 1)), 6, 3),  # VALID, no padding
    (LayerShape("conv", (10, 10), (3, 3), (1, 1), (2, 2), (2, 2)), 3, 4),  # dilated SAME
    (LayerShape("depthwise", (8, 8), (3, 3), (1, 1), (1, 1), activation="relu"), 6, 6),
    (LayerShape("depthwise", (9, 9), (3, 3), (2, 2), (1, 1), activation="relu6"), 5, 5),
])
def test_micro_conv_matches_numpy(shape, c_in, c_out, tmp_path):
    data = micro_model(shape, c_in, c_out, batch=2, seed=3)
    x = np.random.default_rng(1).standard_normal((2, *shape.in_hw, c_in)).astype(np.float32)
    w, b = _weights(data)
    expected = ACT[shape.activation](_conv_reference(x.astype(np.float64), w, b, shape,
                                                     shape.kind == "depthwise"))
    got = _run(data, x, tmp_path)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert compute_ops(read_model(data)) == [(shape.kind, list(w.shape))]


def test_micro_linear_matches_numpy(tmp_path):
    data = micro_model(LayerShape("linear", None, activation="relu"), 10, 3, batch=4)
    x = np.random.default_rng(2).standard_normal((4, 10)).astype(np.float32)
    w, b = _weights(data)
    np.testing.assert_allclose(_run(data, x, tmp_path), np.maximum(x @ w.T + b, 0), atol=1e-5)


def test_micro_model_rejects_bad_shapes():
    with pytest.raises(ValueError, match="keeps its channel count"):
        micro_model(LayerShape("depthwise", (4, 4), (3, 3), padding=(1, 1)), 4, 8)
    with pytest.raises(ValueError, match="no micro-model"):
        micro_model(LayerShape("grouped", (4, 4)), 4, 8)
    with pytest.raises(ValueError, match="positive"):
        micro_model(LayerShape("conv", (4, 4)), 0, 8)
    with pytest.raises(ValueError, match="not a .tflite"):
        read_model(b"not a model at all")


def _structure(path):
    """Every op but XNNPACK's delegate node, with its tensor shapes."""
    interp = interpreter(path)

    def shapes(ids):
        return [interp._get_tensor_details(i, 0)["shape"].tolist() for i in ids if i >= 0]

    return [(op["op_name"], shapes(op["inputs"]), shapes(op["outputs"]))
            for op in interp._get_ops_details() if op["op_name"] != "DELEGATE"]


@pytest.mark.parametrize("name", ["resnet20", "residual_net",
                                  pytest.param("mobilenet_v2", marks=pytest.mark.slow)])
def test_resized_model_is_what_the_converter_writes(name, tmp_path):
    # residual_net's spatial mean converts to a transpose to NCHW and a MEAN
    model = ResidualNet().eval() if name == "residual_net" else build(name).eval()
    shape = (3, 16, 16) if name == "residual_net" else (3, 32, 32)
    graph = analyze(model, shape)
    base = export_tflite(model, shape, str(tmp_path / "base.tflite")).path
    rng = np.random.default_rng(5)
    widths = [int(rng.choice(allowed_widths(w, 0.1, 8))) for w in graph.widths]
    alpha = np.array(widths) / graph.widths
    layers = [l for l in graph.layers if l.kind in ("conv", "depthwise", "grouped", "linear")]
    channels = [(round(l.in_dim.at(alpha)), round(l.out_dim.at(alpha))) for l in layers]
    with open(base, "rb") as f:
        original = read_model(f.read())
    before = copy.deepcopy(compute_ops(original))
    (tmp_path / "resized.tflite").write_bytes(resize_model(original, channels))
    assert compute_ops(original) == before  # the input model is left alone

    pruned = copy.deepcopy(model)
    g = analyze(pruned, shape)
    apply_pruning(g, select_channels(g, widths, "l1"))
    real = export_tflite(pruned, shape, str(tmp_path / "real.tflite")).path
    resized = _structure(str(tmp_path / "resized.tflite"))
    assert resized == _structure(real)
    assert resized != _structure(base)
    x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
    assert np.isfinite(_run((tmp_path / "resized.tflite").read_bytes(), x, tmp_path)).all()


def test_resize_refuses_a_wrong_layer_list(tmp_path):
    model = build("resnet20").eval()
    base = export_tflite(model, (3, 32, 32), str(tmp_path / "b.tflite")).path
    with open(base, "rb") as f:
        original = read_model(f.read())
    graph = analyze(model, (3, 32, 32))
    ones = np.ones(len(graph.widths))
    channels = [(round(l.in_dim.at(ones)), round(l.out_dim.at(ones))) for l in graph.layers
                if l.kind in ("conv", "linear")]
    resize_model(original, channels)
    with pytest.raises(ValueError, match="more conv/linear ops"):
        resize_model(original, channels[:-1])
    with pytest.raises(ValueError, match="fewer conv/linear ops"):
        resize_model(original, channels + [(4, 4)])
    with pytest.raises(ValueError, match="not this model's"):
        resize_model(original, [(16, 16)] * len(channels))
