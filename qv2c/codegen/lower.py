"""Lower a (fused) mixed-precision module to a `Program` of `KernelSpec`s.

One pass over the top-level ops, in program order:

- a `qv.fused` conv/GEMM group (decoded by `ir.fused.fused_parts`), or a lone
  anchor the kernels run (`ir.fused.is_anchor`, in the "per-op"/"boundary" placements),
  becomes one call of a hand-written kernel with its epilogue
  (`qv2c/runtime/kernels/`): weights packed once here, per-channel multipliers and
  int32 biases computed here, everything else a literal;
- an elementwise `qv.fused` chain becomes one generated kernel (`elementwise.py`), or, where an op
  of it has no per-element step there, runs its body ops one by one;
- every other op is lowered by `standalone.py` to a small kernel of
  `qv2c/runtime/ops_*.py`; if none fits, lowering fails naming the op (`fallback`),
  unless the debugging backend (`runtime/fallback.py`) runs it through its reference.

Layout (`layout.py`): every rank-4 activation is NHWC inside the program; model inputs
are converted from NCHW once at the start, rank-4 outputs back at the end, and rank-4
constants read as activations are stored NHWC.  Buffers are numbered here and planned
by the runtime; a reshape alias, the [M, 1, 1, K] view of an FC layer or a concat row
view is a `BufferSpec` view of another buffer, not a copy.

Numerics: integer outputs are bit-exact with the reference interpreter, and so is
every fp32 value computed from integers.  An int8 group ending in a dequantize
(`qv.qconv+qv.dequantize[+qv.add][+qv.relu|qv.clip]`) runs by default as the int8
kernel requantizing into its own int8 grid, then one elementwise pass doing the
dequantize, add and clamp (`ops_quant.dequantize_epilogue_flat`): exactly the IR,
whose logits are rounded to that grid (a top-1 computed from them must not depend on
how ties break).  With `exact=False` the kernel's dequantize epilogue computes fp32
straight from the accumulator instead (see `passes/fuse.py`): one pass fewer, and
without a residual its clamp includes the grid's range, so it differs from the IR
only by the int8 rounding it skips.

    before:  %r = qv.fused(%x, %w, %b, %skip) {pattern = "qv.qconv+qv.qadd"} : u8[1,64,8,8]{...}
    after:   KernelSpec(kernel="qv2c.runtime.kernels.conv_i8:conv2d_i8_requant",
                        args=(("x", Buf(3)), ("zx", 0), ("w", Const(4)), ..., ("res", Buf(2)), ("has_res", True), ...))
"""

from __future__ import annotations

import math

import numpy as np

from qv2c.codegen.elementwise import chain_of
from qv2c.codegen.kernel_desc import Epilogue, KernelDesc
from qv2c.codegen.layout import physical_shape, step_shape
from qv2c.codegen.standalone import LOWERERS, quant_of
from qv2c.errors import QV2CError
from qv2c.ir.core import Module, Op, Value
from qv2c.ir.fused import FUSED, FusedParts, fused_parts, is_anchor
from qv2c.ir.printer import value_names
from qv2c.ir.quant_math import activation_bounds, bias_scales, qrange, requantize_multiplier, requantize_shifts
from qv2c.runtime.kernels import packing
from qv2c.runtime.kernels.target import TargetSpec, selected_target
from qv2c.runtime.program import (
    GENERATED,
    TO_NHWC,
    Arg,
    Buf,
    BufferSpec,
    Const,
    ConstSpec,
    KernelSpec,
    Program,
    apply_view,
)
from qv2c.runtime.program import KERNELS as _K
from qv2c.runtime.program import RUNTIME as _R

#: elements touched (times window taps for pools) from which a simple kernel runs its parallel loop.
#: 512 k while idle workers slept at once (a wake-up cost ~50 us); with them spinning between kernels
#: (`runtime/kernels/__init__.py`) 64 k made SqueezeNet fp32 0.90x the time and left SqueezeNet and
#: MobileNetV2 int8 and ResNet18-CIFAR int8 within 3 % (interleaved A/B, results/ab_compare.md)
PARALLEL_MIN_WORK = 1 << 16
_INF = math.inf
_POINTWISE = (1, 1, 1, 1, 0, 0, 1, 1)  # kh kw sh sw pt pl dh dw of a 1x1 conv (FC layers as convs)


def lower(module: Module, exact: bool = True, target: TargetSpec | None = None) -> Program:
    """The kernel program of `module` (verified IR, optionally after the `fuse` pass).

    `exact=False` lets an int8 group ending in a dequantize compute fp32 straight from its
    accumulators (one pass fewer; the results then differ from the IR by up to half an
    int8 step, see the module docstring); `exact=True` rounds to the int8 grid first.
    `target` (`runtime.kernels.target`) is what the conv/GEMM micro-kernels and the int8 weight
    packing are generated for; by default `QV2C_TARGET` or the host's best.
    """
    return _Lowerer(module, exact, target).run()


def _compose_clamps(first: tuple[float, float], second: tuple[float, float]) -> tuple[float, float]:
    """[lo, hi] with clamp(v, lo, hi) == clamp(clamp(v, *first), *second)."""
    (a, b), (c, d) = first, second
    lo, hi = max(a, c), min(b, d)
    if lo > hi:  # disjoint: the result is a constant
        k = c if b < c else d
        return k, k
    return lo, hi


def _gemm_weight_bias(attrs: dict, w: np.ndarray, b: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """fp32 Gemm weight as [N, K] and bias [N], with alpha and beta folded in
    (what `realize_quant._layer_weights` does for int8 layers)."""
    w = w.astype(np.float32)
    if not attrs.get("trans_b", 0):
        w = w.T
    w = np.ascontiguousarray(w * np.float32(attrs.get("alpha", 1.0)))
    if b is None:
        return w, np.zeros(n, np.float32)
    bias = np.broadcast_to(b.astype(np.float32) * np.float32(attrs.get("beta", 1.0)), (1, n)).reshape(n)
    return w, np.ascontiguousarray(bias, dtype=np.float32)


def _single_parts(op: Op) -> FusedParts:
    """A lone anchor described as a one-op group (no residual, clamp or boundary)."""
    act = op.attrs.get("act", "none") if op.name in ("qv.qconv", "qv.qgemm") else "none"
    return FusedParts(op.name, (op,), op, act, None, "none", (-_INF, _INF), "none", op.result.type)


def _requant_factors(anchor: Op, mult: np.ndarray) -> np.ndarray:
    """What the int8 kernels take as `mult`: the float32 multipliers M[c] ("float" requantization),
    or int32 shifts s[c] with M[c] = 2**-s[c] ("shift"; the kernels then requantize in integers)."""
    if anchor.attrs.get("requant", "float") == "float":
        return mult
    try:
        return requantize_shifts(mult).astype(np.int32)
    except ValueError as e:
        raise QV2CError(f"{anchor.location}: {e}; keep this layer in fp32 (keep_fp32=[...])") from None


def _is_depthwise(anchor: Op, w: np.ndarray) -> bool:
    g = anchor.attrs.get("group", 1)
    return g > 1 and w.shape[1] == 1 and w.shape[0] == g


class _Lowerer:
    def __init__(self, module: Module, exact: bool = True, target: TargetSpec | None = None):
        self.module = module
        self.exact = exact
        self.target = target or selected_target()
        self._target_const: Const | None = None
        self.names = value_names(module)
        self.buffers: list[BufferSpec] = []
        self.consts: list[ConstSpec] = []
        self.kernels: list[KernelSpec] = []
        #: id(value) -> its physical location
        self.where: dict[int, Buf | Const] = {}
        #: id(body input) -> the outer value it stands for
        self.alias: dict[int, Value] = {}
        self._views: dict[tuple, Buf | Const] = {}
        self._no_residual: Const | None = None
        self.label = ""
        #: kernels generated for this program: function name -> source (`elementwise.py`)
        self.generated: dict[str, str] = {}

    # -- driver ----------------------------------------------------------------------
    def run(self) -> Program:
        inputs = [self.ingest(v) for v in self.module.inputs]
        for op in self.module.ops:
            self.lower_op(op)
        outputs = [self.egress(v) for v in self.module.outputs]
        return Program(self.module.name, tuple(self.kernels), tuple(self.buffers), tuple(self.consts),
                       tuple(inputs), tuple(outputs), tuple(sorted(self.generated.items())))

    def lower_op(self, op: Op) -> None:
        node = op.meta.get("onnx_node")
        pattern = op.attrs.get("pattern", op.name) if op.name == FUSED else op.name
        self.label = f"%{self.names.get(id(op.results[0]), '?')} = {pattern}" + (f" ({node})" if node else "")
        if op.name == FUSED:
            self.lower_fused(op)
        elif is_anchor(op) and self.lower_anchor(op, _single_parts(op), op.operands):
            pass
        else:
            lowerer = LOWERERS.get(op.name)
            if lowerer is None or not lowerer(self, op):
                self.fallback(op)

    def lower_fused(self, op: Op) -> None:
        parts = fused_parts(op)
        for inner, outer in zip(op.body.inputs, op.operands):
            self.alias[id(inner)] = self.resolve(outer)
        if parts.anchor is not None and self.lower_anchor(op, parts, op.body.inputs):
            return
        if parts.anchor is None and self.lower_chain(op):
            return
        label = self.label
        for inner_op in op.body.ops:
            self.lower_op(inner_op)
            self.label = label
        self.where[id(op.result)] = self.operand(op.body.outputs[0])

    def lower_chain(self, op: Op) -> bool:
        """An elementwise `qv.fused` chain as one generated kernel (False: not every op has a step)."""
        chain = chain_of(op.body.ops)
        if chain is None or op.body.outputs[0] is not op.body.ops[-1].result:
            return False
        x, out = self.operand(op.body.ops[0].operands[0]), self.result_buf(op)
        self.generated.setdefault(chain.name, chain.source())
        args = [("x", self.flat(x)), ("out", self.flat(out))]
        args += list(zip(chain.param_names, chain.params))
        self.emit(f"{GENERATED}:{chain.name}", args + [("parallel", self.parallel(op.result.type.size))],
                  [self.flat(out)])
        return True

    # -- values, buffers, constants ---------------------------------------------------------
    def resolve(self, v: Value) -> Value:
        return self.alias.get(id(v), v)

    def name(self, v: Value) -> str:
        return self.names.get(id(v), v.name or "?")

    def new_buf(self, shape, dtype: str, name: str, layout: str | None = None, role: str = "temp") -> Buf:
        shape = tuple(int(d) for d in shape)
        layout = layout or ("nhwc" if len(shape) == 4 else "plain")
        self.buffers.append(BufferSpec(len(self.buffers), shape, dtype, layout, name, role=role))
        return Buf(len(self.buffers) - 1)

    def result_buf(self, op: Op, v: Value | None = None) -> Buf:
        v = v if v is not None else op.result
        buf = self.new_buf(physical_shape(v.type.shape), v.type.dtype, self.name(v))
        self.where[id(v)] = buf
        return buf

    def const(self, data: np.ndarray, name: str) -> Const:
        self.consts.append(ConstSpec(name, np.array(data, order="C", copy=True)))
        return Const(len(self.consts) - 1)

    def const_obj(self, obj, name: str) -> Const:
        self.consts.append(ConstSpec(name, obj))
        return Const(len(self.consts) - 1)

    def target_arg(self) -> tuple[str, Const]:
        """The `tgt` argument of the conv/GEMM kernels: the marker of the target they are generated for."""
        if self._target_const is None:
            self._target_const = self.const_obj(self.target.marker(), f"target {self.target.label}")
        return ("tgt", self._target_const)

    def operand(self, v: Value) -> Buf | Const:
        """Where the value `v` (an activation, or a constant read as one) lives, in program layout."""
        v = self.resolve(v)
        if id(v) not in self.where:
            if not v.is_constant:
                raise ValueError(f"value %{self.name(v)} is read before it is computed")
            self.where[id(v)] = self.const(np.ascontiguousarray(v.data.transpose(TO_NHWC)) if v.data.ndim == 4
                                           else v.data, self.name(v))
        return self.where[id(v)]

    def shape_of(self, ref: Buf | Const) -> tuple[int, ...]:
        return self.buffers[ref.id].shape if isinstance(ref, Buf) else self.consts[ref.id].data.shape

    def view(self, ref: Buf | Const, *steps) -> Buf | Const:
        """A view of a buffer (no memory of its own) or a reshaped/permuted constant."""
        steps = tuple((k, tuple(tuple(int(i) for i in box) for box in arg) if k == "slice"
                       else tuple(int(i) for i in arg)) for k, arg in steps)
        key = (type(ref).__name__, ref.id, steps)
        if key in self._views:
            return self._views[key]
        if isinstance(ref, Const):
            c = self.consts[ref.id]
            out = self.const(np.ascontiguousarray(apply_view(c.data, steps)), c.name)
        else:
            spec = self.buffers[ref.id]
            shape = spec.shape
            for s in steps:
                shape = step_shape(shape, s)
            base = spec.base if spec.base is not None else spec.id
            self.buffers.append(BufferSpec(len(self.buffers), shape, spec.dtype, "view", spec.name, base,
                                           spec.view + steps))
            out = Buf(len(self.buffers) - 1)
        self._views[key] = out
        return out

    def flat(self, ref: Buf | Const) -> Buf | Const:
        return self.view(ref, ("reshape", (int(np.prod(self.shape_of(ref), dtype=np.int64)),)))

    def emit(self, kernel: str, args: list[tuple[str, Arg]], writes: list[Buf], desc: KernelDesc | None = None) -> None:
        written = {b.id for b in writes}
        reads = tuple(sorted({a.id for _, a in args if isinstance(a, Buf) and a.id not in written}))
        self.kernels.append(KernelSpec(kernel, tuple(args), reads, tuple(sorted(written)), self.label, desc))

    # -- model boundary --------------------------------------------------------------------
    def ingest(self, v: Value) -> tuple[str, int, str, tuple[int, ...]]:
        """The caller's array goes into a slot read only here: copied (NCHW -> NHWC for rank 4) into a planned buffer."""
        self.label = f"input %{self.name(v)}"
        shape = v.type.shape
        slot = self.new_buf(shape, v.type.dtype, self.name(v), "nchw" if len(shape) == 4 else "plain", role="input")
        buf = self.result_buf(None, v)
        if len(shape) == 4:
            self.emit(_R + "ops_layout:nchw_to_nhwc", [("x", slot), ("out", buf),
                                                       ("parallel", self.parallel(v.type.size))], [buf])
        else:
            self.emit(_R + "ops_layout:copy_nd", [("src", slot), ("dst", buf)], [buf])
        return v.name, slot.id, v.type.dtype, shape

    def egress(self, v: Value) -> tuple[str, int]:
        """A buffer holding output `v` in the model's layout (NHWC -> NCHW for rank 4)."""
        self.label = f"output %{self.name(v)}"
        ref = self.operand(v)
        name = v.name or self.name(v)
        if len(v.type.shape) == 4:
            out = self.new_buf(v.type.shape, v.type.dtype, name, "nchw", role="output")
            self.emit(_R + "ops_layout:nhwc_to_nchw", [("x", ref), ("out", out),
                                                       ("parallel", self.parallel(v.type.size))], [out])
        elif isinstance(ref, Const):
            out = self.new_buf(v.type.shape, v.type.dtype, name, role="output")
            self.emit(_R + "ops_layout:copy_nd", [("src", ref), ("dst", out)], [out])
        else:
            out = ref
        return name, out.id

    # -- conv / gemm groups ----------------------------------------------------------------
    def lower_anchor(self, op: Op, parts: FusedParts, operands) -> bool:
        """One kernel call for an anchor and its epilogue; False if no kernel fits (then op by op)."""
        a = parts.anchor
        w_val = self.resolve(a.operands[1])
        b_val = self.resolve(a.operands[2]) if len(a.operands) == 3 else None
        if not w_val.is_constant or (b_val is not None and not b_val.is_constant):
            return False
        x = self.operand(a.operands[0])
        res_val = self.resolve(operands[parts.residual]) if parts.residual is not None else None
        res = self.operand(res_val) if res_val is not None else None
        out = self.result_buf(op)
        w, b, wname = w_val.data, (b_val.data if b_val is not None else None), self.name(w_val)
        if a.name == "qv.conv":
            self._conv_f32(a, parts, x, w, b, wname, res, out)
        elif a.name == "qv.gemm":
            self._gemm_f32(a, parts, x, w, b, wname, res, out)
        else:
            self._int8_anchor(a, parts, x, w, b, wname, res_val, res, out)
        return True

    def _geometry(self, a: Op, depthwise: bool) -> list[tuple[str, Arg]]:
        (sh, sw), (pt, pl, _, _), (dh, dw) = a.attrs["strides"], a.attrs["pads"], a.attrs["dilations"]
        kh, kw = a.operands[1].type.shape[2:]
        geo = [("kh", kh), ("kw", kw)] if not depthwise else []
        return geo + [("sh", sh), ("sw", sw), ("pt", pt), ("pl", pl), ("dh", dh), ("dw", dw)]

    def no_residual(self, out: Buf, parts: FusedParts) -> Buf | Const:
        """The `res` argument of an fp32 kernel without a residual: `out` itself, or for a quantizing
        kernel (u8/i8 `out`) a dummy fp32 array, so both cases share the Numba specialisation that
        a real fp32 residual needs (compiling a conv driver twice costs seconds)."""
        if parts.boundary != "quantize":
            return out
        if self._no_residual is None:
            self._no_residual = self.const(np.zeros((1, 1, 1, 1), np.float32), "no residual")
        return self._no_residual

    @staticmethod
    def _f32_epilogue(parts: FusedParts, res) -> list[tuple[str, Arg]]:
        lo, hi = parts.bounds
        args = [("lo", float(lo)), ("hi", float(hi)), ("has_res", res is not None)]
        if parts.boundary == "quantize":
            t = parts.result_type
            qlo, qhi = qrange(t.dtype)
            args += [("q_scale", t.quant.scale[0]), ("q_zp", t.quant.zero_point[0]), ("q_lo", qlo), ("q_hi", qhi)]
        return args

    def _desc(self, a: Op, depthwise: bool, boundary: str, residual: bool,
              clamp=(-_INF, _INF)) -> KernelDesc:
        anchor = "depthwise" if depthwise else ("gemm" if a.name in ("qv.gemm", "qv.qgemm") else "conv")
        accumulation = "int8" if a.name in ("qv.qconv", "qv.qgemm") else "f32"
        scale_kind = a.attrs.get("requant", "float") if accumulation == "int8" else "none"
        return KernelDesc(anchor, accumulation, Epilogue(boundary, residual, tuple(map(float, clamp)), scale_kind),
                          self.target)

    def emit_desc(self, desc: KernelDesc, args: list[tuple[str, Arg]], out: Buf) -> None:
        """One call of `desc`'s entry point: `args` as for the conv form ([N, H, W, C] views for a gemm run
        as a 1x1 conv), the target marker last."""
        self.emit(_K + desc.entry_point().kernel, args + [self.target_arg()], [out], desc)

    def _conv_f32(self, a, parts, x, w, b, wname, res, out) -> None:
        oc = w.shape[0]
        depthwise = _is_depthwise(a, w)
        packed = packing.pack_depthwise_f32(w) if depthwise else packing.pack_conv_f32(w, a.attrs["group"])
        bias = self.const(b.astype(np.float32) if b is not None else np.zeros(oc, np.float32), f"{wname}.bias")
        desc = self._desc(a, depthwise, parts.boundary, res is not None, parts.bounds)
        args = [("x", x), ("w", self.const(packed.data, f"{wname}.packed")), ("bias", bias),
                ("res", res if res is not None else self.no_residual(out, parts)), ("out", out)]
        self.emit_desc(desc, args + self._geometry(a, depthwise) + self._f32_epilogue(parts, res), out)

    def _gemm_f32(self, a, parts, x, w, b, wname, res, out) -> None:
        n = parts.anchor.result.type.shape[1]
        wn, bias = _gemm_weight_bias(a.attrs, w, b, n)
        wc = self.const(packing.pack_gemm_f32(wn, trans_b=True).data, f"{wname}.packed")
        bc = self.const(bias, f"{wname}.bias")
        desc = self._desc(a, False, parts.boundary, res is not None, parts.bounds)
        if desc.entry_point().as_pixels:
            x4, o4 = self._as_pixels(x), self._as_pixels(out)
            r4 = self._as_pixels(res) if res is not None else self.no_residual(out, parts)
            args = [("x", x4), ("w", wc), ("bias", bc), ("res", r4), ("out", o4)] + self._pointwise()
            self.emit_desc(desc, args + self._f32_epilogue(parts, res), o4)
        else:
            args = [("a", x), ("w", wc), ("bias", bc), ("res", res if res is not None else out), ("out", out)]
            self.emit_desc(desc, args + self._f32_epilogue(parts, res), out)

    def _as_pixels(self, ref):
        m, k = self.shape_of(ref)
        return self.view(ref, ("reshape", (m, 1, 1, k)))

    @staticmethod
    def _pointwise() -> list[tuple[str, Arg]]:
        return list(zip(("kh", "kw", "sh", "sw", "pt", "pl", "dh", "dw"), _POINTWISE))

    def _int8_anchor(self, a, parts, x, w, b, wname, res_val, res, out) -> None:
        """qv.qconv / qv.qgemm: requantize, requantize + qadd, or dequantize (fused, or exact: see `lower`)."""
        sx, zx = quant_of(a.operands[0])
        oc = w.shape[0]
        sw_ = np.broadcast_to(np.asarray(a.operands[1].type.quant.scale, np.float64), (oc,))
        is_conv = a.name == "qv.qconv"
        depthwise = is_conv and _is_depthwise(a, w)
        if depthwise:
            packed = packing.pack_depthwise_i8(w).data
        elif is_conv:
            packed = packing.pack_conv_i8(w, a.attrs["group"], dot=self.target.int8_dot).data
        else:
            packed = packing.pack_gemm_i8(w, trans_b=True, dot=self.target.int8_dot).data
        bias = self.const(b.astype(np.int32) if b is not None else np.zeros(oc, np.int32), f"{wname}.bias")
        head = [("x", x), ("zx", zx), ("w", self.const(packed, f"{wname}.packed")), ("bias", bias)]
        t1 = a.result.type  # the anchor's own (requantized) result
        s1, z1 = t1.quant.scale[0], t1.quant.zero_point[0]
        lo1, hi1 = activation_bounds(parts.anchor_act, t1.quant, t1.dtype)
        dequant = parts.boundary == "dequantize"
        target = out
        if dequant and not self.exact:
            bounds = parts.bounds
            if res is None:  # the IR clamps to the int8 grid (and the anchor's act) before dequantizing
                grid = tuple(float(np.float32(q - z1) * np.float32(s1)) for q in (lo1, hi1))
                bounds = _compose_clamps(grid, bounds)
            desc = self._desc(a, depthwise, "dequantize", res is not None, bounds)
            scale = self.const(bias_scales(sx, sw_).astype(np.float32), f"{wname}.scale")
            fbias = self.const(np.zeros(oc, np.float32), f"{wname}.fbias")
            tail = [("scale", scale), ("fbias", fbias), ("res", res if res is not None else out),
                    ("has_res", res is not None), ("lo", float(bounds[0])), ("hi", float(bounds[1]))]
        else:
            # requantize, then `qv.qadd` of a residual; or with an exact int8 -> fp32 boundary, into the
            # anchor's int8 grid, dequantized after.  One entry point for both: without a residual the
            # output is the anchor's grid and the residual parameters are unread placeholders of the
            # same types (int zero points and bounds, float scales), so both calls share one compiled
            # specialisation.
            mult = self.const(_requant_factors(a, requantize_multiplier(sx, sw_, s1)), f"{wname}.mult")
            with_res = res is not None and not dequant
            if with_res:
                qadd = next(o for o in parts.ops if o.name == "qv.qadd")
                ty = parts.result_type
                sr, zr = quant_of(res_val)
                lo, hi = activation_bounds(qadd.attrs.get("act", "none"), ty.quant, ty.dtype)
                sy, zy = ty.quant.scale[0], ty.quant.zero_point[0]
            else:
                sr, zr, sy, zy, lo, hi = 1.0, 0, 1.0, z1, lo1, hi1
                if dequant:
                    target = self.new_buf(physical_shape(t1.shape), t1.dtype, f"{self.name(a.result)}.int8")
            desc = self._desc(a, depthwise, "requantize", with_res, parts.bounds if with_res else (-_INF, _INF))
            tail = [("mult", mult), ("z1", int(z1)), ("lo1", int(lo1)), ("hi1", int(hi1)), ("s1", float(s1)),
                    ("res", res if with_res else target), ("has_res", with_res), ("zr", int(zr)), ("sr", float(sr)),
                    ("sy", float(sy)), ("zy", int(zy)), ("lo", int(lo)), ("hi", int(hi))]
        entry = desc.entry_point()
        if desc.anchor == "gemm" and not entry.as_pixels:
            self.emit_desc(desc, [("a", x), ("za", zx)] + head[2:] + [("out", target)] + tail, target)
        elif not entry.as_pixels:
            self.emit_desc(desc, head + [("out", target)] + self._geometry(a, depthwise) + tail, target)
        else:
            tail = [(k, self._as_pixels(v) if k == "res" else v) for k, v in tail]
            o4 = self._as_pixels(target)
            self.emit_desc(desc, [("x", self._as_pixels(x))] + head[1:] + [("out", o4)] + self._pointwise() + tail,
                           o4)
        if dequant and self.exact:
            lo, hi = parts.bounds
            size = parts.result_type.size
            self.emit(_R + "ops_quant:dequantize_epilogue_flat",
                      [("q", self.flat(target)), ("res", self.flat(res if res is not None else out)),
                       ("out", self.flat(out)), ("scale", s1), ("zp", z1), ("has_res", res is not None),
                       ("lo", float(lo)), ("hi", float(hi)), ("parallel", self.parallel(size))], [self.flat(out)])

    # -- fallback ---------------------------------------------------------------------------
    def fallback(self, op: Op) -> None:
        """No kernel computes `op` in this case (what is left is listed in `standalone.py`): an
        UnsupportedOpError naming the op, its ONNX node, its types and the ways out.  Only with the
        debugging backend switched on (`runtime.fallback.ENV`) does the op run through its NumPy
        reference inside the program instead, its constants bound in the callable."""
        from qv2c.errors import UnsupportedOpError
        from qv2c.runtime.fallback import ENV, ReferenceOp, reference_fallback_enabled

        if len(op.results) != 1:
            raise UnsupportedOpError(f"{op.location}: an op with {len(op.results)} results has no kernel; run the "
                                     "model with backend='reference'")
        if not reference_fallback_enabled():
            types = ", ".join(str(v.type) for v in op.operands) + " -> " + ", ".join(str(r.type) for r in op.results)
            raise UnsupportedOpError(f"{op.location} ({types}): no compiled kernel computes this case (the cases "
                                     "without one are listed in qv2c/codegen/standalone.py); run the model with "
                                     f"backend='reference', or set {ENV}=1 to run such ops through their NumPy "
                                     "reference inside the compiled program (slow; for debugging)")
        fb = ReferenceOp(op, [self.resolve(v).data for v in op.operands])
        acts = [self.operand(v) for v in op.operands if not self.resolve(v).is_constant]
        out = self.result_buf(op)
        args = [("op", self.const_obj(fb, f"reference {op.name}")), ("out", out)]
        self.emit(_R + "fallback:run_reference", args + [(f"x{i}", r) for i, r in enumerate(acts)], [out])

    def parallel(self, work: int) -> bool:
        return work >= PARALLEL_MIN_WORK
