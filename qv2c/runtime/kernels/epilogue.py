"""Fused epilogues: turn a block of accumulators into stored outputs, in the same kernel.

Every compute kernel (conv, depthwise, GEMM) produces accumulator blocks `acc[r * acc_ld + j]`
for `rows` output pixels starting at flat pixel `p0` and `nc` channels starting at `c0`,
then calls one of these to write `out[(p0 + r) * ldo + c0 + j]` (NHWC / row-major [P, OC],
flattened).  The block is still in L1, so the epilogue costs one pass over data that is
already hot instead of a separate kernel reading the whole tensor again.  The inner loop
runs over contiguous channels, so LLVM vectorises it (`vmaxps`, `vroundps`, `vcvtps2dq`...).

Arithmetic follows `qv2c/ir/quant_math.py` exactly (these functions are compiled without
fastmath, so no FMA contraction and IEEE division):

- `store_f32`:          y = clamp(acc + bias[c] (+ res), lo, hi)                        fp32 conv/GEMM
- `store_f32_quant`:    q = clip(rint(clamp(acc + bias (+ res), lo, hi) / s) + zp)        fp32 -> int8 boundary
- `store_requant`:      q = rint(clamp(f32(acc + b[c]) * M[c], lo - zy, hi - zy)) + zy    int8 conv ("float" requant)
                        or, with int32 shifts s[c] in place of M, the integer
                        clamp(((acc + b[c] + 2**(s-1)) >> s) << -s, lo - zy, hi - zy) + zy ("shift")
- `store_requant_add`:  q1 = store_requant(...) with its own (z1, lo1, hi1), then the
                        `qv.qadd` of q1 and an int8 residual r:
                        y = clip(rint((f32(q1 - z1) * s1 + f32(r - zr) * sr) / sy) + zy, lo, hi)
                        i.e. exactly qconv followed by qadd, without the intermediate tensor
- `store_dequant`:      y = clamp(f32(acc + b[c]) * S[c] + fb[c] (+ res), lo, hi)        int8 -> fp32 boundary

The residual (`res`) is added before the activation clamp (ResNet's relu(conv + shortcut));
a kernel without a residual passes any array of the right dtype (e.g. `out`) and
`has_res=False`.  Activations are clamps: none = (-inf, inf), relu = (0, inf),
relu6 = (0, 6), clip(lo, hi); for integer outputs they are integer bounds from
`quant_math.activation_bounds`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload


def requantized(acc, m, tlo, thi):
    """The requantized level minus the zero point, clamped to [tlo, thi], as an exact float32.

    `m` float32: rint(clamp(f32(acc) * m, tlo, thi)) (`quant_math.requantize_float`);
    `m` integer: the shift `quant_math.requantize_shift` does (int64, ties rounded half up).
    Numba picks the arithmetic from the type of `m` (the overload below).
    """
    raise NotImplementedError("compiled by Numba only")


@overload(requantized)
def _requantized(acc, m, tlo, thi):
    if isinstance(m, types.Integer):
        def shift(acc, m, tlo, thi):  # branch-free, so the channel loops still vectorise
            right = np.int64(max(m, 0))
            rounding = (np.int64(1) << right) >> 1  # 2**(m-1), or 0 when m <= 0
            r = ((np.int64(acc) + rounding) >> right) << np.int64(max(-m, 0))
            return np.float32(np.int32(min(max(r, np.int64(tlo)), np.int64(thi))))
        return shift

    def multiply(acc, m, tlo, thi):
        return np.rint(min(max(np.float32(acc) * m, tlo), thi))
    return multiply


@njit(cache=True)
def store_f32(acc, acc_ld, rows, nc, out, p0, ldo, c0, bias, res, has_res, lo, hi):
    """out = clamp(acc + bias (+ res), lo, hi) for a rows x nc block (fp32 output)."""
    lo32 = np.float32(lo)
    hi32 = np.float32(hi)
    b = bias[c0:c0 + nc]
    for r in range(rows):
        o = (p0 + r) * ldo + c0
        dst = out[o:o + nc]
        a = acc[r * acc_ld:r * acc_ld + nc]
        if has_res:
            rs = res[o:o + nc]
            for j in range(nc):
                dst[j] = min(max(a[j] + b[j] + rs[j], lo32), hi32)
        else:
            for j in range(nc):
                dst[j] = min(max(a[j] + b[j], lo32), hi32)


@njit(cache=True)
def store_f32_quant(acc, acc_ld, rows, nc, out, p0, ldo, c0, bias, res, has_res, lo, hi, q_scale, q_zp, q_lo, q_hi):
    """out = quantize(clamp(acc + bias (+ res), lo, hi)) with QuantizeLinear arithmetic (u8/i8 output)."""
    lo32 = np.float32(lo)
    hi32 = np.float32(hi)
    s = np.float32(q_scale)
    zp = np.float32(q_zp)
    qlo = np.float32(q_lo)
    qhi = np.float32(q_hi)
    b = bias[c0:c0 + nc]
    for r in range(rows):
        o = (p0 + r) * ldo + c0
        dst = out[o:o + nc]
        a = acc[r * acc_ld:r * acc_ld + nc]
        rs = res[o:o + nc] if has_res else res[0:0]
        for j in range(nc):
            v = a[j] + b[j]
            if has_res:
                v = v + rs[j]
            v = min(max(v, lo32), hi32)
            dst[j] = min(max(np.rint(v / s) + zp, qlo), qhi)


@njit(cache=True)
def store_requant(acc, acc_ld, rows, nc, out, p0, ldo, c0, bias, mult, zy, lo, hi):
    """out = rint(clamp(f32(acc + bias) * mult, lo - zy, hi - zy)) + zy (u8/i8 output); int32 `mult`: shifts."""
    tlo = np.float32(lo - zy)
    thi = np.float32(hi - zy)
    z = np.float32(zy)
    b = bias[c0:c0 + nc]
    m = mult[c0:c0 + nc]
    for r in range(rows):
        o = (p0 + r) * ldo + c0
        dst = out[o:o + nc]
        a = acc[r * acc_ld:r * acc_ld + nc]
        for j in range(nc):
            dst[j] = requantized(np.int32(a[j] + b[j]), m[j], tlo, thi) + z


@njit(cache=True)
def store_requant_add(acc, acc_ld, rows, nc, out, p0, ldo, c0, bias, mult, z1, lo1, hi1,
                      res, zr, sr, s1, sy, zy, lo, hi):
    """Requantize to an intermediate grid (z1, [lo1, hi1], scale s1), then add an int8 residual as `qv.qadd`."""
    tlo = np.float32(lo1 - z1)
    thi = np.float32(hi1 - z1)
    s1f = np.float32(s1)
    srf = np.float32(sr)
    syf = np.float32(sy)
    zrf = np.float32(zr)
    zyf = np.float32(zy)
    qlo = np.float32(lo)
    qhi = np.float32(hi)
    b = bias[c0:c0 + nc]
    m = mult[c0:c0 + nc]
    for r in range(rows):
        o = (p0 + r) * ldo + c0
        dst = out[o:o + nc]
        rs = res[o:o + nc]
        a = acc[r * acc_ld:r * acc_ld + nc]
        for j in range(nc):
            q1 = requantized(np.int32(a[j] + b[j]), m[j], tlo, thi)  # = requantized value minus z1, exactly
            s = q1 * s1f + (np.float32(rs[j]) - zrf) * srf
            dst[j] = min(max(np.rint(s / syf) + zyf, qlo), qhi)


@njit(cache=True)
def store_dequant(acc, acc_ld, rows, nc, out, p0, ldo, c0, bias, scale, fbias, res, has_res, lo, hi):
    """out = clamp(f32(acc + bias) * scale + fbias (+ res), lo, hi) (fp32 output from int32 accumulators)."""
    lo32 = np.float32(lo)
    hi32 = np.float32(hi)
    b = bias[c0:c0 + nc]
    sc = scale[c0:c0 + nc]
    fb = fbias[c0:c0 + nc]
    for r in range(rows):
        o = (p0 + r) * ldo + c0
        dst = out[o:o + nc]
        a = acc[r * acc_ld:r * acc_ld + nc]
        rs = res[o:o + nc] if has_res else res[0:0]
        for j in range(nc):
            v = np.float32(np.int32(a[j] + b[j])) * sc[j] + fb[j]
            if has_res:
                v = v + rs[j]
            dst[j] = min(max(v, lo32), hi32)
