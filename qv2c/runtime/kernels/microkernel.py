"""Register-blocked GEMM micro-kernels, written as LLVM vector IR through `numba.extending.intrinsic`.

Why IR and not a plain Numba loop: LLVM only vectorises a Numba loop along its innermost
index.  For a dot product over K ("reduction form") that gives good loops, but every
output then needs its own horizontal sum, which dominates when K is small (27 for a
first conv, 64 for a SqueezeNet squeeze).  The fast form for CPUs is the outer-product
("broadcast") micro-kernel of BLIS/oneDNN: accumulators for R output pixels x 16 output
channels stay in vector registers for the whole K loop, each step broadcasts one
activation per pixel and loads 16 weights once.  Numba cannot express a register-resident
accumulator tile (local arrays live in memory and alias every other array), so the
kernel is emitted as IR: the accumulators are `<8 x float>` / `<8 x i32>` SSA values.

Only target-independent IR is used (`fmul`/`fadd` fused by `llvm.fmuladd`, `sext`, `mul`,
`shufflevector`, `add`), so LLVM picks the instructions for the CPU the JIT runs on:

- fp32: `vbroadcastss` + `vfmadd231ps` (AVX2+FMA); `mulps`+`addps` on SSE2-only CPUs.
- int16 pairs: `mul(sext a, sext b)` followed by "even lanes + odd lanes" is exactly the
  semantics of `pmaddwd`, and LLVM's x86 backend matches it to a single `vpmaddwd`
  (AVX2), `pmaddwd` (SSE2) or `vpdpwssd` (AVX-512 VNNI, which also folds the add).
  Products of two int16 values summed in pairs into int32 never saturate, so this is
  exact for any u8/i8 activation minus zero point (|v| <= 255) times an int8 weight,
  unlike `vpmaddubsw`, whose int16 pair sum saturates.

Operands (all C-contiguous arrays of any rank, addressed by flat element offsets):

    f32:  C[c_off + r*ldc + j]  = sum_k A[a_off + r*lda + k] * B[b_off + k*16 + j]
    s16:  C[c_off + r*ldc + j]  = sum_q sum_{e=0,1} A[a_off + r*lda + 2q + e] * B[b_off + q*32 + 2j + e]

for r < R (1..6 pixels) and j < 16 output channels; C is overwritten.  A holds one row
of K activations per output pixel (an im2col row, or an NHWC pixel for 1x1 convs); B is
a weight panel packed by `packing.py` as [K][16] (fp32) or [K/2][16][2] (int16 pairs,
"K-major with pairs interleaved"), so one 32-byte load feeds one FMA / `vpmaddwd`.

Per K step the 6x16 fp32 kernel issues 6 broadcasts, 2 weight loads and 12 FMAs on 12
accumulator registers (+2 weight, +1 broadcast register = 15 of the 16 ymm registers).
With fewer rows, fp32 accumulators are split over K ("ksplit" partial sums added at the
end) so at least 8 independent FMA chains hide the 4-cycle FMA latency; integer adds
have 1-cycle latency and need no split.

Caching caveat: Numba's on-disk cache (`cache=True`) of a kernel that calls these
intrinsics is keyed on the kernel's own source file only.  After editing this file,
delete the `__pycache__/*.nbi|*.nbc` files of the kernel modules (or touch them).
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

#: output channels per weight panel (two 8-lane vectors)
PANEL = 16
#: pixel rows per micro-kernel call
MAX_ROWS = 6

_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


def _ksplit_f32(rows: int) -> int:
    """Partial-sum sets per accumulator so that rows * 2 * ksplit >= 8 FMA chains are in flight."""
    return {1: 4, 2: 2, 3: 2}.get(rows, 1)


def _data_ptr(context, builder, arrty, arr, offset):
    """Pointer to element `offset` of array value `arr` (any rank, contiguous)."""
    return builder.gep(context.make_array(arrty)(context, builder, arr).data, [offset])


def _splat(builder, vecty, scalar):
    """<n x T> with every lane equal to `scalar`."""
    n = vecty.count
    v = builder.insert_element(ir.Constant(vecty, ir.Undefined), scalar, ir.Constant(_I32, 0))
    return builder.shuffle_vector(v, ir.Constant(vecty, ir.Undefined), ir.Constant(ir.VectorType(_I32, n), [0] * n))


def _vector_at(builder, base, offset_elems, vecty, align):
    """Load a vector starting `offset_elems` scalars after pointer `base` (unaligned access)."""
    p = builder.gep(base, [ir.Constant(_I64, offset_elems)]) if isinstance(offset_elems, int) else \
        builder.gep(base, [offset_elems])
    return builder.load(builder.bitcast(p, vecty.as_pointer()), align=align)


def _args_as_intp(context, builder, sig, args, positions):
    return [context.cast(builder, args[i], sig.args[i], types.intp) for i in positions]


def _check_types(arrays, dtypes, ints):
    ok = all(isinstance(a, types.Array) and a.dtype == d for a, d in zip(arrays, dtypes))
    return ok and all(isinstance(i, types.Integer) for i in ints)


def _make_f32(rows: int):
    ksplit = _ksplit_f32(rows)

    @intrinsic
    def mk(typingctx, c, c_off, ldc, a, a_off, lda, b, b_off, k):
        if not _check_types((c, a, b), (types.float32,) * 3, (c_off, ldc, a_off, lda, b_off, k)):
            return None
        sig = types.void(c, c_off, ldc, a, a_off, lda, b, b_off, k)

        def codegen(context, builder, signature, args):
            c_off_, ldc_, a_off_, lda_, b_off_, k_ = _args_as_intp(context, builder, signature, args,
                                                                   (1, 2, 4, 5, 7, 8))
            st = signature.args
            f32 = ir.FloatType()
            vt = ir.VectorType(f32, 8)
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                                                 "llvm.fmuladd.v8f32")
            cp = _data_ptr(context, builder, st[0], args[0], c_off_)
            ap = _data_ptr(context, builder, st[3], args[3], a_off_)
            bp = _data_ptr(context, builder, st[6], args[6], b_off_)
            rowp = [builder.gep(ap, [builder.mul(lda_, ir.Constant(_I64, r))]) for r in range(rows)]
            acc = [[[cgutils.alloca_once(builder, vt) for _ in range(2)] for _ in range(rows)] for _ in range(ksplit)]
            for s in acc:
                for row in s:
                    for slot in row:
                        builder.store(ir.Constant(vt, None), slot)

            def step(kidx, s):
                bk = builder.gep(bp, [builder.mul(kidx, ir.Constant(_I64, PANEL))])
                bv = [_vector_at(builder, bk, 8 * j, vt, 4) for j in range(2)]
                for r in range(rows):
                    av = _splat(builder, vt, builder.load(builder.gep(rowp[r], [kidx]), align=4))
                    for j in range(2):
                        slot = acc[s][r][j]
                        builder.store(builder.call(fma, [av, bv[j], builder.load(slot)]), slot)

            nmain = builder.sdiv(k_, ir.Constant(_I64, ksplit)) if ksplit > 1 else k_
            with cgutils.for_range(builder, nmain) as loop:
                base = builder.mul(loop.index, ir.Constant(_I64, ksplit)) if ksplit > 1 else loop.index
                for s in range(ksplit):
                    step(builder.add(base, ir.Constant(_I64, s)) if s else base, s)
            if ksplit > 1:
                done = builder.mul(nmain, ir.Constant(_I64, ksplit))
                with cgutils.for_range(builder, builder.sub(k_, done)) as loop:
                    step(builder.add(done, loop.index), 0)
            for r in range(rows):
                crow = builder.gep(cp, [builder.mul(ldc_, ir.Constant(_I64, r))])
                for j in range(2):
                    total = builder.load(acc[0][r][j])
                    for s in range(1, ksplit):
                        total = builder.fadd(total, builder.load(acc[s][r][j]))
                    builder.store(total, builder.bitcast(builder.gep(crow, [ir.Constant(_I64, 8 * j)]),
                                                         vt.as_pointer()), align=4)
            return context.get_dummy_value()

        return sig, codegen

    return mk


def _make_s16(rows: int):
    @intrinsic
    def mk(typingctx, c, c_off, ldc, a, a_off, lda, b, b_off, kpairs):
        if not _check_types((c, a, b), (types.int32, types.int16, types.int16), (c_off, ldc, a_off, lda, b_off, kpairs)):
            return None
        sig = types.void(c, c_off, ldc, a, a_off, lda, b, b_off, kpairs)

        def codegen(context, builder, signature, args):
            c_off_, ldc_, a_off_, lda_, b_off_, kp_ = _args_as_intp(context, builder, signature, args,
                                                                    (1, 2, 4, 5, 7, 8))
            st = signature.args
            i16 = ir.IntType(16)
            v16 = ir.VectorType(i16, 16)
            v8 = ir.VectorType(_I32, 8)
            w16 = ir.VectorType(_I32, 16)
            even = ir.Constant(v8, list(range(0, 16, 2)))
            odd = ir.Constant(v8, list(range(1, 16, 2)))
            cp = _data_ptr(context, builder, st[0], args[0], c_off_)
            ap = _data_ptr(context, builder, st[3], args[3], a_off_)
            bp = _data_ptr(context, builder, st[6], args[6], b_off_)
            rowp = [builder.bitcast(builder.gep(ap, [builder.mul(lda_, ir.Constant(_I64, r))]), _I32.as_pointer())
                    for r in range(rows)]
            acc = [[cgutils.alloca_once(builder, v8) for _ in range(2)] for _ in range(rows)]
            for row in acc:
                for slot in row:
                    builder.store(ir.Constant(v8, None), slot)
            with cgutils.for_range(builder, kp_) as loop:
                q = loop.index
                bq = builder.gep(bp, [builder.mul(q, ir.Constant(_I64, 2 * PANEL))])
                bv = [builder.sext(_vector_at(builder, bq, 16 * j, v16, 2), w16) for j in range(2)]
                for r in range(rows):
                    pair = builder.load(builder.gep(rowp[r], [q]), align=2)  # (a[2q], a[2q+1]) as one i32
                    av = builder.sext(builder.bitcast(_splat(builder, v8, pair), v16), w16)
                    for j in range(2):
                        prod = builder.mul(av, bv[j])
                        pairsum = builder.add(builder.shuffle_vector(prod, prod, even),
                                              builder.shuffle_vector(prod, prod, odd))
                        slot = acc[r][j]
                        builder.store(builder.add(builder.load(slot), pairsum), slot)
            for r in range(rows):
                crow = builder.gep(cp, [builder.mul(ldc_, ir.Constant(_I64, r))])
                for j in range(2):
                    builder.store(builder.load(acc[r][j]),
                                  builder.bitcast(builder.gep(crow, [ir.Constant(_I64, 8 * j)]), v8.as_pointer()),
                                  align=4)
            return context.get_dummy_value()

        return sig, codegen

    return mk


_f32_1, _f32_2, _f32_3, _f32_4, _f32_5, _f32_6 = (_make_f32(r) for r in range(1, MAX_ROWS + 1))
_s16_1, _s16_2, _s16_3, _s16_4, _s16_5, _s16_6 = (_make_s16(r) for r in range(1, MAX_ROWS + 1))


@njit(cache=True)
def mk_f32(rows, c, c_off, ldc, a, a_off, lda, b, b_off, k):
    """fp32 micro-kernel for 1 <= rows <= 6 pixel rows x 16 channels (see the module docstring)."""
    if rows == 6:
        _f32_6(c, c_off, ldc, a, a_off, lda, b, b_off, k)
    elif rows == 5:
        _f32_5(c, c_off, ldc, a, a_off, lda, b, b_off, k)
    elif rows == 4:
        _f32_4(c, c_off, ldc, a, a_off, lda, b, b_off, k)
    elif rows == 3:
        _f32_3(c, c_off, ldc, a, a_off, lda, b, b_off, k)
    elif rows == 2:
        _f32_2(c, c_off, ldc, a, a_off, lda, b, b_off, k)
    else:
        _f32_1(c, c_off, ldc, a, a_off, lda, b, b_off, k)


@njit(cache=True)
def mk_s16(rows, c, c_off, ldc, a, a_off, lda, b, b_off, kpairs):
    """int16-pair micro-kernel (int32 accumulators) for 1 <= rows <= 6 pixel rows x 16 channels."""
    if rows == 6:
        _s16_6(c, c_off, ldc, a, a_off, lda, b, b_off, kpairs)
    elif rows == 5:
        _s16_5(c, c_off, ldc, a, a_off, lda, b, b_off, kpairs)
    elif rows == 4:
        _s16_4(c, c_off, ldc, a, a_off, lda, b, b_off, kpairs)
    elif rows == 3:
        _s16_3(c, c_off, ldc, a, a_off, lda, b, b_off, kpairs)
    elif rows == 2:
        _s16_2(c, c_off, ldc, a, a_off, lda, b, b_off, kpairs)
    else:
        _s16_1(c, c_off, ldc, a, a_off, lda, b, b_off, kpairs)
