"""Differential tests of the channel-permutation kernel (`runtime/ops_layout.permute_channels`, the op
`qv.permute_channels` that `fold-channel-permutation` leaves of a shuffle no reader absorbs) against the
reference interpreter, bit for bit: Hypothesis draws ranks 2-4 (NHWC rows with channels contiguous, and
row-major [N, C, L]), shapes, orders, dtypes (f32 and quantized u8/i8 codes, which must pass unchanged)
and the serial or parallel path, including fewer rows than tasks (the tasks then split the channels)."""

from __future__ import annotations

import numpy as np
from compiled_check import kernel_calls, run_compiled
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_runtime import _private_cache  # noqa: F401 (autouse fixture: a private program cache)

from qv2c.ir import Builder, Module, QuantParams, TensorType, Value
from qv2c.runtime.ops_layout import permute_channels

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def cases(draw):
    rank = draw(st.integers(2, 4))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 40))) + tuple(draw(st.integers(1, 6))
                                                                         for _ in range(rank - 2))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    dtype = draw(st.sampled_from(["f32", "u8", "i8"]))
    order = rng.permutation(shape[1])
    if dtype == "f32":
        x = rng.standard_normal(shape).astype(np.float32)
    else:
        info = np.iinfo({"u8": np.uint8, "i8": np.int8}[dtype])
        x = rng.integers(info.min, info.max + 1, shape).astype(info.dtype)
    return x, dtype, order


@SETTINGS
@given(case=cases())
def test_permute_channels_matches_the_reference(case):
    x, dtype, order = case
    quant = None if dtype == "f32" else QuantParams((0.05,), (3,))
    m = Module("perm")
    t = TensorType(x.shape, dtype, quant)
    xv = m.add_input(Value(t, "x"))
    m.outputs = [Builder(m).op("qv.permute_channels", [xv], result_types=[t], result_names=["y"],
                               order=[int(i) for i in order])]
    got, want, program = run_compiled(m, {"x": x})
    assert "permute_channels" in kernel_calls(program)
    np.testing.assert_array_equal(got["y"], want["y"])
    np.testing.assert_array_equal(want["y"], np.take(x, order, axis=1))


@SETTINGS
@given(rows=st.integers(1, 20), c=st.integers(1, 30), inner=st.integers(1, 4), parallel=st.booleans(),
       seed=st.integers(0, 2**31))
def test_kernel_paths_agree_with_numpy(rows, c, inner, parallel, seed):
    """Both task splits (rows, or channels when there are fewer rows than tasks) and the serial path."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, c, inner)).astype(np.float32)
    order = rng.permutation(c).astype(np.int64)
    out = np.full_like(x, np.nan)
    permute_channels(x, out, order, parallel)
    np.testing.assert_array_equal(out, x[:, order])
