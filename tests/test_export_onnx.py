"""`model.export_onnx`: the compiled mixed model as an ONNX QDQ graph that onnxruntime runs, with qv2c's own
scales and zero points, and predicting what qv2c predicts."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from quant_models import images, small_cnn

import qv2c
from qv2c.datasets import load_eval_set, model_path, spread_indices, top1


def onnxruntime_outputs(path, x: np.ndarray, batch: int, optimize: bool = True) -> np.ndarray:
    """The first output of the exported model on every sample of `x`, in chunks of its static `batch`
    (the last chunk padded by repeating the last sample). `optimize=False`: no graph optimizations, so
    onnxruntime runs the QDQ graph as written (float ops between QuantizeLinear/DequantizeLinear)
    instead of fusing it into its own integer kernels."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    chunks = [session.run(None, {name: x[np.minimum(np.arange(i, i + batch), len(x) - 1)]})[0]
              for i in range(0, len(x), batch)]
    return np.concatenate(chunks)[:len(x)]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """(compiled small CNN, int8 except conv2, on the reference backend; path of its export)."""
    model = qv2c.compile(small_cnn(), images(16), precision="int8", keep_fp32=["conv2"], backend="reference",
                         analysis_backend="reference", batch_size=4)
    path = tmp_path_factory.mktemp("export") / "small.onnx"
    model.export_onnx(path)
    return model, path


def test_graph_is_qdq_with_qv2c_parameters(small):
    model, path = small
    graph = onnx.load(str(path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(convs) == 3 and {n.op_type for n in graph.node} >= {"QuantizeLinear", "DequantizeLinear", "Gemm"}

    def weight_dq(node):
        return producer.get(node.input[1])

    int8 = [n for n in convs if weight_dq(n) is not None]
    fp32 = [n for n in convs if weight_dq(n) is None]
    assert len(int8) == 2 and len(fp32) == 1 and inits[fp32[0].input[1]].dtype == np.float32
    for conv in int8:
        dq = weight_dq(conv)
        assert dq.op_type == "DequantizeLinear"
        w, scale, zp = (inits[i] for i in dq.input)
        assert w.dtype == np.int8 and zp.dtype == np.int8 and not zp.any()
        assert scale.shape == (w.shape[0],) and [a.i for a in dq.attribute if a.name == "axis"] == [0]
        bias = producer[conv.input[2]]
        b, b_scale, _ = (inits[i] for i in bias.input)
        assert bias.op_type == "DequantizeLinear" and b.dtype == np.int32 and b_scale.shape == (w.shape[0],)
        x_scale = inits[producer[conv.input[0]].input[1]]
        np.testing.assert_array_equal(b_scale, np.float32(x_scale) * scale)  # s_b = s_x * s_w[c], float32
    # qv2c's own parameters: every int8 activation type of the IR appears as a (scale, zero point) pair
    ir_params = {(np.float32(t.quant.scale[0]), t.quant.zero_point[0])
                 for op in model.module.ops for t in (r.type for r in op.results)
                 if t.quant is not None and t.dtype == "u8"}
    qdq = {(inits[n.input[1]].item(), int(inits[n.input[2]].item())) for n in graph.node
           if n.op_type == "QuantizeLinear"}
    assert ir_params and ir_params <= qdq


def test_onnxruntime_runs_the_qdq_graph_exactly_as_qv2c_on_the_small_model(small):
    """Run as written (no fusion into onnxruntime's integer kernels), the QDQ graph computes qv2c's
    numbers bit for bit on this model: the scales, zero points, bias scales and epilogues are qv2c's.
    With every optimization on, onnxruntime's fused kernels (e.g. QLinearGlobalAveragePool) round
    differently, so there only the predictions are compared."""
    model, path = small
    x = images(64, seed=3)
    want = model(x)
    np.testing.assert_array_equal(onnxruntime_outputs(path, x, model.batch_size, optimize=False), want)
    fused = onnxruntime_outputs(path, x, model.batch_size)
    assert (fused.argmax(1) == want.argmax(1)).mean() >= 0.95


def test_onnxruntime_keeps_the_fp32_layer_fp32(small, tmp_path):
    """After onnxruntime's own graph optimizations, exactly qv2c's int8 layers run as its integer kernels: the
    fp32 conv between two int8 ones is not turned int8 (onnxruntime quantizes the float weights of a
    DequantizeLinear -> Conv -> QuantizeLinear group, so the export must not form one around it)."""
    import onnxruntime as ort

    model, path = small
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    int8 = [n for n, p in model.precision.items() if p == "int8"]
    assert model.precision["conv2"] == "fp32" and len(int8) == 3  # conv1, conv3, fc
    assert ops.count("QLinearConv") + ops.count("QGemm") == len(int8)


_RELU6_CNN = """
agraph (float[N,3,8,8] x) => (float[N,10] y) {
  [conv1] c1 = Conv <pads = [1, 1, 1, 1]> (x, w1, b1)
  r1 = Clip (c1, lo, hi)
  [conv2] c2 = Conv <pads = [1, 1, 1, 1]> (r1, w2, b2)
  r2 = Clip (c2, lo, hi)
  g = GlobalAveragePool (r2)
  f = Flatten (g)
  [fc] y = Gemm <transB = 1> (f, wf, bf)
}
"""


def test_relu6_layers_run_as_onnxruntime_integer_kernels(tmp_path):
    """ReLU6 outputs that reach 6 get scale 6/255: the saturation of QuantizeLinear then clamps as ReLU6 does,
    so the export leaves the Clip out and onnxruntime fuses every int8 layer into QLinearConv/QGemm (with the
    Clip in, it keeps one whose range exceeds 6 by a rounding and runs those convs in float)."""
    import onnxruntime as ort
    from onnx_text import model as onnx_model
    from onnx_text import rand

    net = onnx_model(_RELU6_CNN, w1=4 * rand(8, 3, 3, 3), b1=rand(8, seed=1), w2=rand(8, 8, 3, 3, seed=2),
                     b2=rand(8, seed=3), wf=rand(10, 8, seed=4), bf=rand(10, seed=5),
                     lo=np.float32(0), hi=np.float32(6))
    x = images(16, seed=2)
    compiled = qv2c.compile(net, x, precision="int8", backend="reference", analysis_backend="reference",
                            batch_size=4)
    assert compiled.ranges and max(hi for _, hi in compiled.ranges.values()) >= 6.0
    compiled.export_onnx(tmp_path / "m.onnx")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(tmp_path / "m.onnx"), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    assert ops.count("QLinearConv") == 2 and ops.count("QGemm") == 1, ops
    np.testing.assert_array_equal(onnxruntime_outputs(tmp_path / "m.onnx", x, 4, optimize=False), compiled(x))


def test_a_loaded_model_exports_the_same_graph(small, tmp_path):
    model, path = small
    model.save(tmp_path / "m.qv2c")
    qv2c.load(tmp_path / "m.qv2c").export_onnx(tmp_path / "again.onnx")
    assert (tmp_path / "again.onnx").read_bytes() == path.read_bytes()


def test_onnxruntime_top1_agrees_on_cifar_squeezenet(tmp_path):
    """The acceptance figures of issue 16 on a small real model: on 500 test images (every class), top-1
    predictions agree on >= 99 % of images and the accuracies differ by at most 0.2 points (one image)."""
    if "QV2C_DATA" not in os.environ:
        pytest.fail("set QV2C_DATA to the shared data folder")
    name = "cifar10_squeezenet1_1"
    calibration, _ = load_eval_set(name, split="train", indices=spread_indices(name, 32, split="train"))
    x, y = load_eval_set(name, indices=spread_indices(name, 500))
    model = qv2c.compile(str(model_path(name)), calibration, fp32_layers=2, batch_size=16)
    assert "fp32" in model.precision.values() and "int8" in model.precision.values()
    model.export_onnx(tmp_path / "m.onnx")
    ours, theirs = model(x), onnxruntime_outputs(tmp_path / "m.onnx", x, 16)
    assert (ours.argmax(1) == theirs.argmax(1)).mean() >= 0.99
    assert abs(top1(ours, y) - top1(theirs, y)) <= 0.2
