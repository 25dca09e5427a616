"""Differential tests of the LRN kernel (`runtime/ops_lrn.py`) against the reference interpreter.

Hypothesis draws ranks (2-4: NHWC rows with channels contiguous, and row-major [N, C, L]),
shapes, window sizes (odd and even), alpha, beta and bias.  The power is the one step that
may round differently from the reference's float32 `**` (see the kernel's docstring), so
results must agree within 1e-5 relative per element; with beta = 0 or 1 the power is exact
on both sides, and then everything else (squares, window sums in the reference's order,
alpha / size rounded to float32, no FMA contraction, IEEE division) must be bit-exact.
"""

from __future__ import annotations

import numpy as np
import pytest
from compiled_check import run_compiled
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx_text import run_onnxruntime
from test_runtime import _private_cache  # noqa: F401 (autouse fixture: a private program cache)

import qv2c
from qv2c.ir import Builder, Module, TensorType, Value
from qv2c.runtime.ops_lrn import lrn_rows

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def lrn_module(shape, **attrs) -> Module:
    m = Module("lrn")
    x = m.add_input(Value(TensorType(tuple(shape), "f32"), "x"))
    m.outputs = [Builder(m).op("qv.lrn", [x], result_names=["y"], **attrs)]
    return m


@st.composite
def lrn_cases(draw, betas=(0.75, 0.75, 0.5, 1.3, 0.2)):
    rank = draw(st.integers(2, 4))
    spatial = tuple(draw(st.integers(1, 5)) for _ in range(rank - 2))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 24))) + spatial
    attrs = dict(size=draw(st.integers(1, 7)), alpha=draw(st.sampled_from([1e-4, 0.01, 0.5, 2.0])),
                 beta=draw(st.sampled_from(betas)), bias=draw(st.sampled_from([1.0, 2.0, 0.5, 1e-3])))
    scale = draw(st.sampled_from([1.0, 10.0, 0.01]))
    x = scale * np.random.default_rng(draw(st.integers(0, 2**31))).standard_normal(shape)
    return attrs, x.astype(np.float32)


@SETTINGS
@given(case=lrn_cases())
def test_lrn_matches_the_reference(case):
    attrs, x = case
    got, want, program = run_compiled(lrn_module(x.shape, **attrs), {"x": x})
    assert "lrn_rows" in [k.function for k in program.kernels]
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5, atol=0)


@SETTINGS
@given(case=lrn_cases(betas=(0.0, 1.0)))
def test_lrn_is_bit_exact_where_the_power_is(case):
    """beta 0 or 1: d**beta is exact in both, so the window sums and the division must match bit for bit."""
    attrs, x = case
    got, want, _ = run_compiled(lrn_module(x.shape, **attrs), {"x": x})
    np.testing.assert_array_equal(got["y"], want["y"])


@pytest.mark.parametrize("shape", [(1, 2, 2), (2, 1, 3, 3), (1, 3, 2, 2), (1, 4)])
@pytest.mark.parametrize("size", [5, 6, 9, 12])
def test_windows_wider_than_the_channels(shape, size):
    """A window reaching past every channel on both sides (row shifts longer than the row): exact at beta 1."""
    x = np.random.default_rng(size).standard_normal(shape).astype(np.float32)
    got, want, _ = run_compiled(lrn_module(shape, size=size, alpha=0.7, beta=1.0, bias=0.5), {"x": x})
    np.testing.assert_array_equal(got["y"], want["y"])


def test_zero_denominator_gives_what_the_reference_gives():
    """bias 0 and an all-zero window: 0 / 0 is NaN in the reference, and must not raise in the kernel."""
    x = np.random.default_rng(3).standard_normal((1, 6, 2, 2)).astype(np.float32)
    x[:, :3] = 0.0
    with np.errstate(invalid="ignore"):
        got, want, _ = run_compiled(lrn_module(x.shape, size=3, alpha=0.5, beta=1.0, bias=0.0), {"x": x})
    assert np.isnan(want["y"]).any()
    np.testing.assert_array_equal(got["y"], want["y"])


def test_large_lrn_runs_in_parallel():
    """AlexNet's first LRN, scaled down: big enough for the parallel path, which must agree with the reference."""
    x = (10 * np.random.default_rng(1).standard_normal((1, 48, 27, 27))).astype(np.float32)
    got, want, program = run_compiled(lrn_module(x.shape, size=5, alpha=1e-4, beta=0.75, bias=1.0), {"x": x})
    (call,) = [dict(k.args) for k in program.kernels if k.function == "lrn_rows"]
    assert call["parallel"] is True
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5, atol=0)


@SETTINGS
@given(rows=st.integers(1, 40), c=st.integers(1, 9), inner=st.integers(1, 3), size=st.integers(1, 6),
       beta=st.sampled_from([0.75, 0.6]), seed=st.integers(0, 2**31))
def test_parallel_and_serial_paths_agree(rows, c, inner, size, beta, seed):
    """Rows split into tasks (uneven at the boundaries) give the serial loop's bits."""
    x = np.random.default_rng(seed).standard_normal((rows, c * inner)).astype(np.float32)
    serial, par = np.empty_like(x), np.empty_like(x)
    lrn_rows(x, serial, inner, size, 0.02, 1.0, beta, False)
    lrn_rows(x, par, inner, size, 0.02, 1.0, beta, True)
    np.testing.assert_array_equal(par, serial)


def test_onnx_lrn_matches_onnxruntime():
    """An ONNX LRN node, compiled by `qv2c.compile`, against onnxruntime as an independent oracle."""
    import onnx.helper as oh
    from onnx import TensorProto

    node = oh.make_node("LRN", ["x"], ["y"], size=5, alpha=1e-3, beta=0.75, bias=2.0, name="norm1")
    graph = oh.make_graph([node], "lrn", [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 7, 7])],
                          [oh.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 7, 7])])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 13)], ir_version=8)
    x = (5 * np.random.default_rng(2).standard_normal((1, 16, 7, 7))).astype(np.float32)
    compiled = qv2c.compile(model, precision="fp32")
    assert "run_reference" not in compiled.source
    np.testing.assert_allclose(compiled.run(x)["y"], run_onnxruntime(model, {"x": x})["y"], rtol=1e-5, atol=1e-7)
