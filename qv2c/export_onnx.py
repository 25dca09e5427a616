"""`model.export_onnx(path)`: the compiled mixed model as a standard ONNX QDQ graph.

onnxruntime, TensorRT and other runtimes read the QDQ form: every int8 layer is a float op
between DequantizeLinear of its inputs and QuantizeLinear of its output, carrying qv2c's
own scales and zero points, and fp32 layers stay plain float ops:

    qv2c IR                                      ONNX
    %q = qv.quantize(%x) : u8[..]{s, zp}         q = QuantizeLinear(x, s, zp)
    %y = qv.qconv(%q, %w, %b) {act = "relu"}     y = QuantizeLinear(Relu(Conv(DQ(q), DQ(w, s_w[c], axis=0),
         : u8[..]{s_y, zp_y}                         DQ(b : int32, s_x * s_w[c], axis=0))), s_y, zp_y)
    %z = qv.maxpool(%y) : u8[..]                 z = MaxPool(y)            (on the uint8 tensor itself)
    %f = qv.dequantize(%z) : f32[..]             f = DequantizeLinear(z, s_y, zp_y)

Which IR: the final one (after `fuse`), with each `qv.fused` body inlined. A fused group
only wraps ordinary ops, so inlining gives back exactly the pre-fuse realize-quant IR, and
exporting the final IR means a model loaded from a saved file (which keeps only the final
IR) exports the same graph.

An fp32 conv/gemm reading an int8 tensor gets it dequantized by Cast/Sub/Mul (the same arithmetic
as DequantizeLinear), not by DequantizeLinear: onnxruntime treats DequantizeLinear -> Conv ->
QuantizeLinear as a layer to run in int8 and would quantize the weights of qv2c's fp32 layers.

Integer requantization (`qv.requantize`, the epilogue of `qv.qconv` / `qv.qgemm`) becomes
DequantizeLinear + QuantizeLinear; data-movement ops (max-pool, concat, reshape, transpose,
channel permutation, pad) run on the integer tensor, as in qv2c. onnxruntime's numerics
differ from qv2c's in float rounding order (it may fuse the QDQ pattern into its own integer
kernels), so predictions agree closely but not bit for bit. Shapes are static, at the
model's compiled batch size.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from qv2c.errors import SavedModelError, UnsupportedOpError
from qv2c.ir.core import Module, Op, Value
from qv2c.ir.fused import FUSED
from qv2c.ir.printer import value_names
from qv2c.ir.quant_math import qrange, quantize
from qv2c.ir.types import QuantParams

OPSET = 17
#: opset 17 models are IR version 8; onnxruntime reads it everywhere
IR_VERSION = 8

_FLOAT_OPS = {"qv.relu": "Relu", "qv.sigmoid": "Sigmoid", "qv.add": "Add", "qv.sub": "Sub", "qv.mul": "Mul",
              "qv.div": "Div", "qv.matmul": "MatMul", "qv.global_avgpool": "GlobalAveragePool",
              "qv.batchnorm": "BatchNormalization", "qv.lrn": "LRN", "qv.softmax": "Softmax"}
#: qv attribute -> ONNX attribute, where the names differ
_ATTR_NAMES = {"kernel": "kernel_shape", "trans_a": "transA", "trans_b": "transB"}
_ACT = {"none": None, "relu": (0.0, math.inf), "relu6": (0.0, 6.0)}


def export_onnx(module: Module, path: str | Path) -> None:
    """Write `module` (a compiled model's IR) to `path` as an ONNX QDQ model."""
    import onnx

    model = to_onnx(module)
    try:
        onnx.save(model, str(path))
    except OSError as e:
        raise SavedModelError(f"cannot write {path}: {' '.join(str(e).split())}") from None


def to_onnx(module: Module):
    """`module` as an `onnx.ModelProto` (QDQ form; see the module docstring)."""
    import onnx
    from onnx import helper

    ex = _Exporter(module)
    for op in module.ops:
        ex.op(op)
    outputs = []
    for v in module.outputs:
        name = ex.name(v)
        if name != v.name:
            ex.node("Identity", [name], [v.name])
        outputs.append(_value_info(v.name, v))
    graph = helper.make_graph(ex.nodes, module.name or "qv2c", [_value_info(v.name, v) for v in module.inputs],
                              outputs, ex.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="qv2c")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def _elem_type(dtype: str) -> int:
    from onnx import TensorProto

    return {"f32": TensorProto.FLOAT, "u8": TensorProto.UINT8, "i8": TensorProto.INT8,
            "i32": TensorProto.INT32, "i64": TensorProto.INT64}[dtype]


def _value_info(name: str, v: Value):
    from onnx import helper

    return helper.make_tensor_value_info(name, _elem_type(v.type.dtype), list(v.type.shape))


class _Exporter:
    """Builds the node list; every IR value has one ONNX name, an integer one also a lazily made float view."""

    def __init__(self, module: Module) -> None:
        printed = value_names(module)
        io = {v.name for v in (*module.inputs, *module.outputs)}
        self.names = {k: (n + "_qv2c" if n in io else n) for k, n in printed.items()}
        self.names.update({id(v): v.name for v in module.inputs})
        self.alias: dict[int, Value] = {}
        self.nodes: list = []
        self.initializers: list = []
        self.done_consts: set[int] = set()
        self.dq: dict[int, str] = {}
        self.counter = 0
        self.constants = {id(c) for c in module.constants}

    # -- names and tensors --------------------------------------------------------
    def resolve(self, v: Value) -> Value:
        while id(v) in self.alias:
            v = self.alias[id(v)]
        return v

    def name(self, v: Value) -> str:
        v = self.resolve(v)
        if id(v) in self.constants and id(v) not in self.done_consts:
            from onnx import numpy_helper

            self.done_consts.add(id(v))
            self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(v.data), self.names[id(v)]))
        return self.names[id(v)]

    def fresh(self, hint: str) -> str:
        self.counter += 1
        return f"{hint}/qdq{self.counter}"

    def const(self, hint: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op_type: str, inputs: list[str], outputs: list[str], **attrs) -> None:
        from onnx import helper

        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=outputs[0], **attrs))

    def params(self, hint: str, q: QuantParams, zp_dtype, scale=None) -> tuple[list[str], dict]:
        """[scale, zero point] initializer names (scalars per tensor, [C] per channel) and the `axis` attribute."""
        scale = np.asarray(q.scale if scale is None else scale, np.float32)
        zp = np.asarray(q.zero_point, zp_dtype)
        if q.axis is None:
            return [self.const(hint + "/scale", scale.reshape(())), self.const(hint + "/zp", zp.reshape(()))], {}
        return [self.const(hint + "/scale", scale), self.const(hint + "/zp", zp)], {"axis": q.axis}

    def float_of(self, v: Value, scale=None) -> str:
        """The float tensor `v` stands for: itself if f32, else (once per value) its DequantizeLinear."""
        v = self.resolve(v)
        if v.type.dtype == "f32":
            return self.name(v)
        if id(v) not in self.dq:
            q = v.type.quant
            if q is None:
                raise UnsupportedOpError(f"cannot export the {v.type} tensor %{self.names[id(v)]} to ONNX: "
                                         "an integer tensor without quantization parameters")
            src = self.name(v)
            out = src + "/dq"
            inputs, axis = self.params(src, q, _np_dtype(v.type.dtype), scale)
            self.node("DequantizeLinear", [src, *inputs], [out], **axis)
            self.dq[id(v)] = out
        return self.dq[id(v)]

    def quantize_to(self, src: str, r: Value) -> None:
        """QuantizeLinear of the float tensor `src` onto `r`'s type."""
        inputs, axis = self.params(self.names[id(r)], r.type.quant, _np_dtype(r.type.dtype))
        self.node("QuantizeLinear", [src, *inputs], [self.names[id(r)]], **axis)

    def clamp(self, src: str, hint: str, lo: float, hi: float, out: str | None = None) -> str:
        """Relu for [0, inf], else Clip with the finite bounds; returns the output name."""
        out = out or self.fresh(hint)
        if lo == 0.0 and hi == math.inf:
            self.node("Relu", [src], [out])
            return out
        bounds = ["" if math.isinf(b) else self.const(hint + "/bound", np.array(b, np.float32)) for b in (lo, hi)]
        self.node("Clip", [src, *bounds], [out])
        return out

    # -- ops -------------------------------------------------------------------------
    def op(self, op: Op) -> None:
        if op.name == FUSED:
            for inner, outer in zip(op.body.inputs, op.operands, strict=True):
                self.alias[id(inner)] = outer
            for nested in op.body.ops:
                self.op(nested)
            self.alias[id(op.results[0])] = op.body.outputs[0]
            return
        handler = getattr(self, "op_" + op.name.removeprefix("qv."), None)
        if handler is None and op.name not in _FLOAT_OPS:
            raise UnsupportedOpError(f"cannot export {op.name} ({op.location}) to ONNX: no ONNX form for it yet")
        if handler is not None:
            handler(op)
            return
        self.node(_FLOAT_OPS[op.name], [self.float_of(v) for v in op.operands], [self.names[id(op.results[0])]],
                  **_attrs(op.attrs))

    def _plain(self, op: Op, onnx_op: str, extra: list[str] = (), **attrs) -> None:
        """An op that runs on its operand as it is (float or integer codes alike)."""
        self.node(onnx_op, [*(self.name(v) for v in op.operands), *extra], [self.names[id(op.results[0])]], **attrs)

    def plain_float_of(self, v: Value) -> str:
        """The float tensor `v` stands for, dequantized by Cast, Sub and Mul (DequantizeLinear's own arithmetic:
        (q - zp) * s in float32, exact up to the one rounding of the product) instead of DequantizeLinear.

        For the input of an fp32 conv/gemm: onnxruntime (>= 1.21, `WeightBiasQuantization`) reads
        DequantizeLinear -> Conv/Gemm -> [Relu/Clip] -> QuantizeLinear as a layer meant to be int8 and
        quantizes its float weights per tensor, which would undo the precision plan for exactly the
        layers qv2c kept fp32 because they are the most sensitive."""
        v = self.resolve(v)
        if v.owner is not None and v.owner.name == "qv.dequantize":
            v = self.resolve(v.owner.operands[0])
        if v.type.dtype == "f32":
            return self.name(v)
        q = v.type.quant
        if q is None or q.axis is not None:
            return self.float_of(v)
        src = self.name(v)
        cast = self.fresh(src + "/cast")
        self.node("Cast", [src], [cast], to=_elem_type("f32"))
        if q.zero_point[0]:
            shifted = self.fresh(src + "/minus_zp")
            self.node("Sub", [cast, self.const(src + "/zp", np.array(q.zero_point[0], np.float32))], [shifted])
            cast = shifted
        out = self.fresh(src + "/dequantized")
        self.node("Mul", [cast, self.const(src + "/scale", np.array(q.scale[0], np.float32))], [out])
        return out

    def _fp32_layer(self, op: Op, onnx_op: str) -> None:
        x, *rest = op.operands
        self.node(onnx_op, [self.plain_float_of(x), *(self.float_of(v) for v in rest)], [self.names[id(op.result)]],
                  **_attrs(op.attrs))

    def op_conv(self, op: Op) -> None:
        self._fp32_layer(op, "Conv")

    def op_gemm(self, op: Op) -> None:
        self._fp32_layer(op, "Gemm")

    def op_clip(self, op: Op) -> None:
        name = self.names[id(op.result)]
        self.clamp(self.float_of(op.operands[0]), name, op.attrs["min"], op.attrs["max"], out=name)

    def op_maxpool(self, op: Op) -> None:
        self._plain(op, "MaxPool", **_attrs(op.attrs))

    def op_avgpool(self, op: Op) -> None:
        self.node("AveragePool", [self.float_of(op.operands[0])], [self.names[id(op.result)]], **_attrs(op.attrs))

    def op_concat(self, op: Op) -> None:
        self._plain(op, "Concat", axis=op.attrs["axis"])

    def op_reshape(self, op: Op) -> None:
        shape = self.const(self.names[id(op.result)] + "/shape", np.asarray(op.attrs["shape"], np.int64))
        self._plain(op, "Reshape", [shape])

    def op_transpose(self, op: Op) -> None:
        self._plain(op, "Transpose", perm=list(op.attrs["perm"]))

    def op_permute_channels(self, op: Op) -> None:
        order = self.const(self.names[id(op.result)] + "/order", np.asarray(op.attrs["order"], np.int64))
        self._plain(op, "Gather", [order], axis=1)

    def op_pad(self, op: Op) -> None:
        x = op.operands[0]
        hint = self.names[id(op.result)]
        pads = self.const(hint + "/pads", np.asarray(op.attrs["pads"], np.int64))
        dtype = _np_dtype(x.type.dtype)
        value = op.attrs["value"]
        code = (quantize(np.asarray([value], np.float32), x.type.quant, x.type.dtype) if x.type.quant is not None
                else np.asarray([value], dtype))
        self._plain(op, "Pad", [pads, self.const(hint + "/value", code.astype(dtype).reshape(()))],
                    mode=op.attrs["mode"])

    def op_quantize(self, op: Op) -> None:
        self.quantize_to(self.float_of(op.operands[0]), op.result)

    def op_dequantize(self, op: Op) -> None:
        # the DequantizeLinear `float_of` makes (once per integer value) is the result itself
        self.names[id(op.result)] = self.float_of(op.operands[0])

    def op_requantize(self, op: Op) -> None:
        self.quantize_to(self.float_of(op.operands[0]), op.result)

    def _int8_layer(self, op: Op, onnx_op: str, **attrs) -> None:
        """Conv/Gemm on dequantized input and weight, int32 bias dequantized at s_x * s_w[c], act, quantize."""
        x, w = op.operands[:2]
        inputs = [self.float_of(x), self.float_of(w)]
        if len(op.operands) == 3:
            b = self.resolve(op.operands[2])
            channels = w.type.shape[0]
            s_w = np.broadcast_to(np.asarray(w.type.quant.scale, np.float32), (channels,))
            s_b = np.float32(x.type.quant.scale[0]) * s_w
            bq = QuantParams(tuple(s_b.tolist()), (0,) * channels, 0)
            src = self.name(b)
            inputs.append(src + "/dq")
            params, axis = self.params(src, bq, np.int32, s_b)
            self.node("DequantizeLinear", [src, *params], [src + "/dq"], **axis)
        hint = self.names[id(op.result)]
        out = self.fresh(hint)
        self.node(onnx_op, inputs, [out], **attrs)
        self.finish(op, out)

    def finish(self, op: Op, out: str) -> None:
        """The activation epilogue of an integer op, then QuantizeLinear onto its result."""
        act = _ACT[op.attrs.get("act", "none")]
        if act is not None and not _saturation_covers(op.result, *act):
            out = self.clamp(out, self.names[id(op.result)], *act)
        self.quantize_to(out, op.result)

    def op_qconv(self, op: Op) -> None:
        self._int8_layer(op, "Conv", **_attrs({k: v for k, v in op.attrs.items() if k not in ("act", "requant")}))

    def op_qgemm(self, op: Op) -> None:
        self._int8_layer(op, "Gemm", transB=1)

    def op_qadd(self, op: Op) -> None:
        out = self.fresh(self.names[id(op.result)])
        self.node("Add", [self.float_of(v) for v in op.operands], [out])
        self.finish(op, out)

    def op_qavgpool(self, op: Op) -> None:
        out = self.fresh(self.names[id(op.result)])
        self.node("AveragePool", [self.float_of(op.operands[0])], [out], **_attrs(op.attrs))
        self.quantize_to(out, op.result)

    def op_qglobal_avgpool(self, op: Op) -> None:
        out = self.fresh(self.names[id(op.result)])
        self.node("GlobalAveragePool", [self.float_of(op.operands[0])], [out])
        self.quantize_to(out, op.result)

    def op_qclip(self, op: Op) -> None:
        out = self.clamp(self.float_of(op.operands[0]), self.names[id(op.result)], op.attrs["min"], op.attrs["max"])
        self.quantize_to(out, op.result)


def _saturation_covers(r: Value, lo: float, hi: float) -> bool:
    """Whether QuantizeLinear onto `r`'s type already clamps as the activation [lo, hi] would: qv2c clamps
    codes to [quantize(lo), quantize(hi)], a no-op when those are the dtype's bounds. Leaving such a
    Relu/Clip out keeps the graph a plain DQ -> Conv -> Q group, which onnxruntime runs as its integer
    QLinearConv (it removes a Clip itself only when the float range of the codes lies inside [lo, hi],
    which a relu6 output quantized with scale 6/255 misses by a rounding)."""
    codes = quantize(np.asarray([lo, hi], np.float32), r.type.quant, r.type.dtype)
    qmin, qmax = qrange(r.type.dtype)
    return int(codes[0]) <= qmin and int(codes[1]) >= qmax


def _attrs(attrs: dict) -> dict:
    """qv attributes under their ONNX names (ints, floats and int lists pass as they are)."""
    return {_ATTR_NAMES.get(k, k): (list(v) if isinstance(v, (list, tuple)) else v) for k, v in attrs.items()}


def _np_dtype(dtype: str):
    return {"u8": np.uint8, "i8": np.int8, "i32": np.int32, "f32": np.float32}[dtype]
