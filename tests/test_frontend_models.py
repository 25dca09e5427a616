"""Every real model we ship tests with imports, verifies and is quick to load: the nine light
models bundled with the onnx wheel (weights made by ConstantOfShape, Sum, LRN, Reshape,
Transpose) and every model under QV2C_DATA. A few are also run against onnxruntime."""

from __future__ import annotations

import glob
import os
import time

import numpy as np
import onnx
import pytest
from onnx_text import assert_matches_onnxruntime

import qv2c

LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
LIGHT = sorted(os.path.basename(p) for p in glob.glob(os.path.join(LIGHT_DIR, "*.onnx")))
DATA_MODELS = [
    *(f"cifar10_zoo/{n}{suffix}.onnx" for n in ("mobilenetv2", "resnet18v1", "resnet50v1", "squeezenet1_1", "vgg16")
      for suffix in ("", "_folded")),
    "squeezenet1.1_imagenet/squeezenet1.1_fp32.onnx",
    "mobilenetv2_imagenet/mobilenetv2_tf2_ptq_dequant_fp32.onnx",
]
#: light models whose final Reshape hard-codes batch 1 (rebinding applies it per sample)
LIGHT_BATCH_ONE = {"light_bvlc_alexnet.onnx", "light_inception_v1.onnx", "light_inception_v2.onnx",
                   "light_resnet50.onnx", "light_shufflenet.onnx", "light_vgg19.onnx", "light_zfnet512.onnx"}
#: seconds one import may take (they take well under one; this catches pathological slowness)
MAX_IMPORT_SECONDS = 5.0


def data_path(rel: str) -> str:
    root = os.environ.get("QV2C_DATA")
    if not root:
        pytest.fail("QV2C_DATA is not set; export QV2C_DATA=/work/shared/data to run the model tests")
    path = os.path.join(root, rel)
    assert os.path.exists(path), f"{path} is missing from QV2C_DATA"
    return path


def import_timed(path: str, **kwargs):
    start = time.perf_counter()
    module = qv2c.import_onnx(path, **kwargs)
    elapsed = time.perf_counter() - start
    assert elapsed < MAX_IMPORT_SECONDS, f"importing {path} took {elapsed:.1f}s"
    module.verify()
    return module


def test_the_onnx_wheel_has_nine_light_models():
    assert len(LIGHT) == 9, LIGHT


@pytest.mark.parametrize("name", LIGHT)
def test_light_model_loads(name):
    path = os.path.join(LIGHT_DIR, name)
    proto = onnx.load(path)
    module = import_timed(path)
    # the ConstantOfShape weight builders were folded into constants
    assert all(op.operands[1].is_constant for op in module.ops if op.name in ("qv.conv", "qv.gemm"))
    assert [v.name for v in module.outputs] == [o.name for o in proto.graph.output]
    initializers = {t.name for t in proto.graph.initializer}
    assert [v.name for v in module.inputs] == [i.name for i in proto.graph.input if i.name not in initializers]
    assert module.inputs[0].type.shape == (1, 3, 224, 224)


@pytest.mark.parametrize("name", LIGHT)
def test_light_model_batch_rebinding(name):
    path = os.path.join(LIGHT_DIR, name)
    module = import_timed(path, batch_size=2)
    assert module.outputs[0].type.shape[0] == 2
    reshapes = [op.attrs["shape"] for op in module.ops if op.name == "qv.reshape"]
    if name in LIGHT_BATCH_ONE:  # the hard-coded [1, ...] target now follows the batch
        assert reshapes and all(shape[0] == 2 for shape in reshapes), reshapes


@pytest.mark.parametrize("rel", DATA_MODELS)
def test_data_model_loads(rel):
    path = data_path(rel)
    module = import_timed(path, batch_size=1)
    assert module.inputs[0].type.shape[0] == 1 and module.outputs[0].name == "logits"
    if rel.startswith("cifar10_zoo/"):  # dynamic batch: any batch works
        assert import_timed(path, batch_size=3).outputs[0].type.shape == (3, 10)


def test_mobilenetv2_with_hard_coded_batch_one_rebinds_per_sample():
    """The ImageNet MobileNetV2 reshapes to a literal [1, 1280] before its classifier; imported at batch 2
    each image's logits equal its batch-1 logits."""
    path = data_path("mobilenetv2_imagenet/mobilenetv2_tf2_ptq_dequant_fp32.onnx")
    single, double = import_timed(path), import_timed(path, batch_size=2)
    (name,) = [v.name for v in single.inputs]
    x = np.random.default_rng(5).standard_normal((2, *single.inputs[0].type.shape[1:])).astype(np.float32)
    got = qv2c.ir.interpret(double, {name: x})["logits"]
    want = np.concatenate([qv2c.ir.interpret(single, {name: x[i:i + 1]})["logits"] for i in range(2)])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_every_data_model_is_covered():
    root = os.path.dirname(os.path.dirname(data_path(DATA_MODELS[0])))
    found = {os.path.relpath(p, root) for p in glob.glob(os.path.join(root, "**", "*.onnx"), recursive=True)}
    assert found == set(DATA_MODELS)


@pytest.mark.parametrize("rel", DATA_MODELS)
def test_data_model_matches_onnxruntime(rel):
    """fp32 outputs agree with onnxruntime to 1e-4 relative (CIFAR models at batch 2)."""
    batch = 2 if rel.startswith("cifar10_zoo/") else 1
    assert_matches_onnxruntime(onnx.load(data_path(rel)), batch_size=batch, atol=1e-4)


def logits_instead_of_softmax(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its final Softmax removed, so the graph output is the logits.

    The light models' weights are constant fills, so their logits are huge (~7e9) and
    nearly equal: they differ by a few float32 ulps, and the softmax of them is decided
    by summation-order rounding (it changes with the BLAS thread count). Comparing the
    logits at 1e-4 relative is the meaningful check; Softmax itself is tested in
    tests/test_reference_ops.py."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    graph = out.graph
    last = graph.node[-1]
    if last.op_type == "Softmax" and last.output[0] == graph.output[0].name:
        logits = last.input[0]
        graph.node.pop()
        graph.output[0].name = logits
    return out


@pytest.mark.parametrize("name", LIGHT)
def test_light_model_matches_onnxruntime(name):
    assert_matches_onnxruntime(logits_instead_of_softmax(onnx.load(os.path.join(LIGHT_DIR, name))), atol=1e-4)


def test_squeezenet_matches_its_reference_outputs():
    """The upstream test_data_set pairs: interpreter logits within 1e-3 max abs."""
    import numpy as np

    from qv2c.ir import interpret

    module = qv2c.import_onnx(data_path("squeezenet1.1_imagenet/squeezenet1.1_fp32.onnx"))
    sets = sorted(glob.glob(os.path.join(os.path.dirname(data_path("squeezenet1.1_imagenet/README.md")),
                                         "test_data_set", "*")))
    assert len(sets) == 3
    for folder in sets:
        x = np.load(os.path.join(folder, "input_0.npy")).astype(np.float32)
        want = np.load(os.path.join(folder, "output_0.npy"))
        got = interpret(module, {"input": x})["logits"]
        assert np.abs(got - want.reshape(got.shape)).max() < 1e-3, folder
