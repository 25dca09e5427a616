"""The kernels' helper loops against their plain definitions: pixel offsets (computed by increments),
the quad padding of a 3-channel input (written a uint32 per pixel), and the parallel elementwise
kernels (each task over slices of its arrays) against their own serial path."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from qv2c.runtime.kernels.indirect import pad_u8_quads, pixel_offsets
from qv2c.runtime.ops_elementwise import clamp_flat
from qv2c.runtime.ops_quant import dequantize_epilogue_flat, dequantize_flat, qadd_flat, quantize_flat, requantize_flat


def pixel_offsets_by_division(p0, count, oh, ow, sh, sw, hp, wp, cp, chan0, size):
    """The definition: each output pixel's receptive-field offset from its own (image, row, column)."""
    out, last = np.empty(size, np.int64), 0
    for i in range(size):
        if i < count:
            n, rem = divmod(p0 + i, oh * ow)
            yo, xo = divmod(rem, ow)
            last = ((n * hp + yo * sh) * wp + xo * sw) * cp + chan0
        out[i] = last
    return out


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9), st.integers(1, 3), st.integers(1, 3),
       st.integers(1, 40), st.integers(0, 5), st.data())
def test_pixel_offsets_match_their_definition(images, oh, ow, sh, sw, cp, chan0, data):
    total = images * oh * ow
    p0 = data.draw(st.integers(0, total - 1))
    count = data.draw(st.integers(1, total - p0))
    size = count + data.draw(st.integers(0, 12))
    hp, wp = oh * sh + 2, ow * sw + 3
    got = np.empty(size, np.int64)
    pixel_offsets(p0, count, oh, ow, sh, sw, hp, wp, cp, chan0, got)
    np.testing.assert_array_equal(got, pixel_offsets_by_division(p0, count, oh, ow, sh, sw, hp, wp, cp, chan0, size))


def quads_by_definition(x, shift, zu, pt, pl, hp, wp):
    """u8(x + shift) at (pt, pl), the zero point `zu` everywhere else, the 4th channel included."""
    xp = np.full((x.shape[0], hp, wp, 4), zu, np.uint8)
    xp[:, pt:pt + x.shape[1], pl:pl + x.shape[2], :3] = ((x.astype(np.int32) + shift) & 255).astype(np.uint8)
    return xp


def test_rgb_quad_padding_matches_its_definition():
    rng = np.random.default_rng(0)
    for dtype, shift in ((np.uint8, 0), (np.int8, 128)):
        x = rng.integers(0, 256, (2, 9, 7, 3)).astype(np.uint8).view(dtype)
        for pt, pl in ((0, 0), (1, 1), (2, 3)):
            hp, wp = 9 + 2 * pt + 1, 7 + 2 * pl
            want = quads_by_definition(x, shift, 77, pt, pl, hp, wp)
            for parallel in (False, True):
                got = np.empty((2, hp, wp, 4), np.uint8)
                pad_u8_quads(x, shift, 77, pt, pl, 1, got, parallel)
                np.testing.assert_array_equal(got, want)


def test_parallel_elementwise_kernels_equal_their_serial_path():
    """Sizes over several parallel tasks and not a multiple of one, so every task boundary is crossed."""
    rng = np.random.default_rng(1)
    n = 3 * (1 << 15) + 1001
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    a, b = rng.integers(0, 256, n).astype(np.uint8), rng.integers(0, 256, n).astype(np.uint8)
    runs = {
        "quantize": (lambda out, p: quantize_flat(x, out, 0.0161, 123, 0, 255, p), np.uint8),
        "dequantize": (lambda out, p: dequantize_flat(a, out, 0.02, 120, p), np.float32),
        "dequantize + residual": (lambda out, p: dequantize_epilogue_flat(a, x, out, 0.02, 120, True, 0.0, 6.0, p),
                                  np.float32),
        "requantize": (lambda out, p: requantize_flat(a, out, 120, 0.7, 10, 0, 255, p), np.uint8),
        "qadd": (lambda out, p: qadd_flat(a, b, out, 120, 0.02, 100, 0.03, 0.04, 7, 0, 255, p), np.uint8),
        "clamp": (lambda out, p: clamp_flat(x, out, -1.0, 2.0, p), np.float32),
    }
    for name, (run, dtype) in runs.items():
        serial, parallel = np.empty(n, dtype), np.empty(n, dtype)
        run(serial, False)
        run(parallel, True)
        np.testing.assert_array_equal(parallel, serial, err_msg=name)
    q = np.empty(n, np.uint8)
    quantize_flat(x, q, 0.0161, 123, 0, 255, True)
    np.testing.assert_array_equal(q, np.clip(np.rint(x / np.float32(0.0161)) + 123, 0, 255))
