"""`realize-quant`: rewrite an fp32 module into a mixed int8/fp32 module.

Given which layers run int8 and the calibrated range of every activation, build a
new module in which each int8 layer is an integer op (`qv.qconv`, `qv.qgemm`) with
int8 weights, int32 bias and requantization to its output's scale, and every other
op keeps fp32. Quantize/dequantize ops appear only where precision changes:

    before:  %y = qv.conv(%x, %w, %b) ... ; %r = qv.relu(%y) ; %p = qv.maxpool(%r) ; %z = qv.conv(%p, ...)
    after:   %xq = qv.quantize(%x) : u8[..]{scale = .., zp = ..}
             %r = qv.qconv(%xq, %wq, %bq) {act = "relu", ...} : u8[..]{...}
             %p = qv.maxpool(%r) : u8[..]{...}          # int8 passes through
             %z = qv.qconv(%p, ...)                        # no dequantize/quantize in between

Rules, applied in program order with two maps (the fp32 and the integer version of
each original value, created lazily):
- an int8 layer asks for its input's integer version (a `qv.quantize` is inserted
  only if none exists yet) and fuses a following ReLU/ReLU6 into its requantization;
- data-movement ops (max-pool, reshape, transpose, channel permutation, concat, ReLU/clip) run on integers
  whenever their inputs already are, keeping the input's scale; so does a constant pad
  with value 0 (real 0 is exactly the zero point, so the int8 pad fills with it and
  the island is not cut by a dequantize/pad/quantize round trip), and so does a reflect,
  edge or wrap pad (it only copies elements); a constant pad with another value (which
  would be rounded to the input's grid, or clipped by its range) stays fp32;
- residual add, average pool and global average pool run in int8 when all their
  inputs already are;
- every other op asks for fp32 versions (a `qv.dequantize` is inserted once per
  value) and stays fp32; module outputs are fp32.

With `placement="per-op"` every integer result is immediately dequantized and never
reused as an integer, which is what framework-level "fake" mixed precision does;
the placement benchmark compares the two on the same assignment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qv2c.errors import ConfigError
from qv2c.ir import quant_math
from qv2c.ir.builder import Builder
from qv2c.ir.core import Module, Op, Value
from qv2c.ir.printer import value_names
from qv2c.ir.types import QuantParams, TensorType
from qv2c.passes.layers import is_quantizable_layer, layer_name

PLACEMENTS = ("boundary", "per-op")
GRANULARITIES = ("per-channel", "per-tensor")
SCALE_KINDS = ("float", "power-of-2")
_INT_PASSTHROUGH = ("qv.maxpool", "qv.reshape", "qv.transpose", "qv.permute_channels")


def _check_shifts(op: Op, s_in: float, s_w, s_out: float) -> None:
    """Refuse an int8 layer whose power-of-2 requantization needs a shift the integer epilogue cannot
    do (a one-line ConfigError naming the layer, for every backend), rather than failing later."""
    try:
        quant_math.requantize_shifts(quant_math.requantize_multiplier(s_in, np.asarray(s_w), s_out))
    except ValueError as e:
        raise ConfigError(f"{op.location}: {e}; keep this layer in fp32 (keep_fp32=[...])") from None


@dataclass(frozen=True)
class QuantScheme:
    """How tensors are quantized (the same for every int8 layer of a model)."""

    weight_granularity: str = "per-channel"
    scale_kind: str = "float"
    activation_dtype: str = "u8"

    def __post_init__(self) -> None:
        if self.weight_granularity not in GRANULARITIES:
            raise ConfigError(f"weight_granularity must be one of {GRANULARITIES}, not {self.weight_granularity!r}")
        if self.scale_kind not in SCALE_KINDS:
            raise ConfigError(f"scale_kind must be one of {SCALE_KINDS}, not {self.scale_kind!r}")
        if self.activation_dtype not in ("u8", "i8"):
            raise ConfigError(f"activation dtype must be 'u8' or 'i8', not {self.activation_dtype!r}")


@dataclass
class Realized:
    """The mixed module plus where each int8 layer's input and output ended up."""

    module: Module
    #: layer name -> (printed name of the original fp32 value, new integer value)
    layer_outputs: dict[str, tuple[str, Value]] = field(default_factory=dict)
    layer_inputs: dict[str, tuple[str, Value]] = field(default_factory=dict)
    #: id of every value of the mixed module -> printed name of the fp32 value it stands for
    #: (its integer, dequantized or requantized version alike)
    sources: dict[int, str] = field(default_factory=dict)


def realize_quant(
    module: Module,
    int8_layers: set[str],
    ranges: dict[str, tuple[float, float]],
    scheme: QuantScheme = QuantScheme(),
    placement: str = "boundary",
) -> Realized:
    """Return a new module where the layers named in `int8_layers` run in int8."""
    if placement not in PLACEMENTS:
        raise ConfigError(f"placement must be one of {PLACEMENTS}, not {placement!r}")
    return _Realizer(module, int8_layers, ranges, scheme, placement).run()


class _Realizer:
    def __init__(self, src: Module, int8_layers, ranges, scheme: QuantScheme, placement: str):
        self.src, self.int8_layers, self.scheme, self.placement = src, set(int8_layers), scheme, placement
        self.names = value_names(src)
        self.ranges = _unify_concat_ranges(src, ranges, self.names)
        self.dst = Module(src.name)
        self.b = Builder(self.dst)
        self.f32: dict[int, Value] = {}
        self.q: dict[int, Value] = {}
        self.fused_away: set[int] = set()
        self.out = Realized(self.dst)

    # -- value versions -------------------------------------------------------
    def name(self, v: Value) -> str:
        return self.names[id(v)]

    def act_params(self, v: Value) -> QuantParams:
        try:
            lo, hi = self.ranges[self.name(v)]
        except KeyError:
            raise ConfigError(f"no calibrated range for value %{self.name(v)}; calibrate the same module") from None
        return quant_math.choose_activation_params(lo, hi, self.scheme.activation_dtype, self.scheme.scale_kind)

    def need_f32(self, v: Value) -> Value:
        if id(v) not in self.f32:
            qv = self.q[id(v)]
            self.f32[id(v)] = self.b.op("qv.dequantize", [qv], result_names=[f"{self.name(v)}_dq"])
        return self.f32[id(v)]

    def need_q(self, v: Value) -> Value:
        if id(v) not in self.q:
            x = self.need_f32(v)
            t = TensorType(v.type.shape, self.scheme.activation_dtype, self.act_params(v))
            self.q[id(v)] = self.b.create("qv.quantize", [x], result_types=[t], result_names=[f"{self.name(v)}_q"]).result
        return self.q[id(v)]

    def set_int(self, old: Value, new: Value) -> None:
        """Record `new` as the integer version of `old` (or, per-op, dequantize it at once)."""
        if self.placement == "per-op":
            self.f32[id(old)] = self.b.op("qv.dequantize", [new], result_names=[f"{self.name(old)}_dq"])
        else:
            self.q[id(old)] = new

    # -- driver ---------------------------------------------------------------
    def run(self) -> Realized:
        for v in self.src.inputs:
            nv = self.dst.add_input(Value(v.type, v.name))
            self.f32[id(v)] = nv
        for c in self.src.constants:
            self.f32[id(c)] = self.dst.add_constant(c.data, c.name, c.type)
        for op in self.src.ops:
            if id(op) in self.fused_away:
                continue
            if is_quantizable_layer(op) and layer_name(op) in self.int8_layers:
                self.quantized_layer(op)
            elif op.name in _INT_PASSTHROUGH and id(op.operands[0]) in self.q:
                self.passthrough(op)
            elif op.name == "qv.pad" and id(op.operands[0]) in self.q and _int_pad(op, self.q[id(op.operands[0])]):
                self.passthrough(op)
            elif op.name in ("qv.relu", "qv.clip") and id(op.operands[0]) in self.q:
                self.int_clip(op)
            elif op.name == "qv.concat" and all(id(v) in self.q for v in op.operands):
                self.int_concat(op)
            elif op.name == "qv.add" and all(id(v) in self.q for v in op.operands) and self.placement == "boundary":
                self.int_add(op)
            elif op.name in ("qv.global_avgpool", "qv.avgpool") and id(op.operands[0]) in self.q and self.placement == "boundary":
                self.int_pool(op)
            else:
                self.fp32_op(op)
        self.dst.outputs = [self.need_f32(v) for v in self.src.outputs]
        for new, old in zip(self.dst.outputs, self.src.outputs):
            new.name = old.name
        self.dst.remove_unused_constants()
        self._record_sources()
        return self.out

    def _record_sources(self) -> None:
        """Name the fp32 value each value of the mixed module stands for (`Realized.sources`)."""
        sources = self.out.sources
        for versions in (self.f32, self.q):
            sources.update((id(new), self.names[old]) for old, new in versions.items() if old in self.names)
        for op in self.dst.ops:  # requantized concat operands stand for what they requantize
            if op.name == "qv.requantize" and id(op.operands[0]) in sources:
                sources[id(op.result)] = sources[id(op.operands[0])]

    def clone(self, op: Op, operands: list[Value], result_type: TensorType | None = None, **extra) -> Value:
        types = [result_type] if result_type is not None else None
        return self.b.create(op.name, operands, result_types=types, meta=op.meta,
                             result_names=[r.name for r in op.results], **{**op.attrs, **extra}).result

    def fp32_op(self, op: Op) -> None:
        new = self.b.create(op.name, [self.need_f32(v) for v in op.operands], meta=op.meta,
                            result_names=[r.name for r in op.results], **op.attrs)
        for old, r in zip(op.results, new.results):
            self.f32[id(old)] = r

    # -- integer rewrites -----------------------------------------------------
    def fused_activation(self, op: Op, allowed: tuple[str, ...] = ("relu", "relu6")) -> tuple[Value, str]:
        """The value a layer's int8 result stands for, and the activation (one of `allowed`) fused into it."""
        r = op.result
        users = r.users
        if len(users) != 1 or r in self.src.outputs or len(r.uses) != 1:
            return r, "none"
        act = users[0]
        kind = _activation_kind(act)
        if kind not in allowed:
            return r, "none"
        self.fused_away.add(id(act))
        return act.result, kind

    def quantized_layer(self, op: Op) -> None:
        x_old = op.operands[0]
        xq = self.need_q(x_old)
        out_old, act = self.fused_activation(op)
        w, bias = _layer_weights(op)
        wq, wparams = quant_math.quantize_weights(w, self.scheme.weight_granularity, axis=0, scale_kind=self.scheme.scale_kind)
        sx = xq.type.quant.scale[0]
        wname = op.operands[1].name or layer_name(op)
        wc = self.dst.add_constant(wq, f"{wname}_q", TensorType(wq.shape, "i8", wparams))
        operands = [xq, wc]
        if bias is not None:
            bq = quant_math.quantize_bias(bias, sx, np.asarray(wparams.scale))
            bscale = tuple(float(sx * s) for s in wparams.scale)
            bparams = QuantParams(bscale, (0,) * len(bscale), 0 if wparams.per_channel else None)
            operands.append(self.dst.add_constant(bq, f"{wname}_bias_q", TensorType(bq.shape, "i32", bparams)))
        out_type = TensorType(out_old.type.shape, self.scheme.activation_dtype, self.act_params(out_old))
        requant = "shift" if self.scheme.scale_kind == "power-of-2" else "float"
        if requant == "shift":
            _check_shifts(op, sx, wparams.scale, out_type.quant.scale[0])
        if op.name == "qv.conv":
            attrs = {k: op.attrs[k] for k in ("strides", "pads", "dilations", "group")}
            new = self.b.create("qv.qconv", operands, result_types=[out_type], meta=op.meta,
                                result_names=[out_old.name], act=act, requant=requant, **attrs).result
        else:
            new = self.b.create("qv.qgemm", operands, result_types=[out_type], meta=op.meta,
                                result_names=[out_old.name], act=act, requant=requant).result
        name = layer_name(op)
        self.out.layer_inputs[name] = (self.name(x_old), xq)
        self.out.layer_outputs[name] = (self.name(out_old), new)
        self.set_int(out_old, new)

    def passthrough(self, op: Op) -> None:
        x = self.q[id(op.operands[0])]
        t = TensorType(op.result.type.shape, x.type.dtype, x.type.quant)
        self.set_int(op.result, self.clone(op, [x], t))

    def int_clip(self, op: Op) -> None:
        x = self.q[id(op.operands[0])]
        lo, hi = (0.0, np.inf) if op.name == "qv.relu" else (op.attrs["min"], op.attrs["max"])
        t = TensorType(op.result.type.shape, x.type.dtype, x.type.quant)
        new = self.b.create("qv.qclip", [x], result_types=[t], meta=op.meta, result_names=[op.result.name],
                            min=float(lo), max=float(hi)).result
        self.set_int(op.result, new)

    def int_concat(self, op: Op) -> None:
        params = self.act_params(op.result)
        dtype = self.scheme.activation_dtype
        ins = [self.requantized(self.q[id(v)], params, dtype) for v in op.operands]
        t = TensorType(op.result.type.shape, dtype, params)
        self.set_int(op.result, self.clone(op, ins, t))

    def requantized(self, x: Value, params: QuantParams, dtype: str) -> Value:
        if x.type.quant == params and x.type.dtype == dtype:
            return x
        t = TensorType(x.type.shape, dtype, params)
        return self.b.create("qv.requantize", [x], result_types=[t]).result

    def int_add(self, op: Op) -> None:
        a, b = (self.q[id(v)] for v in op.operands)
        if a.type.shape != b.type.shape:
            return self.fp32_op(op)
        # qv.qadd's epilogue has no relu6 (quant_ops.py): a following clip(0, 6) is not fused and
        # runs as its own qv.qclip on the sum
        out_old, act = self.fused_activation(op, allowed=("relu",))
        t = TensorType(out_old.type.shape, self.scheme.activation_dtype, self.act_params(out_old))
        new = self.b.create("qv.qadd", [a, b], result_types=[t], meta=op.meta, result_names=[out_old.name], act=act).result
        self.set_int(out_old, new)

    def int_pool(self, op: Op) -> None:
        x = self.q[id(op.operands[0])]
        t = TensorType(op.result.type.shape, self.scheme.activation_dtype, self.act_params(op.result))
        name = "qv.qglobal_avgpool" if op.name == "qv.global_avgpool" else "qv.qavgpool"
        new = self.b.create(name, [x], result_types=[t], meta=op.meta, result_names=[op.result.name], **op.attrs).result
        self.set_int(op.result, new)


def _int_pad(op: Op, x: Value) -> bool:
    """True for a pad that runs on the integer codes of `x` exactly, `x` quantized per tensor: constant
    mode with value 0 (its code is the zero point), or a mode that copies elements (reflect, edge, wrap)."""
    copies = op.attrs["mode"] in ("reflect", "edge", "wrap")
    return (copies or op.attrs["value"] == 0.0) and not x.type.quant.per_channel


def _activation_kind(op: Op) -> str:
    """'relu' / 'relu6' when `op` is an activation an int8 layer can fuse, else 'none'."""
    if op.name == "qv.relu":
        return "relu"
    if op.name == "qv.clip" and op.attrs.get("min") == 0.0 and op.attrs.get("max") == 6.0:
        return "relu6"
    if op.name == "qv.clip" and op.attrs.get("min") == 0.0 and op.attrs.get("max") == np.inf:
        return "relu"
    return "none"


def _layer_weights(op: Op) -> tuple[np.ndarray, np.ndarray | None]:
    """Weights as [out_channels, ...] and the bias (or None), folding Gemm's alpha/beta/transpose."""
    w = op.operands[1].data.astype(np.float32)
    bias = op.operands[2].data.astype(np.float32) if len(op.operands) == 3 else None
    if op.name == "qv.gemm":
        if not op.attrs.get("trans_b", 0):
            w = w.T
        w = np.ascontiguousarray(w * np.float32(op.attrs.get("alpha", 1.0)))
        if bias is not None:
            n = w.shape[0]
            bias = np.broadcast_to(bias * np.float32(op.attrs.get("beta", 1.0)), (1, n)).reshape(n).copy()
    return w, bias


def _unify_concat_ranges(module: Module, ranges: dict, names: dict[int, str]) -> dict:
    """Give every input of an int8-able concat the concat's output range, so the
    producers requantize straight into the concat's scale and no `qv.requantize`
    is needed (the concat's range covers each input's range by construction)."""
    out = dict(ranges)
    for op in module.ops:
        if op.name == "qv.concat" and names[id(op.result)] in ranges:
            for v in op.operands:
                if names[id(v)] in out:
                    out[names[id(v)]] = ranges[names[id(op.result)]]
    return out
