"""What the int8 conv driver does differently for each dot product ("pairs" or "quads", `target.py`).

The packed weight's dtype says which one a layer was packed for (int16 pairs for `vpmaddwd`,
int8 quads for `vpdpbusd`, `packing.pack_conv_i8`); these `@overload`s read it while Numba
compiles `conv_i8.conv_i8_core`, so each specialisation holds only its own input preparation:

    dot_width(w)         channels per reduction step: 2 or 4
    packed_k(w)          the packed reduction length KH * KW * ICgp (without the quads' sum row)
    prepare_input(...)   "pairs": int16 x - zx with a zero border (`indirect.pad_widen_s16`);
                         "quads": u8 with a zero-point border (`indirect.pad_u8_quads`), or the
                         input itself when it is u8 and needs no padding
    effective_bias(...)  "pairs": the bias; "quads": bias - zu * sum_k w[oc, k], zu the input zero
                         point on the u8 grid (zx, or zx + 128 for i8 input)

All of it is exact int32 arithmetic: the quads' correction and the kernel's sums wrap modulo
2**32 together, so the final int32 equals sum_k (x - zx) * w + bias whenever that fits in int32
(which the reference interpreter requires).
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

from qv2c.runtime.kernels.indirect import pad_u8_quads, pad_widen_s16
from qv2c.runtime.kernels.tiling import pad_in_parallel


def packed_dot(w) -> str:
    """The dot product a packed int8 conv weight's Numba type was packed for: "pairs" or "quads"."""
    if w.dtype == types.int16:
        return "pairs"
    if w.dtype == types.int8:
        return "quads"
    raise TypeError(f"int8 conv: packed weights must be int16 (pairs) or int8 (quads), got {w.dtype}")


def _quads(w) -> bool:
    return packed_dot(w) == "quads"


def _u8_shift(x) -> int:
    """What turns x into the u8 grid of the quads kernels: 0 for u8, 128 for i8."""
    return 0 if x.dtype == types.uint8 else 128


def dot_width(w):
    raise NotImplementedError("compiled by Numba only")


def packed_k(w):
    raise NotImplementedError("compiled by Numba only")


def prepare_input(w, x, zx, pt, pl, groups, hp, wp, icp, parallel):
    raise NotImplementedError("compiled by Numba only")


def effective_bias(w, x, zx, bias, oc):
    raise NotImplementedError("compiled by Numba only")


@overload(dot_width)
def _dot_width(w):
    width = 4 if _quads(w) else 2
    return lambda w: width


@overload(packed_k)
def _packed_k(w):
    if _quads(w):
        return lambda w: 4 * (w.shape[2] - 1)
    return lambda w: 2 * w.shape[2]


@overload(prepare_input)
def _prepare_input(w, x, zx, pt, pl, groups, hp, wp, icp, parallel):
    if not _quads(w):
        def widen(w, x, zx, pt, pl, groups, hp, wp, icp, parallel):
            n, c = x.shape[0], x.shape[3]
            xp = np.empty((n, hp, wp, groups * icp), np.int16)
            pad_widen_s16(x, zx, pt, pl, groups, xp, pad_in_parallel(parallel, xp.size, icp * groups != c))
            return xp.reshape(xp.size)
        return widen
    shift = _u8_shift(x)
    if shift:
        return lambda w, x, zx, pt, pl, groups, hp, wp, icp, parallel: _pad_quads(x, shift, zx, pt, pl, groups, hp,
                                                                                   wp, icp, parallel)

    def quads_in_place(w, x, zx, pt, pl, groups, hp, wp, icp, parallel):
        n, h, wd, c = x.shape
        if hp == h and wp == wd and pt == 0 and pl == 0 and icp * groups == c:
            return x.reshape(x.size)
        return _pad_quads(x, 0, zx, pt, pl, groups, hp, wp, icp, parallel)
    return quads_in_place


@njit(cache=True, inline="always")
def _pad_quads(x, shift, zx, pt, pl, groups, hp, wp, icp, parallel):
    """The padded u8 copy of `pad_u8_quads`, flat."""
    n, c = x.shape[0], x.shape[3]
    xp = np.empty((n, hp, wp, groups * icp), np.uint8)
    pad_u8_quads(x, shift, zx + shift, pt, pl, groups, xp, pad_in_parallel(parallel, xp.size, icp * groups != c))
    return xp.reshape(xp.size)


@overload(effective_bias)
def _effective_bias(w, x, zx, bias, oc):
    if not _quads(w):
        return lambda w, x, zx, bias, oc: bias
    shift = _u8_shift(x)

    def corrected(w, x, zx, bias, oc):
        groups, npan, last, panel = w.shape[0], w.shape[1], w.shape[2] - 1, w.shape[3]
        ocg = oc // groups
        zu = np.int64(zx) + shift
        out = bias.copy()
        for g in range(groups):
            for pan in range(npan):
                for j in range(min(panel, ocg - pan * panel)):
                    s = np.int64(0)
                    for b in range(4):  # the little-endian int32 sum stored in the panel's last group
                        s += np.int64(np.uint8(w[g, pan, last, j, b])) << (8 * b)
                    if s >= 2 ** 31:
                        s -= 2 ** 32
                    o = g * ocg + pan * panel + j
                    out[o] = np.int32((np.int64(bias[o]) - zu * s) & 0xFFFFFFFF)
        return out
    return corrected
