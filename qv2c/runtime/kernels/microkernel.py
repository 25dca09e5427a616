"""Register-blocked convolution/GEMM micro-kernels, written as LLVM vector IR via `numba.extending.intrinsic`.

Why IR and not a plain Numba loop: LLVM only vectorises a Numba loop along its innermost
index.  For a dot product over K ("reduction form") that gives decent loops, but every
output then needs its own horizontal sum, which dominates when K is small (27 for a
first conv, 64 for a SqueezeNet squeeze).  The fast form is the outer-product micro-kernel
of BLIS/oneDNN: accumulators for R output pixels x 16 output channels stay in vector
registers for the whole reduction; each step broadcasts one activation per pixel and
loads 16 weights once.  Numba cannot keep an accumulator tile in registers (a local
array lives in memory and may alias every other array), so the kernel is emitted as IR
where the accumulators are `<lanes x float>` / `<lanes x i32>` SSA values.

The IR is written for a target (`target.py`): its vector width (4, 8 or 16 lanes: one panel of
16 output channels is 16 / lanes vectors per row), its tile height, and its int8 dot product.
Apart from the VNNI instruction, only target-independent IR is used, so LLVM picks instructions
for the CPU it compiles for (`codegen/target_asm.py` shows them for any named CPU):

- fp32: `llvm.fmuladd` -> `vbroadcastss` + `vfmadd231ps` (ymm on AVX2, zmm on AVX-512), mul+add
  without FMA.
- int8 "pairs" (kind "s16"): activations arrive as int16 (x - zx) and weights as int16;
  `mul(sext a, sext b)` followed by "even lanes + odd lanes" is exactly `pmaddwd`, and the x86
  backend emits one `vpmaddwd` (AVX2, AVX-512BW; `pmaddwd` on SSE2; fused into `vpdpwssd` where
  VNNI exists) per 2 x lanes multiply-accumulates.  int16 x int16 pair sums cannot saturate
  (|x - zx| <= 255, |w| <= 128), unlike the `vpmaddubsw` u8 x s8 path.
- int8 "quads" (kind "u8s8", AVX-512 VNNI): raw u8 activations (4 channels = one i32, broadcast)
  and int8 weights in groups of 4; `llvm.x86.avx512.vpdpbusd.512` adds 4 u8 x s8 products per
  int32 lane, without saturation (LLVM never forms it from portable IR: benchmarks/vnni_codegen.py),
  or the same sums in portable IR for the emulated target (`_vnni_dot`).

Addressing ("indirect convolution"): the reduction runs over `ntaps` kernel taps and
`kc` channels (fp32) or channel pairs (int16) per tap:

    A(r, t, k) = a[rowoff[ro + r] + tapoff[t] + k]          (fp32; int16 pairs at + 2k)
    B(t, k, j) = b[b_off + (t * kc + k) * 16 + j]           (int16: [.., 16, 2] pairs; int8: [.., 16, 4] quads)
    acc[r, j]  = sum_t sum_k A(r, t, k) * B(t, k, j)        r < R rows, j < 16 channels

`rowoff` holds the start of each output pixel's receptive field in an NHWC (zero-padded)
input, `tapoff` the offset of each (kh, kw) tap, so a 3x3 conv reads its input in place
with no im2col copy; a 1x1 conv or a GEMM is the case ntaps = 1, tapoff = [0].  One call
computes `nrows` rows: blocks of the target's tile height R, then the remainder in small blocks
(`_emit_kernel`), so the per-call overhead is paid once per weight panel and pixel tile.

Fused epilogues (all channel-vector operations on the register tile, in vectors of the target's
width, at least 8 lanes (`_epilogue_vectors`): 16-lane zmm on AVX-512, which halves the epilogue's
instructions against 8-lane halves), stored with row stride `ldo`; rows r >= nvalid are computed
but not stored, and nvalid may exceed the block height):

    raw          C[r, j] = acc                                   (fp32 or int32 scratch)
    f32          out = clamp(acc + bias (+ res), lo, hi)          fp32
    f32_quant    q = clamp(rint(f32 out / q_scale) + q_zp, q_lo, q_hi)   u8/i8 (fp32 -> int8 boundary)
    requant      out = rint(clamp(f32(acc + b) * M, tlo, thi)) + zy            u8/i8
                 (int32 shifts in place of M: the integer shift of `quant_math.requantize_shift`)
    requant_add  q1 = rint(clamp(f32(acc + b) * M, tlo1, thi1));
                 out = clamp(rint((q1 * s1 + (f32(res) - zr) * sr) / sy) + zy, qlo, qhi)
    dequant      out = clamp(f32(acc + b) * S + fb (+ res), lo, hi)           fp32

They are bit-identical to the NumPy-level definitions in `epilogue.py` (same float32
operations in the same order, no contraction; `llvm.rint` rounds half to even in the
default rounding mode, like `np.rint`).

Register budget, AVX2 (R = 6): 12 accumulators + 2 weight vectors + 1 broadcast = 15 of the 16
ymm registers; per step 6 broadcasts, 2 weight loads, 12 FMAs.  AVX-512 (R = 12): 12 zmm
accumulators + 1 weight vector + broadcasts of the 32 registers.  Where a tile has fewer than 8
accumulators, each is split over k ("ksplit") so that >= 8 FMA / `vpdpbusd` chains hide their
latency; the `vpmaddwd` path's integer adds have 1-cycle latency and need no split.
"""

from __future__ import annotations

from functools import cache

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from qv2c.runtime.kernels.target import host_features

#: output channels per weight panel (two 8-lane vectors)
PANEL = 16

_I1 = ir.IntType(1)
_I8 = ir.IntType(8)
_I16 = ir.IntType(16)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_F32 = ir.FloatType()
_VF = ir.VectorType(_F32, 8)
_VI = ir.VectorType(_I32, 8)


def _vf(n: int):
    return ir.VectorType(_F32, n)


def _vi(n: int):
    return ir.VectorType(_I32, n)


def _c64(v: int):
    return ir.Constant(_I64, v)


def _ksplit(kind: str, rows: int, nvec: int) -> int:
    """Partial sums per accumulator so that >= 8 independent chains hide the FMA / `vpdpbusd` latency
    (4-5 cycles, 1-2 per cycle); `vpmaddwd` results meet a 1-cycle `vpaddd`, so "s16" needs no split."""
    if kind == "s16":
        return 1
    return max(1, min(8, -(-8 // (rows * nvec))))


def _vec(elem, lanes: int):
    return ir.VectorType(elem, lanes)


# -- argument handling ---------------------------------------------------------------
#: argument kinds of the accumulation part, shared by every kernel
_ACC_ARGS = (("nrows", "int"), ("a", "arr"), ("rowoff", "arr"), ("ro", "int"), ("tapoff", "arr"), ("ntaps", "int"),
             ("kc", "int"), ("b", "arr"), ("b_off", "int"))

_EPILOGUE_ARGS = {
    "raw": (("c", "arr"), ("c_off", "int"), ("ldc", "int")),
    "f32": (("out", "arr"), ("o_off", "int"), ("ldo", "int"), ("bias", "arr"), ("ch_off", "int"),
            ("res", "arr"), ("has_res", "bool"), ("lo", "f32"), ("hi", "f32")),
    "f32_quant": (("out", "arr"), ("o_off", "int"), ("ldo", "int"), ("bias", "arr"), ("ch_off", "int"),
                  ("res", "arr"), ("has_res", "bool"), ("lo", "f32"), ("hi", "f32"), ("q_scale", "f32"),
                  ("q_zp", "f32"), ("q_lo", "f32"), ("q_hi", "f32")),
    "requant": (("out", "arr"), ("o_off", "int"), ("ldo", "int"), ("bias", "arr"), ("mult", "arr"),
                ("ch_off", "int"), ("tlo", "f32"), ("thi", "f32"), ("zy", "f32")),
    "requant_add": (("out", "arr"), ("o_off", "int"), ("ldo", "int"), ("bias", "arr"), ("mult", "arr"),
                    ("ch_off", "int"), ("tlo", "f32"), ("thi", "f32"), ("res", "arr"), ("zr", "f32"),
                    ("sr", "f32"), ("s1", "f32"), ("sy", "f32"), ("zy", "f32"), ("qlo", "f32"), ("qhi", "f32")),
    "dequant": (("out", "arr"), ("o_off", "int"), ("ldo", "int"), ("bias", "arr"), ("scale", "arr"),
                ("fbias", "arr"), ("ch_off", "int"), ("res", "arr"), ("has_res", "bool"), ("lo", "f32"),
                ("hi", "f32")),
}

_KIND_OK = {
    "arr": lambda t: isinstance(t, types.Array) and t.layout == "C",
    "int": lambda t: isinstance(t, types.Integer),
    "f32": lambda t: isinstance(t, (types.Float, types.Integer)),
    "bool": lambda t: isinstance(t, (types.Boolean, types.Integer)),
}
_KIND_TYPE = {"int": types.intp, "f32": types.float32, "bool": types.boolean}

#: element types of the per-channel epilogue arrays (the IR loads them as 8-lane vectors)
#: (`mult` is float32 multipliers, or int32 shifts for "shift" requantization)
_CHANNEL_DTYPES = {"f32": {"bias": (types.float32,)}, "f32_quant": {"bias": (types.float32,)},
                   "requant": {"bias": (types.int32,), "mult": (types.float32, types.int32)},
                   "requant_add": {"bias": (types.int32,), "mult": (types.float32, types.int32)},
                   "dequant": {"bias": (types.int32,), "scale": (types.float32,), "fbias": (types.float32,)},
                   "raw": {}}


def _channel_dtypes_ok(epilogue, named) -> bool:
    return all(named[n].dtype in ok for n, ok in _CHANNEL_DTYPES[epilogue].items())


class _Args:
    """Named access to the lowered intrinsic arguments: arrays as element pointers, scalars cast."""

    def __init__(self, context, builder, sig, args, spec):
        self._vals = {}
        for (name, kind), ty, val in zip(spec, sig.args, args):
            if kind == "arr":
                ary = context.make_array(ty)(context, builder, val)
                self._vals[name] = ary.data
                self._vals[name + ".dtype"] = ty.dtype
            else:
                self._vals[name] = context.cast(builder, val, ty, _KIND_TYPE[kind])

    def __getitem__(self, name):
        return self._vals[name]

    def with_values(self, **values):
        """A copy with some values replaced (the per-block row start, output offset, valid rows)."""
        other = _Args.__new__(_Args)
        other._vals = {**self._vals, **values}
        return other


# -- IR helpers --------------------------------------------------------------------
def _splat(builder, vecty, scalar):
    n = vecty.count
    v = builder.insert_element(ir.Constant(vecty, ir.Undefined), scalar, ir.Constant(_I32, 0))
    return builder.shuffle_vector(v, ir.Constant(vecty, ir.Undefined), ir.Constant(ir.VectorType(_I32, n), [0] * n))


def _vload(builder, ptr, vecty, align):
    return builder.load(builder.bitcast(ptr, vecty.as_pointer()), align=align)


def _vstore(builder, value, ptr, align):
    builder.store(value, builder.bitcast(ptr, value.type.as_pointer()), align=align)


def _intrinsic_fn(builder, name, vecty, nargs):
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(vecty, [vecty] * nargs), name)


def _clamp(builder, v, lo, hi):
    """min(max(v, lo), hi) lane-wise with scalar bounds, as compare-and-select: one `vmaxps` and one
    `vminps` (`llvm.maxnum`/`minnum` add a NaN compare and a blend per bound).  The results are the same,
    a NaN included: `v > lo` is false for a NaN, which so becomes `lo`, as maxnum(NaN, lo) does."""
    lo_v, hi_v = _splat(builder, v.type, lo), _splat(builder, v.type, hi)
    v = builder.select(builder.fcmp_ordered(">", v, lo_v), v, lo_v)
    return builder.select(builder.fcmp_ordered("<", v, hi_v), v, hi_v)


def _rint(builder, v):
    return builder.call(_intrinsic_fn(builder, f"llvm.rint.v{v.type.count}f32", v.type, 1), [v])


def _to_float(builder, v, dtype):
    """<n x iN> (from memory of `dtype`) or <n x i32> to <n x float>, exactly as NumPy's astype(float32)."""
    if isinstance(dtype, types.Integer) and not dtype.signed:
        return builder.uitofp(v, _vf(v.type.count))
    return builder.sitofp(v, _vf(v.type.count))


def _load_as_float(builder, ptr, dtype, n):
    """n consecutive elements of an f32/u8/i8 array as <n x float>."""
    if dtype == types.float32:
        return _vload(builder, ptr, _vf(n), 4)
    raw = _vload(builder, ptr, ir.VectorType(ir.IntType(dtype.bitwidth), n), 1)
    return _to_float(builder, raw, dtype)


def _store_ints(builder, f, ptr, dtype):
    """Store <n x float> holding exact integers into n elements of an integer array of `dtype`.

    (A float `dtype` only occurs in specialisations where the caller never takes this path.)
    """
    if isinstance(dtype, types.Float):
        _vstore(builder, f, ptr, 4)
        return
    vty = ir.VectorType(ir.IntType(dtype.bitwidth), f.type.count)
    q = builder.fptoui(f, vty) if not dtype.signed else builder.fptosi(f, vty)
    _vstore(builder, q, ptr, 1)


# -- the accumulation loop ---------------------------------------------------------
#: bytes of one reduction step of a 16-channel weight panel: 16 fp32, 16 int16 pairs, 16 int8 quads
_STEP_ELEMS = {"f32": PANEL, "s16": 2 * PANEL, "u8s8": 4 * PANEL}
#: element type of the activations / weights each accumulation kind reads
_ELEM = {"f32": _F32, "s16": _I16, "u8s8": _I8}


def _vnni_dot(builder, acc, xq, wq, lanes, vnni):
    """acc + (per i32 lane) the sum of the four u8 x s8 byte products of xq (u8) and wq (s8).

    "native": one `vpdpbusd` (`llvm.x86.avx512.vpdpbusd.{256,512}`; LLVM never forms it from
    portable IR).  "emulated": the same sums in portable IR, one byte position b at a time on
    int32 lanes: the activation byte zero-extended ((xq >> 8b) & 255), the weight byte
    sign-extended ((wq << (24 - 8b)) >> 24, arithmetic), multiplied and added: lane-width
    operations only, which LLVM compiles much faster on AVX2 than one 4 x lanes wide product
    summed by shuffles (cold JIT per target: benchmarks/results/backend_costs.md).  Both wrap
    modulo 2**32 (no saturation), and modular addition does not depend on order, so they agree
    bit for bit.
    """
    vi = _vec(_I32, lanes)
    if vnni == "native":
        fn = _intrinsic_fn(builder, f"llvm.x86.avx512.vpdpbusd.{32 * lanes}", vi, 3)
        return builder.call(fn, [acc, xq, wq])

    def splat(v):
        return ir.Constant(vi, [v] * lanes)

    for b in range(4):
        xb = builder.and_(builder.lshr(xq, splat(8 * b)), splat(255))
        wb = builder.ashr(builder.shl(wq, splat(24 - 8 * b)), splat(24))
        acc = builder.add(acc, builder.mul(xb, wb))
    return acc


def _accumulate(builder, kind, rows, args, target, start=None):
    """Emit the tap/channel loops; return acc[r][v] (`lanes`-wide <float> or <i32> vectors, v < 16 / lanes),
    each starting from `start[v]` (`_bias_start`), or from zero."""
    lanes = target.lanes
    nvec = PANEL // lanes
    ksplit = _ksplit(kind, rows, nvec)
    vt = _vec(_F32 if kind == "f32" else _I32, lanes)
    zero = ir.Constant(vt, None)
    slots = [[[cgutils.alloca_once(builder, vt) for _ in range(nvec)] for _ in range(rows)] for _ in range(ksplit)]
    for s, partial in enumerate(slots):
        for row in partial:
            for j, slot in enumerate(row):
                builder.store(start[j] if start is not None and s == 0 else zero, slot)
    a, b = args["a"], args["b"]
    rowoff, tapoff = args["rowoff"], args["tapoff"]
    bbase = builder.gep(b, [args["b_off"]])
    kc = args["kc"]
    rowbase = [builder.gep(a, [builder.load(builder.gep(rowoff, [builder.add(args["ro"], _c64(r))]))])
               for r in range(rows)]
    bstep = _c64(_STEP_ELEMS[kind])
    per_vec = _STEP_ELEMS[kind] // nvec  # weight elements of one vector
    if kind == "f32":
        fma = _intrinsic_fn(builder, f"llvm.fmuladd.v{lanes}f32", vt, 3)
    elif kind == "s16":
        v16 = _vec(_I16, 2 * lanes)
        w16 = _vec(_I32, 2 * lanes)
        even = ir.Constant(vt, list(range(0, 2 * lanes, 2)))
        odd = ir.Constant(vt, list(range(1, 2 * lanes, 2)))

    with cgutils.for_range(builder, args["ntaps"]) as tap_loop:
        t = tap_loop.index
        toff = builder.load(builder.gep(tapoff, [t]))
        rp = [builder.gep(rb, [toff]) for rb in rowbase]
        if kind != "f32":
            # one i32 = one (k, k+1) int16 pair, or one (k .. k+3) u8 quad
            rp = [builder.bitcast(p, _I32.as_pointer()) for p in rp]
        bt = builder.gep(bbase, [builder.mul(builder.mul(t, kc), bstep)])

        def step(k, s):
            bk = builder.gep(bt, [builder.mul(k, bstep)])
            if kind == "f32":
                bv = [_vload(builder, builder.gep(bk, [_c64(per_vec * j)]), vt, 4) for j in range(nvec)]
            elif kind == "s16":
                bv = [builder.sext(_vload(builder, builder.gep(bk, [_c64(per_vec * j)]), v16, 2), w16)
                      for j in range(nvec)]
            else:
                bv = [_vload(builder, builder.gep(bk, [_c64(per_vec * j)]), vt, 1) for j in range(nvec)]
            for r in range(rows):
                x = builder.load(builder.gep(rp[r], [k]), align={"f32": 4, "s16": 2, "u8s8": 1}[kind])
                if kind == "f32":
                    xv = _splat(builder, vt, x)
                elif kind == "s16":
                    xv = builder.sext(builder.bitcast(_splat(builder, vt, x), v16), w16)
                else:
                    xv = _splat(builder, vt, x)
                for j in range(nvec):
                    slot = slots[s][r][j]
                    if kind == "f32":
                        new = builder.call(fma, [xv, bv[j], builder.load(slot)])
                    elif kind == "s16":
                        prod = builder.mul(xv, bv[j])
                        pair = builder.add(builder.shuffle_vector(prod, prod, even),
                                           builder.shuffle_vector(prod, prod, odd))
                        new = builder.add(builder.load(slot), pair)
                    else:
                        new = _vnni_dot(builder, builder.load(slot), xv, bv[j], lanes, target.vnni)
                    builder.store(new, slot)

        if ksplit == 1:
            with cgutils.for_range(builder, kc) as kl:
                step(kl.index, 0)
        else:
            nmain = builder.sdiv(kc, _c64(ksplit))
            with cgutils.for_range(builder, nmain) as kl:
                base = builder.mul(kl.index, _c64(ksplit))
                for s in range(ksplit):
                    step(builder.add(base, _c64(s)), s)
            done = builder.mul(nmain, _c64(ksplit))
            with cgutils.for_range(builder, builder.sub(kc, done)) as kl:
                step(builder.add(done, kl.index), 0)

    acc = []
    for r in range(rows):
        row = []
        for j in range(nvec):
            v = builder.load(slots[0][r][j])
            for s in range(1, ksplit):
                v = builder.fadd(v, builder.load(slots[s][r][j])) if kind == "f32" else \
                    builder.add(v, builder.load(slots[s][r][j]))
            row.append(v)
        acc.append(_epilogue_vectors(builder, row))
    return acc


def _epilogue_vectors(builder, row):
    """A row of accumulator vectors as the epilogue's vectors: 8 or 16 lanes as they are, two 4-lane
    vectors joined into one of 8 (no x86 target is narrower than 8 lanes of fp32 per operation worth
    splitting for)."""
    if row[0].type.count >= 8:
        return row
    return [builder.shuffle_vector(row[i], row[i + 1], ir.Constant(_VI, list(range(8))))
            for i in range(0, len(row), 2)]


def _width(acc) -> int:
    """Lanes of the epilogue's vectors (every vector of a tile has the same)."""
    return acc[0][0].type.count


# -- epilogues -------------------------------------------------------------------------
def _for_rows(builder, rows, args, emit_row):
    """Call emit_row(r, row_offset) for r < rows, skipping rows >= nvalid."""
    for r in range(rows):
        with builder.if_then(builder.icmp_signed("<", _c64(r), args["nvalid"])):
            emit_row(r, builder.add(args["o_off"], builder.mul(args["ldo"], _c64(r))))


def _channel_vectors(builder, args, name, j, n):
    """Lanes ch_off + n*j .. + n of a per-channel float32 (scales) or int32 (bias) array."""
    p = builder.gep(args[name], [builder.add(args["ch_off"], _c64(n * j))])
    return _vload(builder, p, _vf(n) if args[name + ".dtype"] == types.float32 else _vi(n), 4)


def _epilogue_raw(builder, kind, acc, args):
    n = _width(acc)
    for r, row in enumerate(acc):
        base = builder.gep(args["c"], [builder.add(args["c_off"], builder.mul(args["ldc"], _c64(r)))])
        for j, v in enumerate(row):
            _vstore(builder, v, builder.gep(base, [_c64(n * j)]), 4)


def _epilogue_f32(builder, kind, acc, args, quant=False):
    """clamp(acc + bias (+ res), lo, hi) stored as fp32, or with `quant` (the "f32_quant" epilogue at an
    fp32 -> int8 boundary) then QuantizeLinear into the int8 output as `epilogue.store_f32_quant` does."""
    n = _width(acc)
    bias = [_channel_vectors(builder, args, "bias", j, n) for j in range(len(acc[0]))]
    if quant:
        scale, zp = _splat(builder, _vf(n), args["q_scale"]), _splat(builder, _vf(n), args["q_zp"])

    def emit(with_res):
        def row_fn(r, off):
            for j in range(len(acc[r])):
                v = builder.fadd(acc[r][j], bias[j])
                if with_res:
                    v = builder.fadd(v, _vload(builder, builder.gep(args["res"], [builder.add(off, _c64(n * j))]),
                                               _vf(n), 4))
                v = _clamp(builder, v, args["lo"], args["hi"])
                dst = builder.gep(args["out"], [builder.add(off, _c64(n * j))])
                if quant:
                    q = builder.fadd(_rint(builder, builder.fdiv(v, scale)), zp)
                    _store_ints(builder, _clamp(builder, q, args["q_lo"], args["q_hi"]), dst,
                                args["out.dtype"])
                else:
                    _vstore(builder, v, dst, 4)
        _for_rows(builder, len(acc), args, row_fn)

    with builder.if_else(args["has_res"]) as (then, otherwise):
        with then:
            emit(True)
        with otherwise:
            emit(False)


def _epilogue_f32_quant(builder, kind, acc, args):
    _epilogue_f32(builder, kind, acc, args, quant=True)


def _requant_factors(builder, args, j, n):
    """Per-channel factors of lanes n*j .. n*j + n - 1: the float32 multipliers, or for int32 shifts s
    the int32 vectors (first shift, rounding bit, left shift) of `_shift_requant`."""
    m = _channel_vectors(builder, args, "mult", j, n)
    if args["mult.dtype"] == types.float32:
        return m

    def splat(v):
        return ir.Constant(_vi(n), [v] * n)

    def smin(a, b):
        return builder.select(builder.icmp_signed("<", a, b), a, b)

    def smax(a, b):
        return builder.select(builder.icmp_signed(">", a, b), a, b)

    first = smin(smax(builder.sub(m, splat(1)), splat(0)), splat(31))
    rounding_bit = builder.zext(builder.icmp_signed(">", m, splat(0)), _vi(n))
    left = smin(builder.sub(splat(0), smin(m, splat(0))), splat(22))
    return first, rounding_bit, left


def _shift_requant(builder, v, factors):
    """`quant_math.requantize_shift` of int32 lanes v without int64 (AVX2 has no 64-bit arithmetic
    shift or int64 -> float conversion), as <n x float> before the zero point and clamp:

    - right shift s > 0, rounding half up: with h = v >> (s - 1),
      (v + 2**(s-1)) >> s == floor((h + 1) / 2) == (h >> 1) + (h & 1), which cannot overflow;
      with s <= 0 the first shift and the rounding bit are 0, and (h >> 0) + (h & 0) == v.
      For s >= 33 the true result is 0 for every int32 v, and so it is with the first shift
      capped at 31 (h is -1 or 0), so shifts are capped that way.
    - left shift l > 0: v is first clamped to [-256, 256] and l capped at 22 (no int32 overflow).
      Every output bound lies within [-255, 255], so a value outside [-256, 256], or any nonzero
      value shifted by >= 22, clamps to the same bound as the exact int64 product would.
    """
    n = v.type.count
    first, rounding_bit, left = factors
    h = builder.ashr(v, first)
    r = builder.add(builder.ashr(h, rounding_bit), builder.and_(h, rounding_bit))
    lo, hi = ir.Constant(_vi(n), [-256] * n), ir.Constant(_vi(n), [256] * n)
    r = builder.select(builder.icmp_signed("<", r, lo), lo, r)
    r = builder.select(builder.icmp_signed(">", r, hi), hi, r)
    return builder.sitofp(builder.shl(r, left), _vf(n))


def _requant(builder, v, factors, tlo, thi):
    """The requantized level minus the zero point, clamped to [tlo, thi], as <n x float> (exact small
    integers): rint(clamp(f32(v) * M, tlo, thi)) of an accumulator v that holds its bias, or with shift
    factors the integer shift."""
    if not isinstance(factors, tuple):
        scaled = builder.fmul(builder.sitofp(v, _vf(v.type.count)), factors)
        return _rint(builder, _clamp(builder, scaled, tlo, thi))
    return _clamp(builder, _shift_requant(builder, v, factors), tlo, thi)


#: 1.5 * 2**23: a float32 of magnitude below 2**22 plus this rounds to an integer (ties to even) held in
#: the low mantissa bits, so bits(v + MAGIC) - bits(MAGIC) == rint(v)
_ROUND_MAGIC = 12582912.0
_ROUND_MAGIC_BITS = 0x4B400000


def _rint_plus(builder, v, zero_point):
    """rint(v) + zero_point as <n x i32>, for v already clamped to integer bounds within +-2**22: one add of
    `_ROUND_MAGIC` and one integer subtract (rather than a round, an add and a convert)."""
    n = v.type.count
    bits = builder.bitcast(builder.fadd(v, ir.Constant(_vf(n), [_ROUND_MAGIC] * n)), _vi(n))
    offset = builder.sub(ir.Constant(_I32, _ROUND_MAGIC_BITS), builder.fptosi(zero_point, _I32))
    return builder.sub(bits, _splat(builder, _vi(n), offset))


def _epilogue_requant(builder, kind, acc, args):
    n = _width(acc)
    mult = [_requant_factors(builder, args, j, n) for j in range(len(acc[0]))]
    zy = _splat(builder, _vf(n), args["zy"])
    out_dtype = args["out.dtype"]
    # float multipliers into an integer output: the clamped level is within [-255, 255], so it rounds by
    # `_rint_plus` and narrows exactly (`_requant`'s own rint stays for the shift form and float outputs)
    magic = isinstance(out_dtype, types.Integer) and not isinstance(mult[0], tuple)

    def row_fn(r, off):
        for j in range(len(acc[r])):
            dst = builder.gep(args["out"], [builder.add(off, _c64(n * j))])
            if magic:
                scaled = builder.fmul(builder.sitofp(acc[r][j], _vf(n)), mult[j])
                q = _rint_plus(builder, _clamp(builder, scaled, args["tlo"], args["thi"]), args["zy"])
                _vstore(builder, builder.trunc(q, ir.VectorType(ir.IntType(out_dtype.bitwidth), n)), dst, 1)
                continue
            q = builder.fadd(_requant(builder, acc[r][j], mult[j], args["tlo"], args["thi"]), zy)
            _store_ints(builder, q, dst, out_dtype)
    _for_rows(builder, len(acc), args, row_fn)


def _epilogue_requant_add(builder, kind, acc, args):
    n = _width(acc)
    mult = [_requant_factors(builder, args, j, n) for j in range(len(acc[0]))]
    s1, zr, sr, sy, zy = (_splat(builder, _vf(n), args[name]) for name in ("s1", "zr", "sr", "sy", "zy"))

    def row_fn(r, off):
        for j in range(len(acc[r])):
            q1 = _requant(builder, acc[r][j], mult[j], args["tlo"], args["thi"])
            rv = _load_as_float(builder, builder.gep(args["res"], [builder.add(off, _c64(n * j))]),
                                args["res.dtype"], n)
            s = builder.fadd(builder.fmul(q1, s1), builder.fmul(builder.fsub(rv, zr), sr))
            y = builder.fadd(_rint(builder, builder.fdiv(s, sy)), zy)
            _store_ints(builder, _clamp(builder, y, args["qlo"], args["qhi"]),
                        builder.gep(args["out"], [builder.add(off, _c64(n * j))]), args["out.dtype"])
    _for_rows(builder, len(acc), args, row_fn)


def _epilogue_dequant(builder, kind, acc, args):
    n = _width(acc)
    scale = [_channel_vectors(builder, args, "scale", j, n) for j in range(len(acc[0]))]
    fbias = [_channel_vectors(builder, args, "fbias", j, n) for j in range(len(acc[0]))]

    def emit(with_res):
        def row_fn(r, off):
            for j in range(len(acc[r])):
                v = builder.fmul(builder.sitofp(acc[r][j], _vf(n)), scale[j])
                v = builder.fadd(v, fbias[j])
                if with_res:
                    v = builder.fadd(v, _vload(builder, builder.gep(args["res"], [builder.add(off, _c64(n * j))]),
                                               _vf(n), 4))
                _vstore(builder, _clamp(builder, v, args["lo"], args["hi"]),
                        builder.gep(args["out"], [builder.add(off, _c64(n * j))]), 4)
        _for_rows(builder, len(acc), args, row_fn)

    with builder.if_else(args["has_res"]) as (then, otherwise):
        with then:
            emit(True)
        with otherwise:
            emit(False)


_EPILOGUES = {"raw": _epilogue_raw, "f32": _epilogue_f32, "f32_quant": _epilogue_f32_quant, "requant": _epilogue_requant,
              "requant_add": _epilogue_requant_add, "dequant": _epilogue_dequant}


#: the int8 epilogues, whose accumulators start from the int32 bias (`_bias_start`)
_BIASED_START = ("requant", "requant_add", "dequant")


def _bias_start(builder, kind, epilogue, args, lanes, nvec):
    """The starting accumulator vectors of an int8 kernel with a bias-adding epilogue: its bias, lanes
    ch_off + lanes * j (one vector add per output vector less in every epilogue); None otherwise."""
    if kind == "f32" or epilogue not in _BIASED_START:
        return None
    return [_channel_vectors(builder, args, "bias", j, lanes) for j in range(nvec)]


def _block(builder, kind, rows, epilogue, args, target):
    """One block: accumulate `rows` rows, then the epilogue (rows >= args['nvalid'] not stored)."""
    start = _bias_start(builder, kind, epilogue, args, target.lanes, PANEL // target.lanes)
    acc = _accumulate(builder, kind, rows, args, target, start)
    _EPILOGUES[epilogue](builder, kind, acc, args)


def _emit_kernel(builder, kind, epilogue, args, target):
    """Blocks of `target.rows` rows over all `nrows`; then the remainder in blocks of `target.tail_rows`
    rows, the last one computing up to `tail_rows - 1` rows that are not stored, or in one 1-row block
    when a single row is left (a matrix-vector product's only row).  Three block heights in all."""
    nrows = args["nrows"]
    rows, tail_rows = target.rows, target.tail_rows
    step_out = args["ldc"] if epilogue == "raw" else args["ldo"]
    out_key = "c_off" if epilogue == "raw" else "o_off"

    def at(first_row, nvalid):
        return args.with_values(ro=builder.add(args["ro"], first_row), nvalid=nvalid,
                                **{out_key: builder.add(args[out_key], builder.mul(first_row, step_out))})

    def blocks(height, first, count):
        """`count` blocks of `height` rows from row `first`, each storing only rows < nrows."""
        with cgutils.for_range(builder, count) as loop:
            start = builder.add(first, builder.mul(loop.index, _c64(height)))
            _block(builder, kind, height, epilogue, at(start, builder.sub(nrows, start)), target)

    nfull = builder.sdiv(nrows, _c64(rows))
    blocks(rows, _c64(0), nfull)
    first = builder.mul(nfull, _c64(rows))
    tail = builder.sub(nrows, first)
    with builder.if_else(builder.icmp_signed("==", tail, _c64(1))) as (single, several):
        with single:
            _block(builder, kind, 1, epilogue, at(first, _c64(1)), target)
        with several:
            blocks(tail_rows, first, builder.sdiv(builder.add(tail, _c64(tail_rows - 1)), _c64(tail_rows)))


#: element types of the activations / weights of each accumulation kind
_OPERAND_DTYPES = {"f32": ((types.float32,), types.float32, types.float32),
                   "s16": ((types.int16,), types.int16, types.int32),
                   "u8s8": ((types.uint8,), types.int8, types.int32)}


@cache
def conv_kernel(target, kind: str, epilogue: str):
    """The intrinsic computing `nrows` x 16 outputs for `target` (a `target.TargetSpec`) with accumulation
    `kind` ("f32"; "s16": int16 pairs; "u8s8": u8 x s8 quads) and `epilogue`; generated on first use.

    Arguments: `_ACC_ARGS` followed by the epilogue's `_EPILOGUE_ARGS`.  Rows [ro, ro + nrows) of
    `rowoff` are computed; `rowoff` must hold entries up to a multiple of `target.rows` rows.
    """
    if kind == "u8s8" and target.vnni == "native" and not host_features().get("avx512vnni", False):
        # LLVM would abort the process ("Cannot select") on the vpdpbusd intrinsic
        raise TypeError(f"target {target.name} needs AVX-512 VNNI, which this CPU lacks: use its emulated form "
                        "(target.runnable)")
    spec = _ACC_ARGS + _EPILOGUE_ARGS[epilogue]
    a_dtypes, b_dtype, acc_dtype = _OPERAND_DTYPES[kind]

    def typer(typingctx, *argtys):
        if not all(_KIND_OK[k](t) for (_, k), t in zip(spec, argtys)):
            return None
        named = {n: t for (n, _), t in zip(spec, argtys)}
        if named["a"].dtype not in a_dtypes or named["b"].dtype != b_dtype:
            return None
        if named["rowoff"].dtype != types.int64 or named["tapoff"].dtype != types.int64:
            return None
        if epilogue == "raw" and named["c"].dtype != acc_dtype:
            return None
        if not _channel_dtypes_ok(epilogue, named):
            return None
        sig = types.void(*argtys)

        def codegen(context, builder, signature, llargs):
            _emit_kernel(builder, kind, epilogue, _Args(context, builder, signature, llargs, spec), target)
            return context.get_dummy_value()

        return sig, codegen

    # numba.extending.intrinsic needs an explicit parameter list (no *args): spell it out.
    params = ", ".join(n for n, _ in spec)
    name = f"mk_{target.name.replace('-', '_')}_{target.vnni}_{kind}_{epilogue}"
    namespace = {"_typer": typer}
    exec(f"def {name}(typingctx, {params}):\n    return _typer(typingctx, {params})\n", namespace)
    return intrinsic(namespace[name])


# -- depthwise row kernels ------------------------------------------------------------
# A depthwise conv has no reduction over channels: channels are the vector lanes.  These
# kernels compute `npix` consecutive output pixels of one output row (all taps inside the
# image) for 8 * nvec channels, 4 pixels x nvec vectors of accumulators at a time:
#
#     acc[r, j] = sum_t x[x_off + r * xstep + tapoff[t] + 8j] * w[w_off + t * wstep + 8j]
#
# (int8: raw u8/i8 x times int16 w in int32 lanes; all taps are inside the image, so the
# zero point term zx * sum_t w[t] is a per-channel constant the caller folds into the
# bias), then the same fused epilogues as above with o_off / ldo / ch_off addressing the
# NHWC output.

_DW_ARGS = (("npix", "int"), ("x", "arr"), ("x_off", "int"), ("xstep", "int"), ("tapoff", "arr"), ("ntaps", "int"),
            ("w", "arr"), ("w_off", "int"), ("wstep", "int"))
_DW_PIXELS = 4


def _dw_accumulate(builder, kind, rows, nvec, args, start=None):
    """acc[r] for `rows` pixels: one vector of 8 * nvec channels per pixel, summed over the taps.

    One vector of 16 lanes rather than two of 8: on AVX-512 it is one zmm operation, and where the
    CPU has only 256-bit (or 128-bit) registers LLVM splits it into the same instructions two 8-lane
    vectors would have been."""
    lanes = 8 * nvec
    vt = _vf(lanes) if kind == "f32" else _vi(lanes)
    slots = [cgutils.alloca_once(builder, vt) for _ in range(rows)]
    for slot in slots:
        builder.store(start[0] if start is not None else ir.Constant(vt, None), slot)
    xbase = builder.gep(args["x"], [args["x_off"]])
    wbase = builder.gep(args["w"], [args["w_off"]])
    xdtype = args["x.dtype"]
    if kind == "f32":
        fma = _intrinsic_fn(builder, f"llvm.fmuladd.v{lanes}f32", vt, 3)
    with cgutils.for_range(builder, args["ntaps"]) as tap_loop:
        t = tap_loop.index
        toff = builder.load(builder.gep(args["tapoff"], [t]))
        wt = builder.gep(wbase, [builder.mul(t, args["wstep"])])
        if kind == "f32":
            wv = _vload(builder, wt, vt, 4)
        else:
            wv = builder.sext(_vload(builder, wt, ir.VectorType(_I16, lanes), 2), vt)
        for r in range(rows):
            p = builder.gep(xbase, [builder.add(builder.mul(args["xstep"], _c64(r)), toff)])
            if kind == "f32":
                new = builder.call(fma, [_vload(builder, p, vt, 4), wv, builder.load(slots[r])])
            else:
                raw = _vload(builder, p, ir.VectorType(_I8, lanes), 1)
                wide = builder.zext(raw, vt) if not xdtype.signed else builder.sext(raw, vt)
                new = builder.add(builder.load(slots[r]), builder.mul(wide, wv))
            builder.store(new, slots[r])
    return [[builder.load(slot)] for slot in slots]


def _emit_dw(builder, kind, nvec, epilogue, args):
    """Blocks of 4 pixels over `npix`, then single pixels."""
    npix = args["npix"]
    nblk = builder.sdiv(npix, _c64(_DW_PIXELS))

    def at(first):
        return args.with_values(x_off=builder.add(args["x_off"], builder.mul(first, args["xstep"])),
                                o_off=builder.add(args["o_off"], builder.mul(first, args["ldo"])),
                                nvalid=_c64(_DW_PIXELS))

    start = _bias_start(builder, kind, epilogue, args, 8 * nvec, 1)
    with cgutils.for_range(builder, nblk) as loop:
        a = at(builder.mul(loop.index, _c64(_DW_PIXELS)))
        _EPILOGUES[epilogue](builder, kind, _dw_accumulate(builder, kind, _DW_PIXELS, nvec, a, start), a)
    done = builder.mul(nblk, _c64(_DW_PIXELS))
    with cgutils.for_range(builder, builder.sub(npix, done)) as loop:
        a = at(builder.add(done, loop.index))
        _EPILOGUES[epilogue](builder, kind, _dw_accumulate(builder, kind, 1, nvec, a, start), a)


def _make_dw(kind: str, nvec: int, epilogue: str):
    """Depthwise row intrinsic: `kind` "f32" (fp32 x, w) or "i8" (u8/i8 x, int16 w), 8*nvec channels."""
    spec = _DW_ARGS + _EPILOGUE_ARGS[epilogue]

    def typer(typingctx, *argtys):
        if not all(_KIND_OK[k](t) for (_, k), t in zip(spec, argtys)):
            return None
        named = {n: t for (n, _), t in zip(spec, argtys)}
        xd, wdt = named["x"].dtype, named["w"].dtype
        if kind == "f32" and (xd != types.float32 or wdt != types.float32):
            return None
        if kind == "i8" and (xd not in (types.uint8, types.int8) or wdt != types.int16):
            return None
        if named["tapoff"].dtype != types.int64 or not _channel_dtypes_ok(epilogue, named):
            return None
        sig = types.void(*argtys)

        def codegen(context, builder, signature, llargs):
            _emit_dw(builder, kind, nvec, epilogue, _Args(context, builder, signature, llargs, spec))
            return context.get_dummy_value()

        return sig, codegen

    params = ", ".join(n for n, _ in spec)
    name = f"dw_{kind}_{epilogue}_{8 * nvec}"
    namespace = {"_typer": typer}
    exec(f"def {name}(typingctx, {params}):\n    return _typer(typingctx, {params})\n", namespace)
    return intrinsic(namespace[name])


#: depthwise row intrinsics by (kind, epilogue, channels), for 8, 16 and 32 channels (argument lists:
#: _DW_ARGS + the epilogue's).  32 channels are two zmm per pixel, so AVX-512 keeps 8 independent
#: accumulator chains in flight (4 pixels x 2), which hides the 4-5 cycle latency of `vpdpwssd` / FMA that a
#: 16-channel block (4 chains) is bound by; AVX2 has half the registers and stays at 16 (`dw_channels`).
DW_KERNELS = {(kind, epilogue, 8 * nvec): _make_dw(kind, nvec, epilogue)
              for kind, epilogue in (("f32", "f32"), ("f32", "f32_quant"), ("i8", "requant"), ("i8", "requant_add"),
                                     ("i8", "dequant"))
              for nvec in (1, 2, 4)}


# -- the generated code outside Numba (instruction-selection checks for any CPU) --------------
#: representative element types of each array argument, by accumulation kind and epilogue
_STANDALONE_DTYPES = {"rowoff": types.int64, "tapoff": types.int64, "mult": types.float32, "scale": types.float32,
                      "fbias": types.float32}


def standalone_ir(target, kind: str, epilogue: str) -> str:
    """LLVM IR text of one micro-kernel, `void kernel(<_ACC_ARGS + epilogue args>)`, with raw pointers
    for arrays: the same `_emit_kernel` code Numba inlines, in a module of its own, so that
    `llvmlite.binding` can compile it for a CPU other than the host's (`benchmarks/target_asm.py`,
    `tests/test_targets.py`).  Array element types: those of a u8 int8 layer or an fp32 layer."""
    a_dtypes, b_dtype, acc_dtype = _OPERAND_DTYPES[kind]
    out_dtype = types.float32 if epilogue in ("f32", "dequant") else types.uint8
    dtypes = {**_STANDALONE_DTYPES, "a": a_dtypes[0], "b": b_dtype, "c": acc_dtype, "out": out_dtype,
              "res": types.float32 if epilogue in ("f32", "f32_quant", "dequant") else types.uint8,
              "bias": types.float32 if kind == "f32" else types.int32}
    scalar = {"int": _I64, "f32": _F32, "bool": _I1}
    spec = _ACC_ARGS + _EPILOGUE_ARGS[epilogue]
    llty = [ir.IntType(dtypes[n].bitwidth).as_pointer() if k == "arr" and not isinstance(dtypes[n], types.Float)
            else _F32.as_pointer() if k == "arr" else scalar[k] for n, k in spec]
    module = ir.Module(name=f"{target.name}_{kind}_{epilogue}")
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), llty), "kernel")
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    args = _Args.__new__(_Args)
    args._vals = {}
    for (name, k), value in zip(spec, fn.args):
        args._vals[name] = value
        if k == "arr":
            args._vals[name + ".dtype"] = dtypes[name]
    _emit_kernel(builder, kind, epilogue, args, target)
    builder.ret_void()
    return str(module)
