"""End-to-end tests of `qv2c.compile` and `CompiledModel` (qv2c/api.py).

On the small CNN of tests/quant_models.py (4 layers: conv1, conv2, conv3, fc): every
precision mode, each way of choosing the fp32 layers, running any number of samples,
and each mistake a user can make, which must raise a one-line `QV2CError` subclass
saying what is wrong. One test compiles the CIFAR-10 ResNet-18 from QV2C_DATA.
"""

from __future__ import annotations

import numpy as np
import pytest
from quant_models import LAYERS, images, small_cnn

import qv2c
from qv2c.datasets import load_eval_set, model_path, spread_indices, top1
from qv2c.errors import CalibrationError, ConfigError, InputError
from qv2c.ir import interpret
from qv2c.passes.sensitivity import Ranking
from qv2c.runtime.kernels.target import TARGETS

CALIB = images(8, seed=1)
TEST = images(12, seed=2)


@pytest.fixture(scope="module")
def cnn():
    return small_cnn()


def fp32_layers_of(model) -> set[str]:
    return {name for name, p in model.precision.items() if p == "fp32"}


def sqnr_db(ref: np.ndarray, approx: np.ndarray) -> float:
    err = approx.astype(np.float64) - ref
    return 10.0 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum(err**2))


# -- precision modes ------------------------------------------------------------------
def test_fp32_needs_no_calibration_and_matches_the_imported_model(cnn):
    model = qv2c.compile(cnn, precision="fp32")
    assert model.precision == dict.fromkeys(LAYERS, "fp32")
    assert model.sensitivity is None and "qv.q" not in model.ir
    want = interpret(qv2c.import_onnx(cnn, batch_size=1), {"x": TEST[:1]})["y"]
    np.testing.assert_allclose(model(TEST[:1]), want, rtol=1e-5, atol=1e-6)


def test_int8_quantizes_every_layer(cnn):
    model = qv2c.compile(cnn, CALIB, precision="int8")
    assert model.precision == dict.fromkeys(LAYERS, "int8")
    assert model.sensitivity is None
    assert model.ir.count("qv.qconv(") == 3 and model.ir.count("qv.qgemm(") == 1
    assert model.ir.count("qv.quantize(") == 1 and model.ir.count("qv.dequantize(") == 1
    assert sqnr_db(qv2c.compile(cnn, precision="fp32")(TEST), model(TEST)) > 20.0


def test_mixed_keeps_the_most_sensitive_layer_by_default(cnn):
    model = qv2c.compile(cnn, CALIB)
    assert isinstance(model.sensitivity, Ranking) and model.sensitivity.method == "quantunev2"
    assert model.sensitivity.inferences == 2
    assert fp32_layers_of(model) == set(model.sensitivity.top(1))
    assert model.ir.count("qv.qconv(") + model.ir.count("qv.qgemm(") == len(LAYERS) - 1
    assert model.sensitivity.table().count("\n") == len(LAYERS)


@pytest.mark.parametrize("k", range(len(LAYERS) + 1))
def test_fp32_layers_k_keeps_exactly_the_k_top_ranked(cnn, k):
    model = qv2c.compile(cnn, CALIB, fp32_layers=k)
    assert fp32_layers_of(model) == set(model.sensitivity.top(k))
    assert model.ir.count("qv.qconv(") + model.ir.count("qv.qgemm(") == len(LAYERS) - k


def test_keep_fp32_comes_on_top_of_the_k_ranked_layers(cnn):
    """Keeping the top-ranked layer does not use up one of the k picks: fp32_layers=1 plus
    keep_fp32=[top layer] gives the two top-ranked layers in fp32."""
    ranking = qv2c.compile(cnn, CALIB, fp32_layers=0).sensitivity.top(len(LAYERS))
    model = qv2c.compile(cnn, CALIB, fp32_layers=1, keep_fp32=[ranking[0]])
    assert fp32_layers_of(model) == set(ranking[:2])
    model = qv2c.compile(cnn, CALIB, fp32_layers=1, keep_fp32=[ranking[-1]])
    assert fp32_layers_of(model) == {ranking[0], ranking[-1]}


def test_force_int8_skips_a_top_ranked_layer(cnn):
    ranking = qv2c.compile(cnn, CALIB, fp32_layers=0).sensitivity.top(len(LAYERS))
    model = qv2c.compile(cnn, CALIB, fp32_layers=1, force_int8=[ranking[0]])
    assert fp32_layers_of(model) == {ranking[1]}


def test_keep_fp32_with_precision_int8(cnn):
    model = qv2c.compile(cnn, CALIB, precision="int8", keep_fp32=["conv2", "fc"])
    assert fp32_layers_of(model) == {"conv2", "fc"}
    assert model.ir.count("qv.qconv(") == 2 and "qv.qgemm" not in model.ir


def test_max_accuracy_drop_picks_the_fewest_fp32_layers():
    """conv3 with a 1000x channel ruins per-tensor int8; labels are the fp32 model's own
    predictions (100% top-1). All-int8 falls well below 90%, keeping conv3 alone
    restores it: a 10-point budget needs exactly one fp32 layer, a 50-point one none."""
    cnn = small_cnn(skewed="conv3")
    val = images(100, seed=3)
    labels = qv2c.compile(cnn, precision="fp32", batch_size=25)(val).argmax(1)
    options = dict(weight_granularity="per-tensor", batch_size=25, validation=(val, labels))
    assert top1(qv2c.compile(cnn, CALIB, precision="int8", **options)(val), labels) < 90.0

    model = qv2c.compile(cnn, CALIB, max_accuracy_drop=10.0, **options)
    assert fp32_layers_of(model) == {"conv3"} == set(model.sensitivity.top(1))
    assert top1(model(val), labels) >= 90.0
    assert fp32_layers_of(qv2c.compile(cnn, CALIB, max_accuracy_drop=50.0, **options)) == set()


def test_calibration_forms(cnn):
    """An array, a list of samples, a list of batches, dicts and a generator all calibrate alike."""
    want = qv2c.compile(cnn, CALIB, precision="int8").ranges
    for calibration in ([s for s in CALIB], [CALIB[:3], CALIB[3:]], [{"x": s} for s in CALIB], (s for s in CALIB)):
        assert qv2c.compile(cnn, calibration, precision="int8").ranges == want


# -- running --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def int8_models(cnn):
    """All-int8 programs compiled at batch 1 and 4: integer ops make their outputs exact,
    so chunking is checked bit for bit."""
    return qv2c.compile(cnn, CALIB, precision="int8"), qv2c.compile(cnn, CALIB, precision="int8", batch_size=4)


def test_target_option_chooses_the_kernels(cnn, int8_models):
    """`target=` generates the conv/GEMM kernels for that instruction set (here the portable 4-lane one),
    with the same integer results as the default target's."""
    generic = qv2c.compile(cnn, CALIB, precision="int8", target="generic")
    assert generic.target is TARGETS["generic"] and "target generic" in generic.source
    np.testing.assert_array_equal(generic(TEST[:3]), int8_models[0](TEST[:3]))


def test_runs_any_number_of_samples_in_chunks(int8_models):
    one, four = int8_models
    assert four.batch_size == 4
    want = np.concatenate([one(TEST[i:i + 1]) for i in range(len(TEST))])
    for n in (1, 3, 4, 5, 9, 12):
        got = four(TEST[:n])
        assert got.shape == (n, 10)
        np.testing.assert_array_equal(got, want[:n])


def test_call_returns_the_array_run_returns_a_dict(int8_models):
    model = int8_models[1]
    outs = model.run(TEST[:5])
    assert list(outs) == ["y"]
    np.testing.assert_array_equal(model(TEST[:5]), outs["y"])
    np.testing.assert_array_equal(model({"x": TEST[:5]}), outs["y"])
    assert model.input_names == ["x"]


@pytest.mark.parametrize("inputs, fragment", [
    (np.zeros((0, 3, 8, 8), np.float32), "0 samples"),
    (np.zeros((2, 3, 9, 9), np.float32), "shape"),
    (np.zeros((3, 8, 8), np.float32), "shape"),
    (np.zeros((2, 3, 8, 8), np.float64), "dtype float64"),
    ({"image": np.zeros((2, 3, 8, 8), np.float32)}, "unknown input name"),
])
def test_run_rejects_bad_inputs(int8_models, inputs, fragment):
    for model in int8_models:
        with pytest.raises(InputError, match=fragment) as e:
            model.run(inputs)
        assert "\n" not in str(e.value)


# -- mistakes ----------------------------------------------------------------------------
NAN = CALIB.copy()
NAN[2, 1, 3, 3] = np.nan
INF = CALIB.copy()
INF[0, 0, 0, 0] = -np.inf

BAD_CALLS = {
    "no calibration": (None, {}, CalibrationError, "no calibration data"),
    "empty list": ([], {}, CalibrationError, "empty"),
    "empty array": (CALIB[:0], {}, CalibrationError, "empty"),
    "wrong shape": (images(4)[:, :, :4, :4], {}, CalibrationError, r"shape \[4, 3, 4, 4\]"),
    "float64": (CALIB.astype(np.float64), {}, CalibrationError, "dtype float64"),
    "NaN": (NAN, {}, CalibrationError, "1 NaN/Inf"),
    "Inf": (INF, {}, CalibrationError, "1 NaN/Inf"),
    "unknown input": ([{"image": CALIB[0]}], {}, CalibrationError, "unknown input"),
    "unknown keep_fp32": (CALIB, {"keep_fp32": ["conv9"]}, ConfigError, r"keep_fp32 names unknown layer\(s\) \['conv9'\]"),
    "unknown force_int8": (CALIB, {"force_int8": ["Conv#0"]}, ConfigError, "force_int8 names unknown"),
    "keep_fp32 string": (CALIB, {"keep_fp32": "conv1"}, ConfigError, "list of layer names"),
    "in both lists": (CALIB, {"keep_fp32": ["conv1"], "force_int8": ["conv1", "fc"]}, ConfigError,
                      r"\['conv1'\] are in both"),
    "fp32_layers too large": (CALIB, {"fp32_layers": 5}, ConfigError, "only 4 quantizable layers"),
    "fp32_layers beyond pinned": (CALIB, {"fp32_layers": 4, "keep_fp32": ["conv1"]}, ConfigError,
                                  "3 of them not pinned"),
    "fp32_layers negative": (CALIB, {"fp32_layers": -1}, ConfigError, "non-negative int"),
    "fp32_layers bool": (CALIB, {"fp32_layers": True}, ConfigError, "non-negative int"),
    "fp32_layers float": (CALIB, {"fp32_layers": 1.0}, ConfigError, "non-negative int"),
    "fp32_layers with int8": (CALIB, {"precision": "int8", "fp32_layers": 1}, ConfigError, "only apply to"),
    "no validation": (CALIB, {"max_accuracy_drop": 1.0}, ConfigError, "needs validation"),
    "negative drop": (CALIB, {"max_accuracy_drop": -1.0, "validation": (CALIB, np.zeros(8, int))}, ConfigError,
                      ">= 0"),
    "both k and drop": (CALIB, {"fp32_layers": 1, "max_accuracy_drop": 1.0, "validation": (CALIB, np.zeros(8, int))},
                        ConfigError, "either"),
    "method": (CALIB, {"method": "hawq"}, ConfigError, "unknown method 'hawq'"),
    "analysis_backend": (CALIB, {"analysis_backend": "onnxruntime"}, ConfigError, "unknown analysis_backend"),
    "calibration_method": (CALIB, {"calibration_method": "kl"}, ConfigError, "unknown calibration_method 'kl'"),
    "weight_granularity": (CALIB, {"weight_granularity": "per-row"}, ConfigError, "weight_granularity"),
    "scale_kind": (CALIB, {"scale_kind": "pow2"}, ConfigError, "scale_kind"),
    "precision": (CALIB, {"precision": "int4"}, ConfigError, "precision must be one of"),
    "placement": (CALIB, {"placement": "everywhere"}, ConfigError, "placement"),
    "batch_size": (CALIB, {"batch_size": 0}, ConfigError, "batch_size"),
    "target": (CALIB, {"target": "avx9"}, ConfigError, "target='avx9' is not a target: choose one of generic"),
    # the fp32 path checks the layer lists too, so a misspelt name never passes silently
    "fp32 with unknown keep_fp32": (None, {"precision": "fp32", "keep_fp32": ["conv9"]}, ConfigError, "unknown layer"),
    "fp32 with an unused method": (None, {"precision": "fp32", "method": "hawq"}, ConfigError, "unknown method"),
}


@pytest.mark.parametrize("case", BAD_CALLS)
def test_mistakes_raise_one_line_errors(cnn, case):
    calibration, options, error, fragment = BAD_CALLS[case]
    with pytest.raises(error, match=fragment) as e:
        qv2c.compile(cnn, calibration, **options)
    assert isinstance(e.value, qv2c.QV2CError) and "\n" not in str(e.value)


# -- a real model ------------------------------------------------------------------------
@pytest.mark.slow
def test_resnet18_int8_per_channel_agrees_with_fp32():
    """CIFAR-10 ResNet-18 (QV2C_DATA), calibrated on 32 training images: int8 with
    per-channel weights predicts the fp32 class on >= 95% of 200 test images."""
    path = str(model_path("cifar10_resnet18v1"))
    name = "cifar10_resnet18v1"
    calibration, _ = load_eval_set(name, split="train", indices=spread_indices(name, 32, split="train"))
    x, _ = load_eval_set(name, indices=spread_indices(name, 200))  # all ten classes
    int8 = qv2c.compile(path, calibration, precision="int8", batch_size=50)
    assert set(int8.precision.values()) == {"int8"} and "qv.qconv" in int8.ir
    fp32 = qv2c.compile(path, precision="fp32", batch_size=50)
    assert np.mean(int8(x).argmax(1) == fp32(x).argmax(1)) >= 0.95
