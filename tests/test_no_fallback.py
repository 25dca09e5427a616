"""No op falls back to the NumPy reference in a compiled model.

The inventory.  Every IR op the frontend produces (`qv2c/frontend/importers`) or the passes
build from it (`realize-quant`, `fold-batchnorm`, `fuse`), and each case that ran through
`fallback:run_reference` before its kernel existed (op (ONNX op): when -> kernel now):

- `qv.lrn` (LRN): always (no lowerer) -> `ops_lrn.lrn_rows`;
- `qv.matmul` (MatMul): always (no lowerer) -> `ops_matmul.matmul_strided`;
- `qv.gemm` (Gemm): trans_a, a bias varying by row, a run-time B or C (no anchor) -> `matmul_strided`;
- `qv.batchnorm` (BatchNormalization): parameters that are no constants (`fold-batchnorm`
  leaves it) -> `ops_batchnorm.batchnorm3`;
- `qv.global_avgpool`, `qv.qglobal_avgpool` (GlobalAveragePool): rank != 4 ([N, C, L]) ->
  the NHWC kernels on a strided view;
- `qv.add/sub/mul/div` (Add, Sub, Mul, Div, Sum): a result of rank > 4 (around a channel
  shuffle, say) -> `ops_broadcast.binary_strided`;
- `qv.qadd` (realize-quant): broadcasting operands (realize-quant builds none today) ->
  `ops_broadcast.qadd_strided`;
- `qv.requantize` (realize-quant): requant = "shift" -> `ops_shift.requantize_shift_flat`;
- `qv.pad` (Pad): mode reflect / edge / wrap (the importer refuses them today) ->
  `ops_pad.pad_gather` through `standalone._pad_by_index`, once `_pad` hands those modes to it.

Every other op and case already had a kernel: conv/gemm layers with constant weights,
max/avg pools, reshape, flatten, squeeze, unsqueeze, transpose, concat, constant pads,
relu, clip, sigmoid, softmax, quantize/dequantize, requantize "float", same-shape qadd,
qclip, qavgpool; `qv.permute_channels` (what `fold-channel-permutation` leaves of a channel
shuffle) had its kernel from the start (`ops_layout.permute_channels`, tests/test_kernels_permute.py).
What still has none is listed in `qv2c/codegen/standalone.py`, with the
reason; lowering such an op is an error (`UnsupportedOpError`) unless the debugging
backend is switched on (`QV2C_REFERENCE_FALLBACK=1`).

Each case below is one small model built with `onnx.helper` (IR built directly where no
ONNX graph reaches the case), compiled as fp32 and, where it has a layer, int8; the program
must call no `run_reference` and agree with the reference interpreter.
"""

from __future__ import annotations

import glob
import os

import numpy as np
import onnx
import onnx.helper as oh
import pytest
from compiled_check import kernel_calls, run_compiled
from onnx import TensorProto, numpy_helper
from test_runtime import _private_cache, assert_close, qtype  # noqa: F401 (_private_cache: autouse, a private cache)

import qv2c
from qv2c.api import load_canonical
from qv2c.backend import build_executable
from qv2c.codegen.lower import lower
from qv2c.errors import UnsupportedOpError
from qv2c.ir import Builder, Module, TensorType, Value, interpret
from qv2c.passes import run_pipeline
from qv2c.runtime.fallback import ENV

RNG = np.random.default_rng(0)


def w(*shape) -> np.ndarray:
    return RNG.uniform(-1, 1, shape).astype(np.float32)


def graph(nodes, inputs: dict[str, list[int]], output: str, **initializers) -> onnx.ModelProto:
    """A one-output ONNX model: float inputs of static shapes, constant initializers, output of unknown shape."""
    g = oh.make_graph(nodes, "case", [oh.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
                      [oh.make_tensor_value_info(output, TensorProto.FLOAT, None)],
                      [numpy_helper.from_array(a, n) for n, a in initializers.items()])
    return oh.make_model(g, opset_imports=[oh.make_opsetid("", 13)], ir_version=8)


def conv(x: str, y: str, c_in: int, c_out: int, name: str) -> tuple[list, dict]:
    """Conv + Relu (an int8 layer when compiled int8), and its initializers."""
    nodes = [oh.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [f"{name}_c"], pads=[1, 1, 1, 1], name=name),
             oh.make_node("Relu", [f"{name}_c"], [y], name=f"{name}_relu")]
    return nodes, {f"{name}_w": w(c_out, c_in, 3, 3), f"{name}_b": w(c_out)}


def _lrn():
    nodes, init = conv("x", "r", 3, 8, "conv1")
    nodes.append(oh.make_node("LRN", ["r"], ["y"], size=5, alpha=1e-3, beta=0.75, bias=1.0, name="norm1"))
    return graph(nodes, {"x": [1, 3, 6, 6]}, "y", **init)


def _matmul_const():
    nodes, init = conv("x", "r", 3, 4, "conv1")
    nodes += [oh.make_node("Flatten", ["r"], ["f"], name="flat"), oh.make_node("MatMul", ["f", "wt"], ["y"], name="fc")]
    return graph(nodes, {"x": [1, 3, 5, 5]}, "y", wt=w(100, 10), **init)


def _matmul_rank3_const():
    return graph([oh.make_node("MatMul", ["x", "wt"], ["y"], name="proj")], {"x": [1, 3, 8]}, "y", wt=w(8, 5))


def _matmul_runtime():
    """Batched, the second operand broadcast along the first's extra axis."""
    return graph([oh.make_node("MatMul", ["x", "z"], ["y"], name="bmm")], {"x": [1, 2, 3, 4], "z": [1, 4, 2]}, "y")


def _gemm_trans_a():
    return graph([oh.make_node("Gemm", ["x", "wt", "c"], ["y"], transA=1, alpha=0.5, name="fc")], {"x": [6, 3]}, "y",
                 wt=w(6, 4), c=w(4))


def _gemm_row_bias():
    return graph([oh.make_node("Gemm", ["x", "wt", "c"], ["y"], transB=1, name="fc")], {"x": [3, 6]}, "y",
                 wt=w(4, 6), c=w(3, 4))


def _gemm_runtime_b():
    return graph([oh.make_node("Gemm", ["x", "z"], ["y"], name="fc")], {"x": [3, 3], "z": [3, 4]}, "y")


def _mul_rank5():
    """A channel-shuffle-like reshape to rank 5 with a broadcast multiply in between."""
    nodes, init = conv("x", "r", 3, 4, "conv1")
    nodes += [oh.make_node("Reshape", ["r", "s5"], ["r5"], name="split"),
              oh.make_node("Mul", ["r5", "k"], ["m5"], name="scale"),
              oh.make_node("Reshape", ["m5", "s4"], ["y"], name="merge")]
    return graph(nodes, {"x": [1, 3, 4, 4]}, "y", s5=np.array([1, 2, 2, 4, 4], np.int64),
                 s4=np.array([1, 4, 4, 4], np.int64), k=w(1, 2, 1, 1, 1), **init)


def _global_pool_rank3():
    nodes, init = conv("x", "r", 3, 4, "conv1")
    nodes += [oh.make_node("Reshape", ["r", "s3"], ["r3"], name="seq"),
              oh.make_node("GlobalAveragePool", ["r3"], ["y"], name="gap")]
    return graph(nodes, {"x": [1, 3, 4, 4]}, "y", s3=np.array([1, 4, 16], np.int64), **init)


ONNX_CASES = {f.__name__.lstrip("_"): f for f in (_lrn, _matmul_const, _matmul_rank3_const, _matmul_runtime,
                                                  _gemm_trans_a, _gemm_row_bias, _gemm_runtime_b, _mul_rank5,
                                                  _global_pool_rank3)}


def feeds_for(module) -> dict[str, np.ndarray]:
    return {v.name: RNG.standard_normal(v.type.shape).astype(np.float32) for v in module.inputs}


def check_compiled(compiled: qv2c.api.CompiledModel, feeds: dict[str, np.ndarray]) -> list[str]:
    calls = kernel_calls(compiled.executable.program)
    assert "run_reference" not in calls, calls
    assert_close(compiled.run(feeds), interpret(compiled.module, feeds), 1e-5)
    return calls


@pytest.mark.parametrize("case", sorted(ONNX_CASES))
def test_onnx_case_compiles_to_kernels(case):
    model = ONNX_CASES[case]()
    batch = model.graph.input[0].type.tensor_type.shape.dim[0].dim_value  # every input's first dim
    fp32 = qv2c.compile(model, precision="fp32", batch_size=batch)
    feeds = feeds_for(fp32.module)
    check_compiled(fp32, feeds)
    if fp32.precision:  # a model with a layer: int8 too (what realize-quant puts around the case)
        int8 = qv2c.compile(model, [feeds], precision="int8", batch_size=batch)
        assert set(int8.precision.values()) == {"int8"}
        check_compiled(int8, feeds)


def test_int8_global_pool_of_rank3_stays_int8():
    """An int8 conv, a reshape to [N, C, L] and a global pool: the pool runs in int8 (qv.qglobal_avgpool)."""
    model = _global_pool_rank3()
    compiled = qv2c.compile(model, [feeds_for(qv2c.compile(model, precision="fp32").module)], precision="int8")
    assert "qv.qglobal_avgpool" in [op.name for op in compiled.module.walk()]
    assert "qglobal_avgpool_nhwc" in kernel_calls(compiled.executable.program)


def one_op(name, operands, result_type=None, **attrs) -> Module:
    m = Module("t")
    vals = [m.add_input(Value(t, f"x{i}")) for i, t in enumerate(operands)]
    m.outputs = [Builder(m).op(name, vals, result_types=[result_type] if result_type else None, result_names=["y"],
                               **attrs)]
    return m


def batchnorm_with_runtime_parameters() -> Module:
    """What `fold-batchnorm` leaves alone (its parameters are no constants); the importer binds every graph
    input's first dim to the batch, so an ONNX graph feeding parameters at run time does not import."""
    return one_op("qv.batchnorm", [TensorType((1, 4, 3, 3), "f32")] + [TensorType((4,), "f32")] * 4, epsilon=1e-3)


def int_feeds(m: Module) -> dict[str, np.ndarray]:
    return {v.name: RNG.integers(0, 256, v.type.shape).astype(np.uint8) for v in m.inputs}


IR_CASES = {
    # realize-quant keeps an add of unequal shapes fp32, so no ONNX graph builds this today
    "qadd_broadcast": lambda: one_op("qv.qadd", [qtype((1, 4, 3, 3), "u8", 0.05, 10),
                                                 qtype((1, 4, 1, 1), "u8", 0.1, 3)],
                                     qtype((1, 4, 3, 3), "u8", 0.08, 7), act="relu"),
    # realize-quant's requantizes use "float" even with power-of-2 scales
    "requantize_shift": lambda: one_op("qv.requantize", [qtype((2, 5), "u8", 0.25, 100)], qtype((2, 5), "u8", 0.5, 90),
                                       requant="shift"),
}


def test_batchnorm_with_runtime_parameters_compiles_to_a_kernel():
    m = batchnorm_with_runtime_parameters()
    feeds = {v.name: RNG.uniform(0.1, 2.0, v.type.shape).astype(np.float32) for v in m.inputs}
    got, want, _ = run_compiled(m, feeds)
    np.testing.assert_array_equal(got["y"], want["y"])


@pytest.mark.parametrize("case", sorted(IR_CASES))
def test_ir_case_compiles_to_kernels(case):
    m = IR_CASES[case]()
    got, want, _ = run_compiled(m, int_feeds(m))
    np.testing.assert_array_equal(got["y"], want["y"])


def test_reflect_pad_compiles_to_a_kernel():
    m = one_op("qv.pad", [TensorType((1, 3, 4, 4), "f32")], pads=[0, 0, 1, 2, 0, 0, 2, 1], mode="reflect")
    got, want, program = run_compiled(m, feeds_for(m))
    assert "pad_gather" in kernel_calls(program)
    np.testing.assert_array_equal(got["y"], want["y"])


# -- what is left: an error, or (debugging) the reference -------------------------------------------
def conv_with_runtime_weight() -> Module:
    """A conv whose weight is a model input: the packed kernels need it at compile time."""
    m = one_op("qv.conv", [TensorType((1, 3, 5, 5), "f32"), TensorType((2, 3, 3, 3), "f32")], pads=[1, 1, 1, 1])
    m.ops[0].meta["onnx_node"] = "dynamic_conv"
    return m


def test_an_op_without_kernel_is_a_one_line_error_naming_it():
    with pytest.raises(UnsupportedOpError) as e:
        lower(conv_with_runtime_weight())
    msg = str(e.value)
    assert "\n" not in msg
    assert "qv.conv (ONNX node 'dynamic_conv')" in msg and "f32[2,3,3,3]" in msg
    assert "backend='reference'" in msg and ENV in msg


def test_the_debugging_backend_runs_it_through_the_reference(monkeypatch):
    monkeypatch.setenv(ENV, "1")
    m = conv_with_runtime_weight()
    feeds = feeds_for(m)
    exe = build_executable(m)
    assert kernel_calls(exe.program).count("run_reference") == 1
    assert_close(exe.run(feeds), interpret(m, feeds), 1e-5)


# -- the evidence: the models of the issue ------------------------------------------------------------
LIGHT = sorted(glob.glob(os.path.join(os.path.dirname(onnx.__file__), "backend/test/data/light/light_*.onnx")))
LRN_MODELS = ("light_bvlc_alexnet", "light_zfnet512", "light_inception_v1")


@pytest.mark.skipif(len(LIGHT) != 9, reason="the onnx wheel's nine light models are not installed")
@pytest.mark.parametrize("path", LIGHT, ids=lambda p: os.path.basename(p).removesuffix(".onnx"))
def test_light_models_lower_without_reference_calls(path):
    """fp32 (canonicalized and fused) for all nine; AlexNet, ZFNet-512 and Inception v1 hold LRN, which fell back."""
    m = run_pipeline(load_canonical(path, 1), ["fuse"])
    calls = kernel_calls(lower(m))
    assert "run_reference" not in calls
    if os.path.basename(path).removesuffix(".onnx") in LRN_MODELS:
        assert calls.count("lrn_rows") == 2


@pytest.mark.skipif(len(LIGHT) != 9, reason="the onnx wheel's nine light models are not installed")
@pytest.mark.parametrize("name", LRN_MODELS)
def test_light_lrn_models_lower_int8_without_reference_calls(name):
    path = next(p for p in LIGHT if os.path.basename(p) == f"{name}.onnx")
    shape = load_canonical(path, 1).inputs[0].type.shape
    compiled = qv2c.compile(path, RNG.standard_normal((1,) + shape[1:]).astype(np.float32), precision="int8")
    calls = kernel_calls(lower(compiled.module))
    assert "run_reference" not in calls and calls.count("lrn_rows") == 2
