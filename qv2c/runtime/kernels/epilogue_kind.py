"""The epilogues as types: each kernel specialisation compiles only the one it uses.

A conv, depthwise conv or GEMM ends every accumulator block with one of five epilogues
(`epilogue.py` at NumPy level, `microkernel.py` in registers):

    F32Act       fp32: bias (+ residual), activation clamp      (`conv2d_f32`, `depthwise_f32`, `gemm_f32`)
    F32Quant     the same, then quantize into u8/i8             (`*_f32_quant`: an fp32 -> int8 boundary)
    Requant      int8: requantize into u8/i8                    (`*_i8_requant`, `conv2d_i8`, `gemm_i8`)
    RequantAdd   requantize, then `qv.qadd` of an int8 residual (`*_i8_requant` with `has_res`, `*_i8_add`)
    Dequant      dequantize straight to fp32                    (`*_i8_dequant`: an int8 -> fp32 boundary)

A driver receives its epilogue's scalar parameters as one of the named tuples below.  The
tuple's class is part of its Numba type, and the functions here are `@overload`s that pick
the micro-kernel and the NumPy-level store of that class while compiling.  So a driver
specialisation holds one epilogue: a micro-kernel is several kilobytes of vector code, and LLVM
optimising epilogues a driver never runs is what cold compiles spent their time on.

The per-channel arrays stay separate arguments, `mult` (or `scale`), `fbias` and `res`:
arrays travel into `prange` bodies as plain arguments.  `mult` is either float32 M[c]
("float" requantization) or int32 shifts s[c] with M[c] = 2**-s[c] ("shift"
requantization, `quant_math.requantize_shift`); its dtype selects the arithmetic inside
the requantizing epilogues, so a "shift" layer is one more specialisation of the same
kernels, not another set of them.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit, types
from numba.extending import overload

from qv2c.runtime.kernels.dispatch import f32_act, f32_quant, int8_dequant, int8_requant, int8_requant_add
from qv2c.runtime.kernels.epilogue import store_dequant, store_f32, store_f32_quant, store_requant, store_requant_add
from qv2c.runtime.kernels.microkernel import DW_KERNELS

#: y = clamp(acc + bias (+ res), lo, hi) in fp32; lo32/hi32 the same bounds as float32
F32Act = namedtuple("F32Act", "lo32 hi32 has_res lo hi")
#: F32Act, then q = clip(rint(y / q_scale) + q_zp, q_lo, q_hi) into u8/i8
F32Quant = namedtuple("F32Quant", "lo32 hi32 has_res lo hi q_scale q_zp q_lo q_hi")
#: y = requantize(acc) + zy in [lo, hi]; tlo/thi = lo - zy, hi - zy as float32 (see `epilogue.store_requant`)
Requant = namedtuple("Requant", "tlo thi zy lo hi has_res")
#: requantize into an intermediate grid (z1, [lo1, hi1], scale s1), then `qv.qadd` with the residual
#: (zr, sr) into the output (sy, zy, [lo, hi]); tlo/thi = lo1 - z1, hi1 - z1 as float32
RequantAdd = namedtuple("RequantAdd", "tlo thi z1 lo1 hi1 zr sr s1 sy zy lo hi has_res")
#: y = clamp(f32(acc) * scale + fbias (+ res), lo, hi) in fp32
Dequant = namedtuple("Dequant", "lo hi has_res")


@njit(cache=True, inline="always")
def f32_params(has_res, lo, hi):
    """The `F32Act` parameters: fp32 clamp [lo, hi], with or without a residual."""
    return F32Act(np.float32(lo), np.float32(hi), has_res, float(lo), float(hi))


@njit(cache=True, inline="always")
def f32_quant_params(has_res, lo, hi, q_scale, q_zp, q_lo, q_hi):
    """The `F32Quant` parameters: `f32_params`, then QuantizeLinear with (q_scale, q_zp) into [q_lo, q_hi]."""
    return F32Quant(np.float32(lo), np.float32(hi), has_res, float(lo), float(hi), q_scale, q_zp, q_lo, q_hi)


@njit(cache=True, inline="always")
def requant_params(zy, lo, hi):
    """The `Requant` parameters of an output with zero point zy and integer bounds [lo, hi]."""
    return Requant(np.float32(lo - zy), np.float32(hi - zy), zy, float(lo), float(hi), False)


@njit(cache=True, inline="always")
def requant_add_params(z1, lo1, hi1, s1, zr, sr, sy, zy, lo, hi):
    """The `RequantAdd` parameters (see the class comment)."""
    return RequantAdd(np.float32(lo1 - z1), np.float32(hi1 - z1), z1, float(lo1), float(hi1), zr, sr, s1, sy, zy,
                      float(lo), float(hi), True)


@njit(cache=True, inline="always")
def dequant_params(has_res, lo, hi):
    """The `Dequant` parameters: fp32 clamp [lo, hi], with or without a residual."""
    return Dequant(float(lo), float(hi), has_res)


def _kind(ep) -> type:
    """The epilogue class of a Numba named-tuple type."""
    cls = getattr(ep, "instance_class", None)
    if cls not in (F32Act, F32Quant, Requant, RequantAdd, Dequant):
        raise TypeError(f"not an epilogue: {ep}")
    return cls


# -- the dispatch functions (Python stubs; Numba compiles the overloads) ---------------------
def panel_kernel(tgt, ep, nrows, xpf, pix, tapoff, ntaps, kc, wf, b_off, outf, o_off, ldo, bias, mult, fbias, resf,
                 c0):
    """Micro-kernel of target `tgt` for `nrows` pixels x one full 16-channel weight panel, with `ep`'s epilogue
    (`mult` and `fbias` are read by the int8 epilogues only)."""
    raise NotImplementedError("compiled by Numba only")


def store_block(ep, acc, acc_ld, rows, nc, outf, p0, ldo, c0, bias, mult, fbias, resf):
    """NumPy-level epilogue of an accumulator block (the channels a depthwise kernel's vectors leave over)."""
    raise NotImplementedError("compiled by Numba only")


def dw_kernel(ep, nvec, npx, xf, x_off, xstep, tapoff, ntaps, wf, w_off, wstep, outf, o_off, ldo, bias, mult, fbias,
              resf, c0):
    """Depthwise row kernel over 8 * nvec channels (nvec 1, 2 or 4, a literal) with `ep`'s epilogue."""
    raise NotImplementedError("compiled by Numba only")


@overload(panel_kernel, inline="always")
def _panel_kernel(tgt, ep, nrows, xpf, pix, tapoff, ntaps, kc, wf, b_off, outf, o_off, ldo, bias, mult, fbias, resf,
                  c0):
    kind = _kind(ep)
    if kind is F32Act:
        def act(tgt, ep, nrows, xpf, pix, tapoff, ntaps, kc, wf, b_off, outf, o_off, ldo, bias, mult, fbias, resf, c0):
            f32_act(tgt, nrows, xpf, pix, 0, tapoff, ntaps, kc, wf, b_off, outf, o_off, ldo, bias, c0, resf,
                    ep.has_res, ep.lo32, ep.hi32)
        return act
    if kind is F32Quant:
        def act_quant(tgt, ep, nrows, xpf, pix, tapoff, ntaps, kc, wf, b_off, outf, o_off, ldo, bias, mult, fbias,
                      resf, c0):
            f32_quant(tgt, nrows, xpf, pix, 0, tapoff, ntaps, kc, wf, b_off, outf, o_off, ldo, bias, c0, resf,
                      ep.has_res, ep.lo32, ep.hi32, ep.q_scale, ep.q_zp, ep.q_lo, ep.q_hi)
        return act_quant
    if kind is Requant:
        def requant(tgt, ep, nrows, xpf, pix, tapoff, ntaps, kc, wf, b_off, outf, o_off, ldo, bias, mult, fbias, resf,
                    c0):
            int8_requant(tgt, nrows, xpf, pix, 0, tapoff, ntaps, kc, wf, b_off, outf, o_off, ldo, bias, mult, c0,
                         ep.tlo, ep.thi, ep.zy)
        return requant
    if kind is RequantAdd:
        def requant_add(tgt, ep, nrows, xpf, pix, tapoff, ntaps, kc, wf, b_off, outf, o_off, ldo, bias, mult, fbias,
                        resf, c0):
            int8_requant_add(tgt, nrows, xpf, pix, 0, tapoff, ntaps, kc, wf, b_off, outf, o_off, ldo, bias, mult, c0,
                             ep.tlo, ep.thi, resf, ep.zr, ep.sr, ep.s1, ep.sy, ep.zy, ep.lo, ep.hi)
        return requant_add

    def dequant(tgt, ep, nrows, xpf, pix, tapoff, ntaps, kc, wf, b_off, outf, o_off, ldo, bias, mult, fbias, resf, c0):
        int8_dequant(tgt, nrows, xpf, pix, 0, tapoff, ntaps, kc, wf, b_off, outf, o_off, ldo, bias, mult, fbias, c0,
                     resf, ep.has_res, ep.lo, ep.hi)
    return dequant


@overload(store_block)
def _store_block(ep, acc, acc_ld, rows, nc, outf, p0, ldo, c0, bias, mult, fbias, resf):
    kind = _kind(ep)
    if kind is F32Act:
        def act(ep, acc, acc_ld, rows, nc, outf, p0, ldo, c0, bias, mult, fbias, resf):
            store_f32(acc, acc_ld, rows, nc, outf, p0, ldo, c0, bias, resf, ep.has_res, ep.lo, ep.hi)
        return act
    if kind is F32Quant:
        def act_quant(ep, acc, acc_ld, rows, nc, outf, p0, ldo, c0, bias, mult, fbias, resf):
            store_f32_quant(acc, acc_ld, rows, nc, outf, p0, ldo, c0, bias, resf, ep.has_res, ep.lo, ep.hi,
                            ep.q_scale, ep.q_zp, ep.q_lo, ep.q_hi)
        return act_quant
    if kind is Requant:
        def requant(ep, acc, acc_ld, rows, nc, outf, p0, ldo, c0, bias, mult, fbias, resf):
            store_requant(acc, acc_ld, rows, nc, outf, p0, ldo, c0, bias, mult, ep.zy, ep.lo, ep.hi)
        return requant
    if kind is RequantAdd:
        def requant_add(ep, acc, acc_ld, rows, nc, outf, p0, ldo, c0, bias, mult, fbias, resf):
            store_requant_add(acc, acc_ld, rows, nc, outf, p0, ldo, c0, bias, mult, ep.z1, ep.lo1, ep.hi1,
                              resf, ep.zr, ep.sr, ep.s1, ep.sy, ep.zy, ep.lo, ep.hi)
        return requant_add

    def dequant(ep, acc, acc_ld, rows, nc, outf, p0, ldo, c0, bias, mult, fbias, resf):
        store_dequant(acc, acc_ld, rows, nc, outf, p0, ldo, c0, bias, mult, fbias, resf, ep.has_res, ep.lo, ep.hi)
    return dequant


@overload(dw_kernel, prefer_literal=True)
def _dw_kernel(ep, nvec, npx, xf, x_off, xstep, tapoff, ntaps, wf, w_off, wstep, outf, o_off, ldo, bias, mult, fbias,
               resf, c0):
    kind = _kind(ep)
    if not isinstance(nvec, types.IntegerLiteral) or nvec.literal_value not in (1, 2, 4):
        raise TypeError("dw_kernel: nvec must be the literal 1, 2 or 4")
    channels = 8 * nvec.literal_value
    if kind is F32Act:
        mk_act = DW_KERNELS[("f32", "f32", channels)]

        def act(ep, nvec, npx, xf, x_off, xstep, tapoff, ntaps, wf, w_off, wstep, outf, o_off, ldo, bias, mult,
                fbias, resf, c0):
            mk_act(npx, xf, x_off, xstep, tapoff, ntaps, wf, w_off, wstep, outf, o_off, ldo, bias, c0, resf,
                   ep.has_res, ep.lo32, ep.hi32)
        return act
    if kind is F32Quant:
        mk_quant = DW_KERNELS[("f32", "f32_quant", channels)]

        def act_quant(ep, nvec, npx, xf, x_off, xstep, tapoff, ntaps, wf, w_off, wstep, outf, o_off, ldo, bias, mult,
                      fbias, resf, c0):
            mk_quant(npx, xf, x_off, xstep, tapoff, ntaps, wf, w_off, wstep, outf, o_off, ldo, bias, c0, resf,
                     ep.has_res, ep.lo32, ep.hi32, ep.q_scale, ep.q_zp, ep.q_lo, ep.q_hi)
        return act_quant
    if kind is Requant:
        mk = DW_KERNELS[("i8", "requant", channels)]

        def requant(ep, nvec, npx, xf, x_off, xstep, tapoff, ntaps, wf, w_off, wstep, outf, o_off, ldo, bias, mult,
                    fbias, resf, c0):
            mk(npx, xf, x_off, xstep, tapoff, ntaps, wf, w_off, wstep, outf, o_off, ldo, bias, mult, c0,
               ep.tlo, ep.thi, ep.zy)
        return requant
    if kind is RequantAdd:
        mk_add = DW_KERNELS[("i8", "requant_add", channels)]

        def requant_add(ep, nvec, npx, xf, x_off, xstep, tapoff, ntaps, wf, w_off, wstep, outf, o_off, ldo, bias,
                        mult, fbias, resf, c0):
            mk_add(npx, xf, x_off, xstep, tapoff, ntaps, wf, w_off, wstep, outf, o_off, ldo, bias, mult, c0,
                   ep.tlo, ep.thi, resf, ep.zr, ep.sr, ep.s1, ep.sy, ep.zy, ep.lo, ep.hi)
        return requant_add
    mk_dq = DW_KERNELS[("i8", "dequant", channels)]

    def dequant(ep, nvec, npx, xf, x_off, xstep, tapoff, ntaps, wf, w_off, wstep, outf, o_off, ldo, bias, mult,
                fbias, resf, c0):
        mk_dq(npx, xf, x_off, xstep, tapoff, ntaps, wf, w_off, wstep, outf, o_off, ldo, bias, mult, fbias, c0,
              resf, ep.has_res, ep.lo, ep.hi)
    return dequant
