"""Differential tests of the kernels that replaced the NumPy reference fallback (besides LRN,
`test_kernels_lrn.py`), each against the reference interpreter through a compiled program.

Hypothesis draws shapes, ranks, broadcasting patterns, dtypes, zero points and attributes.
Integer results and fp32 results computed by the same float32 operations as the reference
(broadcast arithmetic, batch norm) must be equal bit for bit; sums the reference leaves to
BLAS or NumPy's pairwise summation (matmul, gemm, an fp32 global average pool) within 1e-5
of the output's magnitude.
"""

from __future__ import annotations

import numpy as np
import pytest
from compiled_check import kernel_calls, run_compiled
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_runtime import _private_cache, assert_close, qtype  # noqa: F401 (_private_cache: autouse, a private cache)

from qv2c.codegen import standalone
from qv2c.ir import Builder, Module, TensorType, Value
from qv2c.ir.fused import is_anchor

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = st.integers(0, 2**31)


def values(rng, t: TensorType, low: float = -2.0, high: float = 2.0) -> np.ndarray:
    if t.dtype == "f32":
        return rng.uniform(low, high, t.shape).astype(np.float32)
    info = np.iinfo(t.numpy_dtype)
    return rng.integers(info.min, info.max + 1, t.shape).astype(t.numpy_dtype)


def module_of(name: str, operands: list[tuple[str, TensorType | np.ndarray]], result_type=None, **attrs):
    """A one-op module: operands are (name, type) inputs or (name, array) constants."""
    m = Module("t")
    vals = [m.add_input(Value(o, n)) if isinstance(o, TensorType) else m.add_constant(o, n) for n, o in operands]
    types = [result_type] if result_type is not None else None
    m.outputs = [Builder(m).op(name, vals, result_types=types, result_names=["y"], **attrs)]
    return m


def feeds_of(m: Module, rng) -> dict[str, np.ndarray]:
    return {v.name: values(rng, v.type) for v in m.inputs}


@st.composite
def broadcast_pair(draw, min_rank: int, max_rank: int):
    """(result shape, a shape, b shape): each operand a suffix of the result with some axes broadcast (size 1)."""
    rank = draw(st.integers(min_rank, max_rank))
    out = tuple(draw(st.integers(1, 3)) for _ in range(rank))

    def operand():
        shape = out[draw(st.integers(0, rank - 1)):]
        return tuple(d if draw(st.booleans()) else 1 for d in shape)

    a = out if draw(st.booleans()) else operand()
    b = operand()
    shape = tuple(np.broadcast_shapes(a, b))
    return shape, a, b


# -- broadcasting arithmetic of rank > 4 ----------------------------------------------------
@SETTINGS
@given(case=broadcast_pair(5, 6), op=st.sampled_from(["qv.add", "qv.sub", "qv.mul", "qv.div"]),
       const=st.booleans(), seed=SEEDS)
def test_binary_of_rank_above_four(case, op, const, seed):
    """fp32 arithmetic broadcast into a rank-5/6 result (operands of rank 1-6, rank 4 ones stored NHWC): exact,
    a division by zero included (inf or NaN, as in the reference, not an exception)."""
    shape, a, b = case
    assume(len(shape) >= 5)
    rng = np.random.default_rng(seed)
    other = rng.uniform(0.5, 2.0, b).astype(np.float32) if const else TensorType(b, "f32")
    m = module_of(op, [("a", TensorType(a, "f32")), ("b", other)])
    feeds = feeds_of(m, rng)
    divisor = feeds["b"] if not const else m.constants[0].data
    divisor.flat[0] = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        got, want, program = run_compiled(m, feeds)
    assert "binary_strided" in kernel_calls(program)
    np.testing.assert_array_equal(got["y"], want["y"])


# -- int8 residual add with broadcasting ------------------------------------------------------
@SETTINGS
@given(case=broadcast_pair(1, 5), dtypes=st.tuples(*[st.sampled_from(["u8", "i8"])] * 3),
       act=st.sampled_from(["none", "relu"]), seed=SEEDS)
def test_qadd_with_broadcasting(case, dtypes, act, seed):
    shape, a, b = case
    assume(a != b)
    rng = np.random.default_rng(seed)

    def t(s, dtype):
        lo = 0 if dtype == "u8" else -128
        return qtype(s, dtype, float(rng.uniform(0.01, 0.2)), int(rng.integers(lo, lo + 256)))

    m = module_of("qv.qadd", [("a", t(a, dtypes[0])), ("b", t(b, dtypes[1]))], t(shape, dtypes[2]), act=act)
    got, want, program = run_compiled(m, feeds_of(m, rng))
    assert "qadd_strided" in kernel_calls(program)
    np.testing.assert_array_equal(got["y"], want["y"])


# -- power-of-2 requantization ------------------------------------------------------------------
@SETTINGS
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4),
       dtypes=st.tuples(*[st.sampled_from(["u8", "i8"])] * 2),
       exps=st.tuples(st.integers(-8, 2), st.integers(-8, 2)), zps=st.tuples(st.integers(0, 255), st.integers(0, 255)),
       seed=SEEDS)
def test_shift_requantize(shape, dtypes, exps, zps, seed):
    """qv.requantize with requant="shift": integer shifts, ties rounded half up, exactly as the reference."""
    def zp(z, dtype):
        return z if dtype == "u8" else z - 128

    x_t = qtype(shape, dtypes[0], 2.0 ** exps[0], zp(zps[0], dtypes[0]))
    y_t = qtype(shape, dtypes[1], 2.0 ** exps[1], zp(zps[1], dtypes[1]))
    m = module_of("qv.requantize", [("x", x_t)], y_t, requant="shift")
    got, want, program = run_compiled(m, feeds_of(m, np.random.default_rng(seed)))
    assert "requantize_shift_flat" in kernel_calls(program)
    np.testing.assert_array_equal(got["y"], want["y"])


def test_shift_requantize_refuses_a_scale_ratio_that_is_no_power_of_two():
    from qv2c.backend import build_executable
    from qv2c.errors import QV2CError

    m = module_of("qv.requantize", [("x", qtype((4,), "u8", 0.5, 0))], qtype((4,), "u8", 0.3, 0), requant="shift")
    with pytest.raises(QV2CError, match="qv.requantize.*power of two"):
        build_executable(m)


# -- batch norm the canonicalizer leaves alone --------------------------------------------------
@SETTINGS
@given(shape=st.lists(st.integers(1, 6), min_size=2, max_size=4), const=st.booleans(), seed=SEEDS)
def test_batchnorm(shape, const, seed):
    """Parameters as constants or as run-time inputs (what `fold-batchnorm` cannot fold): bit-exact."""
    rng = np.random.default_rng(seed)
    c = shape[1]
    params = [rng.uniform(-2, 2, c), rng.uniform(-1, 1, c), rng.uniform(-1, 1, c), rng.uniform(0.01, 3, c)]
    names = ("scale", "bias", "mean", "var")
    ops = [(n, p.astype(np.float32) if const else TensorType((c,), "f32")) for n, p in zip(names, params)]
    m = module_of("qv.batchnorm", [("x", TensorType(tuple(shape), "f32"))] + ops, epsilon=1e-3)
    feeds = {"x": values(rng, m.inputs[0].type)}
    if not const:
        feeds.update({n: p.astype(np.float32) for n, p in zip(names, params)})
    got, want, program = run_compiled(m, feeds)
    assert "batchnorm3" in kernel_calls(program)
    np.testing.assert_array_equal(got["y"], want["y"])


# -- matmul and the gemms no packed kernel runs ----------------------------------------------------
@st.composite
def matmul_shapes(draw):
    m, k, n = (draw(st.integers(1, 6)) for _ in range(3))
    batch = tuple(draw(st.integers(1, 3)) for _ in range(draw(st.integers(0, 2))))

    def operand(rows, cols, left):
        if not batch and draw(st.integers(0, 3)) == 0:
            return (cols,) if left else (rows,)  # 1-D: [K] on either side
        own = batch[draw(st.integers(0, len(batch))):]
        return tuple(d if draw(st.booleans()) else 1 for d in own) + (rows, cols)

    return operand(m, k, True), operand(k, n, False)


@SETTINGS
@given(shapes=matmul_shapes(), const=st.booleans(), seed=SEEDS)
def test_matmul(shapes, const, seed):
    """NumPy matmul semantics: batched, broadcast, 1-D operands, a constant or a run-time B."""
    a, b = shapes
    rng = np.random.default_rng(seed)
    other = rng.uniform(-1, 1, b).astype(np.float32) if const else TensorType(b, "f32")
    m = module_of("qv.matmul", [("a", TensorType(a, "f32")), ("b", other)])
    got, want, program = run_compiled(m, feeds_of(m, rng))
    assert "matmul_strided" in kernel_calls(program)
    assert_close(got, want, 1e-5)


@SETTINGS
@given(mkn=st.tuples(*[st.integers(1, 7)] * 3), trans=st.tuples(st.booleans(), st.booleans()),
       const_b=st.booleans(), c_shape=st.sampled_from(["none", "mn", "m1", "n", "1n", "scalar"]),
       alpha=st.sampled_from([1.0, 0.5, -2.0]), beta=st.sampled_from([1.0, 0.25]), seed=SEEDS)
def test_gemm(mkn, trans, const_b, c_shape, alpha, beta, seed):
    """ONNX Gemm in every form; the ones that are no packed layer (run-time B, trans_a, a bias that varies by
    row) run the strided kernel."""
    (mm, k, n), (ta, tb) = mkn, trans
    rng = np.random.default_rng(seed)
    a = TensorType((k, mm) if ta else (mm, k), "f32")
    b_shape = (n, k) if tb else (k, n)
    b = rng.uniform(-1, 1, b_shape).astype(np.float32) if const_b else TensorType(b_shape, "f32")
    c = {"none": None, "mn": (mm, n), "m1": (mm, 1), "n": (n,), "1n": (1, n), "scalar": ()}[c_shape]
    operands = [("a", a), ("b", b)] + ([("c", rng.uniform(-1, 1, c).astype(np.float32))] if c is not None else [])
    m = module_of("qv.gemm", operands, trans_a=int(ta), trans_b=int(tb), alpha=alpha, beta=beta)
    got, want, program = run_compiled(m, feeds_of(m, rng))
    if not is_anchor(m.ops[0]):
        assert "matmul_strided" in kernel_calls(program)
    assert_close(got, want, 1e-5)


# -- global average pools of rank 3 and 5 ---------------------------------------------------------
@SETTINGS
@given(shape=st.lists(st.integers(1, 5), min_size=3, max_size=5).filter(lambda s: len(s) != 4), seed=SEEDS)
def test_global_avgpool_of_other_ranks(shape, seed):
    """[N, C, L] (and [N, C, D, H, W]) inputs: the NHWC kernels on a strided [N, S, 1, C] view; fp32 within
    float tolerance (the reference sums pairwise), int8 bit-exact."""
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    out = shape[:2] + (1,) * (len(shape) - 2)
    m = module_of("qv.global_avgpool", [("x", TensorType(shape, "f32"))])
    got, want, program = run_compiled(m, feeds_of(m, rng))
    assert "global_avgpool_nhwc" in kernel_calls(program)
    assert_close(got, want, 1e-5)
    q = module_of("qv.qglobal_avgpool", [("x", qtype(shape, "u8", 0.05, 100))], qtype(out, "u8", 0.04, 90))
    got, want, program = run_compiled(q, feeds_of(q, rng))
    assert "qglobal_avgpool_nhwc" in kernel_calls(program)
    np.testing.assert_array_equal(got["y"], want["y"])


# -- reflect / edge / wrap pads ------------------------------------------------------------------
@st.composite
def pad_cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=4)))
    begins, ends = [], []
    for d in shape:
        b, e = draw(st.integers(-1, 4)), draw(st.integers(-1, 4))
        assume(d - max(0, -b) - max(0, -e) >= 1)  # something left to pad from after cropping
        begins.append(b)
        ends.append(e)
    return shape, begins + ends


@SETTINGS
@given(case=pad_cases(), mode=st.sampled_from(["reflect", "edge", "wrap"]), dtype=st.sampled_from(["f32", "u8", "i8"]),
       seed=SEEDS)
def test_index_pads(case, mode, dtype, seed):
    """`standalone._pad_by_index` (the lowering of these modes for `_pad`) against np.pad in the reference, including
    negative pads (crops), pads wider than the axis, and int8 tensors padded in int8: exact."""
    shape, pads = case
    x_t = TensorType(shape, "f32") if dtype == "f32" else qtype(shape, dtype, 0.1, 3)
    r = len(shape)
    y_t = TensorType(tuple(d + pads[i] + pads[i + r] for i, d in enumerate(shape)), dtype, x_t.quant)
    m = module_of("qv.pad", [("x", x_t)], y_t, pads=pads, mode=mode)
    original = standalone.LOWERERS["qv.pad"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(standalone.LOWERERS, "qv.pad", lambda lw, op: standalone._pad_by_index(lw, op) or original(lw, op))
        got, want, program = run_compiled(m, feeds_of(m, np.random.default_rng(seed)))
    assert "pad_gather" in kernel_calls(program)
    np.testing.assert_array_equal(got["y"], want["y"])


def test_index_pad_of_a_large_nhwc_tensor_runs_in_parallel_with_contiguous_rows():
    """Reflect padding of H and W only (the usual export): rows are contiguous copies, split over tasks."""
    x_t = TensorType((1, 32, 48, 48), "f32")
    m = module_of("qv.pad", [("x", x_t)], pads=[0, 0, 2, 3, 0, 0, 1, 2], mode="reflect")
    original = standalone.LOWERERS["qv.pad"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(standalone.LOWERERS, "qv.pad", lambda lw, op: standalone._pad_by_index(lw, op) or original(lw, op))
        got, want, program = run_compiled(m, feeds_of(m, np.random.default_rng(0)))
    (call,) = [dict(k.args) for k in program.kernels if k.function == "pad_gather"]
    assert call["parallel"] is True and call["last_identity"] is True
    np.testing.assert_array_equal(got["y"], want["y"])
