"""Tests of the analysis on generated code (qv2c/analysis_backend.py, passes/evaluator.py).

The Numba evaluator must show an analysis the same tensors the reference interpreter does:
integer taps bit for bit, fp32 taps within fp32 rounding (its kernels sum in another order),
without changing the module it runs, building one program per (module, taps) and reusing it
over the calibration batches. Calibration ranges and the rankings it produces must match the
interpreter's: on the small CNN of tests/quant_models.py for every inference-based method, and
on the CIFAR-10 ResNet-18 and VGG-16 of QV2C_DATA for QuantuneV2's top-k lists.
"""

from __future__ import annotations

import numpy as np
import pytest
from quant_models import LAYERS, images, small_cnn

import qv2c
from qv2c.analysis_backend import NumbaEvaluator
from qv2c.api import load_canonical
from qv2c.cli import build_parser
from qv2c.datasets import load_eval_set, model_path, spread_indices
from qv2c.passes.calibrate import calibrate
from qv2c.passes.calibration_data import make_calibration_set
from qv2c.passes.evaluator import ReferenceEvaluator
from qv2c.passes.realize_quant import QuantScheme, realize_quant
from qv2c.passes.sensitivity import SensitivityContext, rank_layers

#: fp32 rounding between two summation orders of the same convolutions (8-channel 3x3 sums)
FP32_RTOL = 1e-5


def observed(evaluator, module, inputs, taps) -> dict[int, np.ndarray]:
    got = {}
    evaluator.run(module, inputs, taps, lambda v, a: got.__setitem__(id(v), a))
    return got


@pytest.fixture(scope="module")
def small():
    """The small CNN at batch 2, calibrated on 6 images by the interpreter, and its all-int8 model."""
    module = load_canonical(small_cnn(), 2)
    data = make_calibration_set(module, images(6))
    ranges = calibrate(module, data, 2)
    int8 = realize_quant(module, set(LAYERS), ranges, QuantScheme("per-tensor"))
    return module, data, ranges, int8


def test_taps_match_the_interpreter_and_leave_the_module_unchanged(small):
    module, data, _, int8 = small
    inputs, _ = next(data.batches(2))
    text = str(int8.module)
    taps = [*int8.module.inputs, *(r for op in int8.module.ops for r in op.results)]
    ref = observed(ReferenceEvaluator(), int8.module, inputs, taps)
    got = observed(NumbaEvaluator(), int8.module, inputs, taps)
    assert str(int8.module) == text
    assert set(got) == set(ref) == {id(v) for v in taps}
    ints = [v for v in taps if v.type.dtype != "f32"]
    assert ints and all(np.array_equal(got[id(v)], ref[id(v)]) for v in ints)  # int8 layers bit-exact
    for v in taps:
        assert got[id(v)].dtype == ref[id(v)].dtype and got[id(v)].shape == v.type.shape
        np.testing.assert_allclose(got[id(v)], ref[id(v)], rtol=FP32_RTOL, atol=1e-6 * np.abs(ref[id(v)]).max())


def test_one_program_per_module_and_taps_reused_over_batches(small):
    module, data, ranges, _ = small
    evaluator = NumbaEvaluator()
    calibrate(module, data, 2, evaluator=evaluator)  # 3 batches
    assert evaluator.builds == 1
    calibrate(module, data, 2, evaluator=evaluator)
    assert evaluator.builds == 1
    outputs_only = observed(evaluator, module, next(data.batches(2))[0], module.outputs)
    assert evaluator.builds == 2 and len(outputs_only) == 1  # other taps: another program


def test_small_cnn_ranges_and_rankings_match_the_interpreter(small):
    module, data, ranges, _ = small
    evaluator = NumbaEvaluator()
    got = calibrate(module, data, 2, evaluator=evaluator)
    assert got.keys() == ranges.keys()
    for name, (lo, hi) in ranges.items():
        assert got[name] == pytest.approx((lo, hi), rel=FP32_RTOL, abs=1e-6), name
    for method in ("quantunev2", "quantunev2-global", "quantunev2-referred", "leave-one-out", "output-sqnr"):
        for granularity in ("per-channel", "per-tensor"):
            scheme = QuantScheme(granularity)
            ref = rank_layers(method, SensitivityContext(module, data, 2, ranges, scheme))
            num = rank_layers(method, SensitivityContext(module, data, 2, ranges, scheme, evaluator=evaluator))
            assert num.top(len(LAYERS)) == ref.top(len(LAYERS)), (method, granularity)
            assert [r.score for r in num.records] == pytest.approx([r.score for r in ref.records], abs=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cifar10_resnet18v1", "cifar10_vgg16"])
def test_cifar_quantunev2_top_k_matches_the_interpreter(name):
    """32 training images, each side calibrating and ranking on its own evaluator, as
    `compile(analysis_backend=...)` does: the same top-k for k = 1, 2, 3, 5 and minmax ranges
    within fp32 rounding."""
    module = load_canonical(str(model_path(name)), 16)
    x, _ = load_eval_set(name, split="train", indices=spread_indices(name, 32, split="train"))
    data = make_calibration_set(module, x)
    ref_ranges = calibrate(module, data, 16)
    evaluator = NumbaEvaluator()
    num_ranges = calibrate(module, data, 16, evaluator=evaluator)
    for key, (lo, hi) in ref_ranges.items():
        assert num_ranges[key] == pytest.approx((lo, hi), rel=FP32_RTOL, abs=1e-6), key
    for granularity in ("per-channel", "per-tensor"):
        scheme = QuantScheme(granularity)
        ref = rank_layers("quantunev2", SensitivityContext(module, data, 16, ref_ranges, scheme))
        num = rank_layers("quantunev2", SensitivityContext(module, data, 16, num_ranges, scheme, evaluator=evaluator))
        for k in (1, 2, 3, 5):
            assert set(num.top(k)) == set(ref.top(k)), (granularity, k)


def test_compile_picks_the_analysis_backend():
    """Both analysis backends pick the same fp32 layers on the small CNN; the CLI passes the option on."""
    kept = {}
    for backend in ("numba", "reference"):
        model = qv2c.compile(small_cnn(), images(6), fp32_layers=2, analysis_backend=backend, backend="reference")
        kept[backend] = {n for n, p in model.precision.items() if p == "fp32"}
        assert kept[backend] == set(model.sensitivity.top(2))
    assert kept["numba"] == kept["reference"] and len(kept["numba"]) == 2
    assert build_parser().parse_args(["m.onnx", "--analysis-backend", "numba"]).analysis_backend == "numba"

