"""Differential tests of the fp32 reference ops against onnxruntime.

Each test builds the same computation twice: as a one-op qv2c module run by the
reference interpreter, and as a one-node ONNX model run by onnxruntime. Hypothesis
picks shapes, attributes and a seed for the values. Floats must agree within
rtol=1e-4/atol=1e-5; data movement (and max-pool) must agree exactly.
"""

from __future__ import annotations

import time

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from qv2c.errors import VerificationError
from qv2c.ir import Builder, Module, QuantParams, TensorType, Value, interpret
from qv2c.ir.reference import conv as conv_ref
from qv2c.ir.reference.conv import im2col
from qv2c.ir.types import dtype_of_numpy

OPSET = 19
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = st.integers(0, 2**32 - 1)


# -- running both sides -------------------------------------------------------
def run_ir(name: str, inputs: list[np.ndarray], consts: tuple[np.ndarray, ...] = (), result_types=None,
           input_types=None, **attrs) -> np.ndarray:
    """Build `name(inputs..., consts...)` as a one-op module and run the reference interpreter."""
    m = Module("t")
    types = input_types or [TensorType(a.shape, dtype_of_numpy(a.dtype)) for a in inputs]
    vals = [m.add_input(Value(t, f"x{i}")) for i, t in enumerate(types)]
    vals += [m.add_constant(c, f"c{i}") for i, c in enumerate(consts)]
    y = Builder(m).op(name, vals, result_types=result_types, **attrs)
    m.outputs = [y]
    out = list(interpret(m, {f"x{i}": a for i, a in enumerate(inputs)}).values())
    assert len(out) == 1
    assert out[0].dtype == y.type.numpy_dtype and out[0].shape == y.type.shape
    return out[0]


def run_ort(op_type: str, inputs: list[np.ndarray], consts: tuple[np.ndarray, ...] = (), **attrs) -> np.ndarray:
    """Run a one-node ONNX model `op_type(inputs..., consts...)` with onnxruntime (no graph optimisation)."""
    names = [f"x{i}" for i in range(len(inputs))] + [f"c{i}" for i in range(len(consts))]
    node = helper.make_node(op_type, names, ["y"], **attrs)
    graph = helper.make_graph(
        [node], "t",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
         for n, a in zip(names, inputs)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(c, f"c{i}") for i, c in enumerate(consts)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, dict(zip(names, inputs)))[0]


def assert_close(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.dtype == np.float32
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def assert_exact(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, (ours.dtype, ours.shape, theirs.shape)
    np.testing.assert_array_equal(ours, theirs)


def randn(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return np.asarray(rng.standard_normal(shape) * scale, dtype=np.float32)


# -- strategies ----------------------------------------------------------------
@st.composite
def windows(draw, max_kernel=4, dilate=True, pad_below_kernel=True):
    """kernel, strides, dilations, pads [t,l,b,r] and an (H, W) the window fits in."""
    k = [draw(st.integers(1, max_kernel)) for _ in range(2)]
    s = [draw(st.integers(1, 3)) for _ in range(2)]
    d = [draw(st.integers(1, 2)) if dilate else 1 for _ in range(2)]
    pads = [draw(st.integers(0, (k[i % 2] - 1) if pad_below_kernel else 2)) for i in range(4)]
    hw = [max(1, d[i] * (k[i] - 1) + 1 - pads[i] - pads[i + 2]) + draw(st.integers(0, 6)) for i in range(2)]
    return k, s, d, pads, hw


def broadcast_pair(draw, max_rank=4):
    """Two shapes that broadcast (NumPy rules): drop leading dims and set some dims to 1."""
    full = [draw(st.integers(1, 4)) for _ in range(draw(st.integers(0, max_rank)))]

    def one():
        shape = full[draw(st.integers(0, len(full))):]
        return tuple(1 if draw(st.booleans()) else dim for dim in shape)

    return one(), one()


# -- convolution and matrix products ---------------------------------------------
@FAST
@given(kind=st.sampled_from(["dense", "grouped", "depthwise"]), win=windows(pad_below_kernel=False),
       n=st.integers(1, 2), bias=st.booleans(), data=st.data(), seed=SEEDS)
def test_conv_matches_onnxruntime(kind, win, n, bias, data, seed):
    k, s, d, pads, (h, w) = win
    if kind == "depthwise":
        group, cg, mg = data.draw(st.integers(2, 6)), 1, data.draw(st.integers(1, 2))
    else:
        group = 1 if kind == "dense" else data.draw(st.integers(2, 3))
        cg, mg = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    rng = np.random.default_rng(seed)
    x, wt = randn(rng, n, cg * group, h, w), randn(rng, mg * group, cg, *k)
    args = [x, wt] + ([randn(rng, mg * group)] if bias else [])
    attrs = dict(strides=s, pads=pads, dilations=d, group=group)
    ours = run_ir("qv.conv", args, **attrs)
    assert_close(ours, run_ort("Conv", args, kernel_shape=k, **attrs))


def test_conv_chunks_large_batches_without_changing_the_result(monkeypatch):
    rng = np.random.default_rng(0)
    x, w, b = randn(rng, 5, 6, 9, 8), randn(rng, 4, 3, 3, 2), randn(rng, 4)
    attrs = dict(strides=[2, 1], pads=[1, 0, 2, 1], dilations=[1, 2], group=2)
    whole = run_ir("qv.conv", [x, w, b], **attrs)
    one_image_cols = 6 * 3 * 2 * whole.shape[2] * whole.shape[3] * 4
    monkeypatch.setattr(conv_ref, "IM2COL_BUDGET_BYTES", 2 * one_image_cols)  # chunks of 2, 2, 1 images
    np.testing.assert_array_equal(run_ir("qv.conv", [x, w, b], **attrs), whole)
    assert_close(whole, run_ort("Conv", [x, w, b], kernel_shape=[3, 2], **attrs))


@FAST
@given(win=windows(pad_below_kernel=False), group=st.integers(1, 3), pad_value=st.integers(-128, 127), seed=SEEDS)
def test_im2col_is_dtype_generic_and_matches_its_definition(win, group, pad_value, seed):
    """im2col on int8 keeps int8 and puts, at [n, g, (c,i,j), oh*OW+ow], the padded input at
    [n, g*Cg + c, i*dh + oh*sh, j*dw + ow*sw] (checked with explicit loops)."""
    k, s, d, pads, (h, w) = win
    rng = np.random.default_rng(seed)
    cg = 2
    x = rng.integers(-128, 128, size=(2, cg * group, h, w), dtype=np.int8)
    cols, (oh, ow) = im2col(x, k, s, pads, d, group, pad_value=pad_value)
    assert cols.dtype == np.int8 and cols.shape == (2, group, cg * k[0] * k[1], oh * ow)
    xp = np.full((2, cg * group, h + pads[0] + pads[2], w + pads[1] + pads[3]), pad_value, np.int8)
    xp[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + w] = x
    expected = np.empty_like(cols)
    for g in range(group):
        for c in range(cg):
            for i in range(k[0]):
                for j in range(k[1]):
                    row = (c * k[0] + i) * k[1] + j
                    for r in range(oh):
                        for q in range(ow):
                            expected[:, g, row, r * ow + q] = xp[:, g * cg + c, i * d[0] + r * s[0], j * d[1] + q * s[1]]
    np.testing.assert_array_equal(cols, expected)


def test_conv_speed_on_a_resnet_sized_layer():
    """A 1x64x56x56 3x3 conv with 64 outputs must be cheap enough for calibration (about 3 ms here)."""
    rng = np.random.default_rng(0)
    x, w, b = randn(rng, 1, 64, 56, 56), randn(rng, 64, 64, 3, 3), randn(rng, 64)
    run_ir("qv.conv", [x, w, b], pads=[1, 1, 1, 1])
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        run_ir("qv.conv", [x, w, b], pads=[1, 1, 1, 1])
        best = min(best, time.perf_counter() - t0)
    assert best < 0.25, f"conv took {best:.3f} s"


@FAST
@given(m=st.integers(1, 6), k=st.integers(1, 33), n=st.integers(1, 6), trans_a=st.integers(0, 1),
       trans_b=st.integers(0, 1), alpha=st.floats(-2, 2), beta=st.floats(-2, 2),
       c_shape=st.sampled_from([None, "mn", "n", "1n", "m1", "scalar"]), seed=SEEDS)
def test_gemm_matches_onnxruntime(m, k, n, trans_a, trans_b, alpha, beta, c_shape, seed):
    rng = np.random.default_rng(seed)
    a = randn(rng, *((k, m) if trans_a else (m, k)))
    b = randn(rng, *((n, k) if trans_b else (k, n)))
    shapes = {"mn": (m, n), "n": (n,), "1n": (1, n), "m1": (m, 1), "scalar": ()}
    args = [a, b] + ([randn(rng, *shapes[c_shape])] if c_shape else [])
    ours = run_ir("qv.gemm", args, alpha=alpha, beta=beta, trans_a=trans_a, trans_b=trans_b)
    assert_close(ours, run_ort("Gemm", args, alpha=alpha, beta=beta, transA=trans_a, transB=trans_b))


@FAST
@given(data=st.data(), seed=SEEDS)
def test_matmul_matches_onnxruntime(data, seed):
    batch_a, batch_b = broadcast_pair(data.draw, max_rank=2)
    m, k, n = (data.draw(st.integers(1, 5)) for _ in range(3))
    a_shape = (k,) if data.draw(st.booleans()) else batch_a + (m, k)
    b_shape = (k,) if data.draw(st.booleans()) else batch_b + (k, n)
    rng = np.random.default_rng(seed)
    args = [randn(rng, *a_shape), randn(rng, *b_shape)]
    assert_close(run_ir("qv.matmul", args), run_ort("MatMul", args))


# -- elementwise -----------------------------------------------------------------
@FAST
@given(shape=st.lists(st.integers(1, 5), min_size=0, max_size=4), scale=st.sampled_from([1.0, 30.0, 200.0]),
       seed=SEEDS)
def test_relu_and_sigmoid_match_onnxruntime(shape, scale, seed):
    """Large magnitudes check that sigmoid neither overflows nor loses its tails."""
    x = randn(np.random.default_rng(seed), *shape, scale=scale)
    for ir_name, onnx_name in [("qv.relu", "Relu"), ("qv.sigmoid", "Sigmoid")]:
        assert_close(run_ir(ir_name, [x]), run_ort(onnx_name, [x]))


@FAST
@given(shape=st.lists(st.integers(1, 5), min_size=0, max_size=4), lo=st.sampled_from([-np.inf, -1.0, 0.0, 0.5]),
       hi=st.sampled_from([np.inf, 6.0, 0.25, -0.5]), seed=SEEDS)
def test_clip_matches_onnxruntime(shape, lo, hi, seed):
    """Includes ReLU6 (0, 6), one-sided clips and min > max (everything becomes max)."""
    x = randn(np.random.default_rng(seed), *shape, scale=4.0)
    ours = run_ir("qv.clip", [x], min=lo, max=hi)
    assert_close(ours, run_ort("Clip", [x], (np.array(lo, np.float32), np.array(hi, np.float32))))


@FAST
@given(op=st.sampled_from([("qv.add", "Add"), ("qv.sub", "Sub"), ("qv.mul", "Mul"), ("qv.div", "Div")]),
       data=st.data(), seed=SEEDS)
def test_binary_ops_broadcast_like_onnxruntime(op, data, seed):
    sa, sb = broadcast_pair(data.draw)
    rng = np.random.default_rng(seed)
    a, b = randn(rng, *sa), randn(rng, *sb)
    if op[0] == "qv.div":  # keep denominators away from 0 so the relative tolerance means something
        b = np.asarray(np.where(b < 0, b - 0.5, b + 0.5), dtype=np.float32)
    assert_close(run_ir(op[0], [a, b]), run_ort(op[1], [a, b]))


def test_integer_div_truncates_toward_zero_like_onnx():
    a = np.array([7, -7, 7, -7, 6, -6], np.int32)
    b = np.array([2, 2, -2, -2, 3, 3], np.int32)
    np.testing.assert_array_equal(run_ir("qv.div", [a, b]), [3, -3, -3, 3, 2, -2])


@FAST
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), data=st.data(),
       scale=st.sampled_from([1.0, 100.0]), seed=SEEDS)
def test_softmax_matches_onnxruntime(shape, data, scale, seed):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = randn(np.random.default_rng(seed), *shape, scale=scale)
    assert_close(run_ir("qv.softmax", [x], axis=axis), run_ort("Softmax", [x], axis=axis))


@FAST
@given(shape=st.lists(st.integers(1, 5), min_size=2, max_size=4), eps=st.sampled_from([1e-5, 1e-3, 0.1]),
       seed=SEEDS)
def test_batchnorm_matches_onnxruntime(shape, eps, seed):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x, scale, bias, mean = randn(rng, *shape), randn(rng, c), randn(rng, c), randn(rng, c)
    var = (rng.random(c) + 0.05).astype(np.float32)
    args = [x, scale, bias, mean, var]
    assert_close(run_ir("qv.batchnorm", args, epsilon=eps), run_ort("BatchNormalization", args, epsilon=eps))


@FAST
@given(n=st.integers(1, 2), c=st.integers(1, 9), hw=st.integers(1, 4), size=st.sampled_from([1, 3, 5, 7]),
       alpha=st.floats(1e-4, 1.0), beta=st.floats(0.5, 1.0), bias=st.floats(0.5, 2.0), seed=SEEDS)
def test_lrn_matches_onnxruntime(n, c, hw, size, alpha, beta, bias, seed):
    """onnxruntime accepts odd sizes only; even sizes are checked in the next test."""
    x = randn(np.random.default_rng(seed), n, c, hw, hw, scale=2.0)
    attrs = dict(size=size, alpha=alpha, beta=beta, bias=bias)
    assert_close(run_ir("qv.lrn", [x], **attrs), run_ort("LRN", [x], **attrs))


@pytest.mark.parametrize("size", [2, 4])
def test_lrn_even_size_windows_follow_the_onnx_formula(size):
    """Even sizes sum channels [c - floor((size-1)/2), c + ceil((size-1)/2)], per the ONNX spec."""
    x = randn(np.random.default_rng(size), 1, 6, 2, 3)
    ours = run_ir("qv.lrn", [x], size=size, alpha=0.3, beta=0.75, bias=1.0)
    lo, hi = (size - 1) // 2, size // 2
    sq = np.stack([np.sum(x[:, max(0, c - lo):c + hi + 1] ** 2, axis=1) for c in range(6)], axis=1)
    assert_close(ours, x / (1.0 + 0.3 / size * sq) ** 0.75)


# -- pooling -----------------------------------------------------------------------
@FAST
@given(win=windows(), n=st.integers(1, 2), c=st.integers(1, 3), ceil_mode=st.integers(0, 1), seed=SEEDS)
@example(win=([1, 4], [1, 1], [1, 2], [0, 3, 0, 3], [1, 1]), n=1, c=1, ceil_mode=0, seed=0)  # all-padding window
def test_maxpool_matches_onnxruntime_exactly(win, n, c, ceil_mode, seed):
    k, s, d, pads, (h, w) = win
    x = randn(np.random.default_rng(seed), n, c, h, w)
    attrs = dict(strides=s, pads=pads, dilations=d, ceil_mode=ceil_mode)
    ours = run_ir("qv.maxpool", [x], kernel=k, **attrs)
    assert_exact(ours, run_ort("MaxPool", [x], kernel_shape=k, **attrs))


@FAST
@given(win=windows(dilate=False), n=st.integers(1, 2), c=st.integers(1, 3), ceil_mode=st.integers(0, 1),
       count_include_pad=st.integers(0, 1), seed=SEEDS)
@example(win=([3, 3], [2, 2], [1, 1], [1, 1, 1, 1], [6, 6]), n=1, c=1, ceil_mode=1, count_include_pad=1,
         seed=0)  # last window overhangs the padded input: it counts 2 rows, not 3
def test_avgpool_matches_onnxruntime(win, n, c, ceil_mode, count_include_pad, seed):
    k, s, _, pads, (h, w) = win
    x = randn(np.random.default_rng(seed), n, c, h, w)
    attrs = dict(strides=s, pads=pads, ceil_mode=ceil_mode, count_include_pad=count_include_pad)
    ours = run_ir("qv.avgpool", [x], kernel=k, **attrs)
    assert_close(ours, run_ort("AveragePool", [x], kernel_shape=k, **attrs))


@FAST
@given(shape=st.lists(st.integers(1, 9), min_size=3, max_size=5), seed=SEEDS)
def test_global_avgpool_matches_onnxruntime(shape, seed):
    x = randn(np.random.default_rng(seed), *shape)
    assert_close(run_ir("qv.global_avgpool", [x]), run_ort("GlobalAveragePool", [x]))


# -- data movement -------------------------------------------------------------------
@FAST
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4), count=st.integers(1, 4), data=st.data(),
       seed=SEEDS)
def test_concat_matches_onnxruntime_exactly(shape, count, data, seed):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    rng = np.random.default_rng(seed)
    xs = []
    for _ in range(count):
        s = list(shape)
        s[axis] = data.draw(st.integers(1, 3))
        xs.append(randn(rng, *s))
    assert_exact(run_ir("qv.concat", xs, axis=axis), run_ort("Concat", xs, axis=axis))


@FAST
@given(shape=st.lists(st.integers(1, 4), min_size=0, max_size=4), data=st.data(), seed=SEEDS)
def test_reshape_matches_onnxruntime_exactly(shape, data, seed):
    dims = data.draw(st.permutations(shape))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(dims)), max_size=3)))
    new = [int(np.prod(dims[a:b])) for a, b in zip([0] + cuts, cuts + [len(dims)])]
    x = randn(np.random.default_rng(seed), *shape)
    ours = run_ir("qv.reshape", [x], shape=new)
    assert_exact(ours, run_ort("Reshape", [x], (np.array(new, np.int64),)))


@FAST
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=5), data=st.data(), seed=SEEDS)
def test_transpose_matches_onnxruntime_exactly(shape, data, seed):
    perm = data.draw(st.permutations(range(len(shape))))
    x = randn(np.random.default_rng(seed), *shape)
    ours = run_ir("qv.transpose", [x], perm=perm)
    assert ours.flags.c_contiguous
    assert_exact(ours, run_ort("Transpose", [x], perm=perm))


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
@settings(FAST, max_examples=25)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4), value=st.sampled_from([0.0, -1.5]),
       data=st.data(), seed=SEEDS)
def test_pad_matches_onnxruntime_exactly(shape, mode, value, data, seed):
    """Constant mode also crops with negative pads; reflect pads stay below each dim (ONNX requires it)."""
    r = len(shape)
    if mode == "constant":
        pads = [data.draw(st.integers(-(shape[i % r] // 2), 3)) for i in range(2 * r)]
    elif mode == "reflect":
        pads = [data.draw(st.integers(0, shape[i % r] - 1)) for i in range(2 * r)]
    else:
        pads = [data.draw(st.integers(0, min(3, shape[i % r]))) for i in range(2 * r)]
    x = randn(np.random.default_rng(seed), *shape)
    ours = run_ir("qv.pad", [x], pads=pads, mode=mode, value=value)
    assert_exact(ours, run_ort("Pad", [x], (np.array(pads, np.int64), np.array(value, np.float32)), mode=mode))


# -- int8 pass-through and refusals -------------------------------------------------
U8 = QuantParams((0.1,), (128,))


def test_quantized_relu_is_max_with_the_zero_point():
    q = np.array([[0, 127, 128, 129, 255]], np.uint8)
    t = TensorType(q.shape, "u8", U8)
    y = run_ir("qv.relu", [q], input_types=[t], result_types=[t])
    np.testing.assert_array_equal(y, [[128, 128, 128, 129, 255]])


def test_quantized_maxpool_and_pad_pass_codes_through():
    rng = np.random.default_rng(1)
    q = rng.integers(0, 256, size=(1, 2, 5, 5), dtype=np.uint8)
    t = TensorType(q.shape, "u8", U8)
    attrs = dict(kernel=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)
    out_t = TensorType((1, 2, 3, 3), "u8", U8)
    ours = run_ir("qv.maxpool", [q], input_types=[t], result_types=[out_t], **attrs)
    as_float = run_ir("qv.maxpool", [q.astype(np.float32)], **attrs)  # max commutes with the affine map
    np.testing.assert_array_equal(ours, as_float.astype(np.uint8))
    padded = run_ir("qv.pad", [q], input_types=[t], result_types=[TensorType((1, 2, 6, 5), "u8", U8)],
                    pads=[0, 0, 1, 0, 0, 0, 0, 0], value=0.0)
    assert (padded[:, :, 0] == 128).all()  # real 0.0 is the zero-point code


def test_real_valued_ops_refuse_quantized_operands():
    q = np.zeros((1, 4), np.uint8)
    t = TensorType(q.shape, "u8", U8)
    with pytest.raises(VerificationError, match="qv.add.*quantized.*dequantize"):
        run_ir("qv.add", [q, q], input_types=[t, t])


def test_unknown_pad_mode_is_a_clear_error():
    with pytest.raises(VerificationError, match="unknown pad mode 'mirror'"):
        run_ir("qv.pad", [np.zeros((2, 2), np.float32)], pads=[1, 1, 1, 1], mode="mirror")
