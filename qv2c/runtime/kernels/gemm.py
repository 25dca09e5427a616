"""Fully connected layers (GEMM with a packed weight), fp32 and int8, with fused epilogues.

An FC layer out[M, N] = a[M, K] @ w[N, K]^T + bias is a 1x1 convolution of an
[M, 1, 1, K] NHWC tensor, so these entry points reshape (free views) and call the
convolution drivers (`conv_f32_core`, `conv_i8_core`, called directly: every Numba layer
between an entry point and the micro-kernels is one more full LLVM pass over all of them on a
cold compile): the same register-blocked micro-kernels, the same epilogues, and the same task
split.  For batch 1 (M = 1) the split is over the
N / 16 weight panels (`tiling.plan_tiles` gives one pixel tile and many panel chunks),
and the single-row micro-kernel keeps 4 partial sums per accumulator so the FMA
latency is hidden; the layer is then bound by streaming the weights once.

Weights: `packing.pack_gemm_f32` / `pack_gemm_i8` (ONNX Gemm transB=1 layout [N, K] or
transB=0 [K, N]).  Activations: row-major [M, K] (fp32, or u8/i8 with zero point `za`).
"""

from __future__ import annotations

from numba import njit

from qv2c.runtime.kernels.conv_f32 import conv_f32_core
from qv2c.runtime.kernels.conv_i8 import conv_i8_core
from qv2c.runtime.kernels.epilogue_kind import dequant_params, f32_params, requant_params


@njit(cache=True, inline="always")
def _as_pixels(a):
    """[M, K] row-major -> [M, 1, 1, K] NHWC view."""
    return a.reshape(a.shape[0], 1, 1, a.shape[1])


@njit(cache=True, inline="always")
def _pointwise(a):
    """The geometry (kh, kw, sh, sw, pt, pl, dh, dw) of a 1x1 conv, as runtime int64 values.

    Passing literal 1s and 0s instead would make Numba compile a separate, constant-folded
    copy of the whole conv driver for the GEMM entry points (10+ s of extra JIT time each);
    values derived from the input keep the conv entry points' compiled code shared.
    """
    one = a.ndim // a.ndim
    return one, one, one, one, one - 1, one - 1, one, one


@njit(cache=True)
def gemm_f32(a, w, bias, res, out, lo, hi, has_res, tgt):
    """out[M, N] = clamp(a @ W^T + bias (+ res), lo, hi); a, res, out fp32 row-major; w packed."""
    conv_f32_core(_as_pixels(a), w, bias, _as_pixels(res), _as_pixels(out), *_pointwise(a),
                  f32_params(has_res, lo, hi), tgt)


@njit(cache=True)
def gemm_i8(a, za, w, bias, out, mult, zy, lo, hi, tgt):
    """out[M, N] (u8/i8) = clip(rint(f32(sum_k (a - za) * W + bias) * mult[n]) + zy, lo, hi)."""
    out4 = _as_pixels(out)
    conv_i8_core(_as_pixels(a), za, w, bias, out4, *_pointwise(a), requant_params(zy, lo, hi), mult, mult, out4, tgt)


@njit(cache=True)
def gemm_i8_dequant(a, za, w, bias, out, scale, fbias, res, has_res, lo, hi, tgt):
    """out[M, N] fp32 = clamp(f32(sum_k (a - za) * W + bias) * scale[n] + fbias[n] (+ res), lo, hi)."""
    conv_i8_core(_as_pixels(a), za, w, bias, _as_pixels(out), *_pointwise(a), dequant_params(has_res, lo, hi),
                 scale, fbias, _as_pixels(res), tgt)
