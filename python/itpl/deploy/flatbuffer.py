""".tflite flatbuffers written directly, for latency profiling.

Converting with litert-torch takes about a second for one conv and four for a
MobileNet, far too slow for the hundreds of shapes a profile times. The
flatbuffer schema ships with ``ai-edge-litert``, so two cheap constructions are
done here instead:

* :func:`micro_model`: one layer as the converter emits it (batch norm folded
  into the conv, ReLU/ReLU6 fused, PyTorch padding as SAME or as an explicit
  PAD before a VALID conv), in milliseconds.
* :func:`resize_model`: a converted model's graph with other channel counts.
  The converter's graph for a pruned model differs from the unpruned one only
  in tensor shapes and weights, so rewriting those gives the model litert-torch
  would write, without converting again. Weights are random: float32 latency
  does not depend on their values.
"""

from __future__ import annotations

from dataclasses import dataclass

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as tfl

_COMPUTE = {tfl.BuiltinOperator.CONV_2D: "conv", tfl.BuiltinOperator.DEPTHWISE_CONV_2D: "depthwise",
            tfl.BuiltinOperator.FULLY_CONNECTED: "linear"}
_ACTIVATIONS = {"none": tfl.ActivationFunctionType.NONE, "relu": tfl.ActivationFunctionType.RELU,
                "relu6": tfl.ActivationFunctionType.RELU6}


@dataclass(frozen=True)
class LayerShape:
    """Everything about a conv or linear layer but its channel counts.

    ``in_hw`` is ``None`` for a linear layer on vectors.
    """

    kind: str  # "conv", "depthwise" or "linear"
    in_hw: tuple[int, int] | None
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    activation: str = "none"
    bias: bool = True

    @property
    def key(self) -> str:
        """Stable text identifying the shape, used to share samples between layers."""
        hw = "x".join(map(str, self.in_hw)) if self.in_hw else "vec"
        return (f"{self.kind}/{hw}/k{self.kernel[0]}x{self.kernel[1]}/s{self.stride[0]}x{self.stride[1]}"
                f"/p{self.padding[0]}x{self.padding[1]}/d{self.dilation[0]}x{self.dilation[1]}"
                f"/{self.activation}/{'b' if self.bias else 'nb'}")

    def out_hw(self) -> tuple[int, int]:
        return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, s, p, d in
                     zip(self.in_hw, self.kernel, self.stride, self.padding, self.dilation))


class _Writer:
    """Accumulates tensors, buffers and operators of one subgraph."""

    def __init__(self):
        self.model = tfl.ModelT()
        self.model.version = 3
        self.model.description = "itpl micro-model"
        self.model.buffers = [tfl.BufferT()]  # buffer 0 is the empty sentinel
        self.model.operatorCodes = []
        self.graph = tfl.SubGraphT()
        self.graph.tensors, self.graph.operators = [], []
        self.codes: dict[int, int] = {}

    def tensor(self, shape, data: np.ndarray | None = None, dtype=tfl.TensorType.FLOAT32) -> int:
        t = tfl.TensorT()
        t.shape, t.type, t.name = list(shape), dtype, f"t{len(self.graph.tensors)}"
        t.buffer = 0
        if data is not None:
            buf = tfl.BufferT()
            buf.data = _bytes(data)
            t.buffer = len(self.model.buffers)
            self.model.buffers.append(buf)
        self.graph.tensors.append(t)
        return len(self.graph.tensors) - 1

    def op(self, code: int, inputs, outputs, options_type=0, options=None) -> None:
        if code not in self.codes:
            oc = tfl.OperatorCodeT()
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
            self.codes[code] = len(self.model.operatorCodes)
            self.model.operatorCodes.append(oc)
        o = tfl.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = self.codes[code], list(inputs), list(outputs)
        o.builtinOptionsType, o.builtinOptions = options_type, options
        self.graph.operators.append(o)

    def finish(self, inputs, outputs) -> bytes:
        self.graph.inputs, self.graph.outputs = list(inputs), list(outputs)
        self.model.subgraphs = [self.graph]
        # A signature as litert-torch writes one: the int8 quantizer calibrates through it.
        sig = tfl.SignatureDefT()
        sig.signatureKey, sig.subgraphIndex = "serving_default", 0
        sig.inputs = [_tensor_map(f"args_{k}", i) for k, i in enumerate(inputs)]
        sig.outputs = [_tensor_map(f"output_{k}", i) for k, i in enumerate(outputs)]
        self.model.signatureDefs = [sig]
        return _pack(self.model)


def _tensor_map(name: str, index: int):
    m = tfl.TensorMapT()
    m.name, m.tensorIndex = name, index
    return m


def _pack(model) -> bytes:
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _bytes(data: np.ndarray) -> np.ndarray:
    """A buffer's contents: the array's bytes as uint8."""
    return np.ascontiguousarray(data).view(np.uint8).ravel()


def _op_code(model, op) -> int:
    code = model.operatorCodes[op.opcodeIndex]
    # codes below 127 live in the deprecated field of older files
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def _weights(rng, shape) -> np.ndarray:
    return (rng.standard_normal(shape) * 0.05).astype(np.float32)


def micro_model(shape: LayerShape, c_in: int, c_out: int, batch: int = 1, seed: int = 0) -> bytes:
    """A .tflite holding one layer with ``c_in`` input and ``c_out`` output channels.

    Weights are in TFLite's layouts (conv ``[out, kh, kw, in]``, depthwise
    ``[1, kh, kw, c]``, linear ``[out, in]``); activations are NHWC.
    """
    if shape.kind not in ("conv", "depthwise", "linear"):
        raise ValueError(f"no micro-model for layer kind '{shape.kind}'")
    if shape.kind == "depthwise" and c_in != c_out:
        raise ValueError(f"a depthwise layer keeps its channel count, got {c_in} -> {c_out}")
    if min(c_in, c_out, batch) < 1:
        raise ValueError(f"channel counts and batch must be positive, got {c_in}, {c_out}, {batch}")
    rng = np.random.default_rng(seed)
    w = _Writer()
    act = _ACTIVATIONS[shape.activation]
    if shape.kind == "linear":
        x = w.tensor([batch, c_in])
        ins = [x, w.tensor([c_out, c_in], _weights(rng, (c_out, c_in)))]
        ins.append(w.tensor([c_out], _weights(rng, c_out)) if shape.bias else -1)
        y = w.tensor([batch, c_out])
        opts = tfl.FullyConnectedOptionsT()
        opts.fusedActivationFunction = act
        w.op(tfl.BuiltinOperator.FULLY_CONNECTED, ins, [y], tfl.BuiltinOptions.FullyConnectedOptions, opts)
        return w.finish([x], [y])

    (h, wd), (kh, kw) = shape.in_hw, shape.kernel
    x = w.tensor([batch, h, wd, c_in])
    src, padding = x, _padding_mode(shape)
    if padding is None:  # the converter's PAD + VALID for padding SAME cannot express
        (ph, pw) = shape.padding
        pads = w.tensor([4, 2], np.array([[0, 0], [ph, ph], [pw, pw], [0, 0]], np.int32),
                        tfl.TensorType.INT32)
        src = w.tensor([batch, h + 2 * ph, wd + 2 * pw, c_in])
        w.op(tfl.BuiltinOperator.PAD, [x, pads], [src], tfl.BuiltinOptions.PadOptions, tfl.PadOptionsT())
        padding = tfl.Padding.VALID
    oh, ow = shape.out_hw()
    y = w.tensor([batch, oh, ow, c_out])
    if shape.kind == "conv":
        filt = w.tensor([c_out, kh, kw, c_in], _weights(rng, (c_out, kh, kw, c_in)))
        opts, code, kind = tfl.Conv2DOptionsT(), tfl.BuiltinOperator.CONV_2D, tfl.BuiltinOptions.Conv2DOptions
    else:
        filt = w.tensor([1, kh, kw, c_out], _weights(rng, (1, kh, kw, c_out)))
        opts = tfl.DepthwiseConv2DOptionsT()
        opts.depthMultiplier = 1
        code, kind = tfl.BuiltinOperator.DEPTHWISE_CONV_2D, tfl.BuiltinOptions.DepthwiseConv2DOptions
    opts.padding, opts.fusedActivationFunction = padding, act
    opts.strideH, opts.strideW = shape.stride
    opts.dilationHFactor, opts.dilationWFactor = shape.dilation
    bias = w.tensor([c_out], _weights(rng, c_out)) if shape.bias else -1
    w.op(code, [src, filt, bias], [y], kind, opts)
    return w.finish([x], [y])


def _padding_mode(shape: LayerShape):
    """SAME or VALID where one of them equals PyTorch's padding, else None."""
    if shape.padding == (0, 0):
        return tfl.Padding.VALID
    same = tuple(d * (k - 1) // 2 for k, d in zip(shape.kernel, shape.dilation))
    odd = all(d * (k - 1) % 2 == 0 for k, d in zip(shape.kernel, shape.dilation))
    if shape.stride == (1, 1) and odd and shape.padding == same:
        return tfl.Padding.SAME
    return None


_REDUCERS = (tfl.BuiltinOperator.MEAN, tfl.BuiltinOperator.SUM, tfl.BuiltinOperator.REDUCE_MAX,
             tfl.BuiltinOperator.REDUCE_MIN, tfl.BuiltinOperator.REDUCE_PROD)


def _constant(model, tensor) -> np.ndarray:
    dtype = {tfl.TensorType.INT32: np.int32, tfl.TensorType.INT64: np.int64}.get(tensor.type)
    if dtype is None:
        raise ValueError("an op parameter of an unexpected type cannot be followed")
    return np.frombuffer(np.asarray(model.buffers[tensor.buffer].data, np.uint8).tobytes(), dtype)


def read_model(data: bytes):
    """The object tree of a .tflite flatbuffer."""
    try:
        model = tfl.ModelT.InitFromObj(tfl.Model.GetRootAs(data, 0))
    except Exception as exc:
        raise ValueError(f"not a .tflite flatbuffer: {type(exc).__name__}: {exc}") from None
    if any(b.offset > 1 for b in model.buffers or []):
        raise ValueError("models with external buffers (over 2 GB) cannot be resized")
    return model


def compute_ops(model) -> list[tuple[str, list[int]]]:
    """(kind, full weight shape) of every conv, depthwise and linear op, in order."""
    graph = model.subgraphs[0]
    out = []
    for op in graph.operators:
        code = _op_code(model, op)
        if code in _COMPUTE:
            out.append((_COMPUTE[code], [int(d) for d in graph.tensors[op.inputs[1]].shape]))
    return out


def resize_model(model, channels: list[tuple[int, int]], seed: int = 0) -> bytes:
    """``model`` (from :func:`read_model`, left unchanged) with new channel counts.

    Parameters
    ----------
    model : ModelT
        A converted model whose compute ops (:func:`compute_ops`) are the
        layers ``channels`` describes, in the same order.
    channels : list of (int, int)
        Input and output channels of each compute op.

    Raises
    ------
    ValueError
        When an op between the compute layers changes the channel layout in a
        way that is not followed here (the caller then converts instead).
    """
    import copy

    model = copy.deepcopy(model)
    graph = model.subgraphs[0]
    rng = np.random.default_rng(seed)
    tensors = graph.tensors
    for t in tensors:  # the object API reads shapes as NumPy arrays
        t.shape = [int(d) for d in t.shape] if t.shape is not None else []
    original = [list(t.shape) for t in tensors]
    constant = {i for i, t in enumerate(tensors) if t.buffer and model.buffers[t.buffer].data is not None
                and len(model.buffers[t.buffer].data)}
    # The converter shares equal constants (zero biases) between ops; each use
    # gets its own copy so one op's new width does not reach another's.
    used = set()
    for op in graph.operators:
        for k, i in enumerate(op.inputs):
            if i in constant and i in used:
                t = copy.copy(tensors[i])
                name = t.name.decode() if isinstance(t.name, bytes) else str(t.name or "")
                t.name = f"{name}_itpl_copy{len(tensors)}"  # names stay unique (the quantizer asks)
                buf = tfl.BufferT()
                buf.data = model.buffers[t.buffer].data
                t.buffer = len(model.buffers)
                model.buffers.append(buf)
                tensors.append(t)
                original.append(list(t.shape))
                constant.add(len(tensors) - 1)
                op.inputs[k] = len(tensors) - 1
            used.add(i)
    todo = iter(channels)
    axis: dict[int, int] = {}  # tensor -> its channel axis, for tensors whose width changed

    def set_shape(i, shape, fill=None):
        t = tensors[i]
        t.shape = list(shape)
        if t.shapeSignature is not None and len(t.shapeSignature):
            t.shapeSignature = [s if s < 0 else v for s, v in zip(t.shapeSignature, shape)]
        if i in constant:
            data = fill if fill is not None else _weights(rng, shape)
            model.buffers[t.buffer].data = _bytes(data)

    for op in graph.operators:
        code = _op_code(model, op)
        ins = [i for i in op.inputs if i >= 0]
        if code in _COMPUTE:
            try:
                c_in, c_out = next(todo)
            except StopIteration:
                raise ValueError("the model has more conv/linear ops than layers given") from None
            filt = list(tensors[op.inputs[1]].shape)
            last = len(original[op.inputs[0]]) - 1  # convs and linear layers take channels last
            if tensors[op.inputs[0]].shape[-1] != c_in or axis.get(op.inputs[0], last) != last:
                raise ValueError(f"a conv/linear op gets {tensors[op.inputs[0]].shape[-1]} input "
                                 f"channels where its layer has {c_in}: the layers are not this model's")
            if code == tfl.BuiltinOperator.CONV_2D:
                groups = original[op.inputs[0]][-1] // original[op.inputs[1]][-1]
                set_shape(op.inputs[1], [c_out, *filt[1:3], c_in // groups])
            elif code == tfl.BuiltinOperator.DEPTHWISE_CONV_2D:
                set_shape(op.inputs[1], [1, *filt[1:3], c_out])
            else:
                set_shape(op.inputs[1], [c_out, c_in])
            if len(op.inputs) > 2 and op.inputs[2] >= 0:
                set_shape(op.inputs[2], [c_out])
            set_shape(op.outputs[0], original[op.outputs[0]][:-1] + [c_out])
            axis[op.outputs[0]] = len(original[op.outputs[0]]) - 1
            continue
        data_in = [i for i in ins if i not in constant]
        changed = [i for i in data_in if tensors[i].shape != original[i]]
        if not changed:
            continue
        out, ax = op.outputs[0], axis[changed[0]]
        c = tensors[changed[0]].shape[ax]
        rank_in, rank_out = len(original[changed[0]]), len(original[out])
        if code == tfl.BuiltinOperator.CONCATENATION:
            if op.builtinOptions.axis % rank_out != ax:
                raise ValueError("a concatenation not along channels cannot be resized")
            c = sum(tensors[i].shape[ax] for i in data_in)
            out_ax = ax
        elif code == tfl.BuiltinOperator.TRANSPOSE:
            out_ax = [int(v) for v in _constant(model, tensors[op.inputs[1]])].index(ax)
        elif code in _REDUCERS:
            axes = {int(v) % rank_in for v in _constant(model, tensors[op.inputs[1]]).ravel()}
            if ax in axes:
                raise ValueError("a reduction over channels cannot be resized")
            keep = bool(getattr(op.builtinOptions, "keepDims", False))
            out_ax = ax if keep else ax - sum(a < ax for a in axes)
        elif code in (tfl.BuiltinOperator.RESHAPE, tfl.BuiltinOperator.SQUEEZE):
            others = [d for k, d in enumerate(original[changed[0]]) if k != ax]
            hits = [k for k, d in enumerate(original[out]) if d == original[changed[0]][ax]]
            if any(d != 1 for d in others) or len(hits) != 1:
                raise ValueError("a reshape that moves channels cannot be resized")
            out_ax = hits[0]
            new_shape = [c if k == out_ax else d for k, d in enumerate(original[out])]
            for i in ins[1:]:  # the target shape, when given as a tensor
                if i in constant:
                    set_shape(i, original[i], np.array(new_shape, np.int32))
            if getattr(op.builtinOptions, "newShape", None) is not None:
                op.builtinOptions.newShape = new_shape
        else:
            # Channel-wise ops (pad, add, activations, pooling): the channel
            # axis passes through; per-channel constants shrink with it.
            if rank_out != rank_in or original[out][ax] != original[changed[0]][ax]:
                raise ValueError(f"op {code} changes the channel axis and cannot be resized")
            out_ax = ax
            full = original[out][ax]
            for i in ins:
                if i in constant and len(original[i]) == rank_out and original[i][ax] == full > 1:
                    set_shape(i, [c if k == ax else d for k, d in enumerate(original[i])])
        set_shape(out, [c if k == out_ax else d for k, d in enumerate(original[out])])
        axis[out] = out_ax
    if next(todo, None) is not None:
        raise ValueError("fewer conv/linear ops in the model than layers given")
    return _pack(model)
