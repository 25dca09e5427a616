"""Tests of the code generator and the compiled program as a whole (qv2c/codegen, runtime/executable.py).

- What each IR construct lowers to (which kernel entry point, with which static
  arguments), on small networks built inline.
- `spec_hash`, rendering and the on-disk cache: stable keys, reuse of a cached file,
  and rebuilding (never crashing) when the cached file is corrupt, stale or the
  cache directory is unusable.
- The buffer plan: buffers whose live ranges overlap never share bytes.
- A small residual net (tests/passes/test_realize_quant.py) under every precision
  assignment and placement, and the CIFAR-10 zoo models at fp32, int8 and mixed
  precision on 500 test images: the Numba backend gives the reference interpreter's
  top-1, bit-identical int8 logits and fp32 logits within tolerance.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import numpy as np
import pytest

# the residual test net lives with the realize-quant tests (tests/passes/, not on sys.path by itself)
sys.path.insert(0, str(Path(__file__).parent / "passes"))
from test_realize_quant import NET_LAYERS, NUMERIC_CASES, random_net  # noqa: E402

import qv2c
from qv2c.backend import build_executable
from qv2c.codegen import lower, render
from qv2c.codegen.kernel_desc import EntryPoint, Epilogue, KernelDesc
from qv2c.datasets import load_eval_set, model_path, spread_indices, top1
from qv2c.errors import ConfigError
from qv2c.ir import interpret
from qv2c.passes import run_pipeline
from qv2c.passes.calibrate import calibrate
from qv2c.passes.calibration_data import CalibrationSet
from qv2c.passes.realize_quant import QuantScheme, realize_quant
from qv2c.runtime.buffer_plan import live_ranges, plan_buffers
from qv2c.runtime.kernels.target import TARGETS
from qv2c.runtime.program import Buf


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QV2C_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def calibrated_net():
    m = random_net(batch=2)
    rng = np.random.default_rng(1)
    calib, test = rng.random((32, 3, 8, 8), dtype=np.float32), rng.random((8, 3, 8, 8), dtype=np.float32)
    return m, calibrate(m, CalibrationSet({"x": calib}), batch=2), test


DEFAULT_SCHEME = QuantScheme()


def realized(calibrated_net, int8_layers=frozenset(NET_LAYERS), scheme=DEFAULT_SCHEME, placement="boundary",
             fuse=True):
    m, ranges, _ = calibrated_net
    q = realize_quant(m, set(int8_layers), ranges, scheme, placement).module
    return run_pipeline(q, ["fuse"]) if fuse else q


def calls(program) -> list[str]:
    return [k.function for k in program.kernels]


def args_of(program, function: str) -> list[dict]:
    return [dict(k.args) for k in program.kernels if k.function == function]


# -- lowering ----------------------------------------------------------------------------------
def test_fp32_net_lowers_to_fused_kernels(calibrated_net):
    """fp32: conv+relu, conv+add+relu (residual), FC; flatten after the global pool is a free view."""
    m = run_pipeline(random_net(batch=2), ["fuse"])
    p = lower(m)
    assert calls(p) == ["nchw_to_nhwc", "conv2d_f32", "maxpool_nhwc", "conv2d_f32", "conv2d_f32",
                        "concat_part", "concat_part", "global_avgpool_nhwc", "conv2d_f32"]
    first, _, residual, fc = args_of(p, "conv2d_f32")
    assert (first["lo"], first["hi"], first["has_res"]) == (0.0, np.inf, False)
    assert (residual["lo"], residual["has_res"]) == (0.0, True) and isinstance(residual["res"], Buf)
    pixels = p.buffers[fc["x"].id]  # the FC runs as a 1x1 conv on a [2, 1, 1, 16] view of the flatten
    assert pixels.base is not None and pixels.view[-1] == ("reshape", (2, 1, 1, 16))
    assert p.kernels[-1].desc.anchor == "gemm"


def test_int8_net_lowers_to_integer_kernels(calibrated_net):
    """All int8: one quantize at the input, requantizing convs, the residual as conv+qadd in one kernel,
    int8 pooling and concat; the FC requantizes and one pass dequantizes exactly (or, with exact=False,
    its kernel dequantizes in the epilogue)."""
    p = lower(realized(calibrated_net))
    c = calls(p)
    assert c[:2] == ["nchw_to_nhwc", "quantize_flat"] and c[-2:] == ["conv2d_i8_requant", "dequantize_epilogue_flat"]
    assert calls(lower(realized(calibrated_net), exact=False))[-1] == "conv2d_i8_dequant"
    assert c.count("conv2d_i8_requant") == 4 and "qglobal_avgpool_nhwc" in c and "maxpool_nhwc" in c
    assert not {"dequantize_flat", "qadd_flat", "conv2d_f32"} & set(c)
    requant = args_of(p, "conv2d_i8_requant")
    assert [a["has_res"] for a in requant] == [False, False, True, False]  # conv1, conv2, conv3 + residual, fc
    for a in requant:  # one compiled specialisation for all four: the same argument types
        assert all(isinstance(a[k], int) for k in ("zx", "z1", "lo1", "hi1", "zr", "zy", "lo", "hi"))
        assert all(isinstance(a[k], float) for k in ("s1", "sr", "sy"))


def test_conv_groups_carry_a_typed_kernel_description(calibrated_net):
    """Every conv/GEMM call carries its KernelDesc (anchor, accumulation, epilogue as data, target), the
    entry point follows from it, and the generated program shows it and every argument by name."""
    p = lower(realized(calibrated_net), target=TARGETS["generic"])
    add = next(k.desc for k in p.kernels if k.desc is not None and k.desc.epilogue.residual)
    assert (add.anchor, add.accumulation, add.target) == ("conv", "int8", TARGETS["generic"])
    assert add.epilogue == Epilogue("requantize", True, add.epilogue.clamp, "float")
    fc = p.kernels[-2].desc
    assert (fc.anchor, fc.epilogue.boundary) == ("gemm", "requantize")  # exact: the dequantize is a pass of its own
    assert all(k.desc is None for k in p.kernels if k.function in ("quantize_flat", "maxpool_nhwc"))
    for k in p.kernels:
        if k.desc is not None:
            assert k.kernel.endswith(k.desc.entry_point().kernel)
            assert dict(k.args)["tgt"] is not None and p.consts[dict(k.args)["tgt"].id].data.ndim == 1
    source = render(p)
    assert "#   int8 conv; epilogue: requantize (float scales) + residual, clamp" in source
    assert "target generic" in source and " zx=" in source and " tgt=c[" in source
    dq = lower(realized(calibrated_net), exact=False, target=TARGETS["avx2"])
    gemm = next(k.desc for k in dq.kernels if k.function == "conv2d_i8_dequant")
    assert gemm.epilogue.boundary == "dequantize" and gemm.target is TARGETS["avx2"]


def test_kernel_desc_entry_points():
    ep = lambda anchor, acc, boundary, res: KernelDesc(anchor, acc, Epilogue(boundary, res),  # noqa: E731
                                                       TARGETS["avx2"]).entry_point()
    assert ep("conv", "f32", "none", True).kernel == "conv_f32:conv2d_f32"  # an fp32 residual is an argument
    assert ep("gemm", "f32", "quantize", False) == EntryPoint("conv_f32:conv2d_f32_quant", as_pixels=True)
    assert ep("gemm", "int8", "requantize", True) == EntryPoint("conv_i8:conv2d_i8_requant", as_pixels=True)
    assert ep("conv", "int8", "requantize", False) == ep("conv", "int8", "requantize", True)  # `has_res`
    assert ep("gemm", "f32", "none", False) == EntryPoint("conv_f32:conv2d_f32", as_pixels=True)
    assert ep("depthwise", "int8", "dequantize", True).kernel == "depthwise:depthwise_i8_dequant"
    with pytest.raises(NotImplementedError):
        ep("depthwise", "f32", "requantize", False)
    with pytest.raises(ValueError, match="boundary"):
        Epilogue("sideways", False)


def test_mixed_boundaries(calibrated_net):
    """conv1 fp32: the maxpool between it and the int8 convs keeps the quantize a kernel of its own;
    fc fp32: the int8 island ends with a dequantize kernel after the int8 global pool."""
    assert calls(lower(realized(calibrated_net, {"conv2", "conv3", "fc"}))) == [
        "nchw_to_nhwc", "conv2d_f32", "maxpool_nhwc", "quantize_flat", "conv2d_i8_requant", "conv2d_i8_requant",
        "concat_part", "concat_part", "qglobal_avgpool_nhwc", "conv2d_i8_requant", "dequantize_epilogue_flat"]
    assert calls(lower(realized(calibrated_net, {"conv1", "conv2", "conv3"})))[-2:] == ["dequantize_flat",
                                                                                         "conv2d_f32"]


def test_per_op_placement_runs_standalone_quantize_kernels(calibrated_net):
    p = lower(realized(calibrated_net, placement="per-op", fuse=False))
    c = calls(p)
    assert c.count("conv2d_i8_requant") == 4
    assert c.count("dequantize_flat") == 4 and c.count("quantize_flat") == 3  # one per int8 input


def test_shift_requantization_runs_the_int8_kernels_with_shifts(calibrated_net):
    """power-of-2 scales give requant="shift" layers: the same kernels as "float" ones, each given its
    per-channel shifts (int32, M = 2**-shift) where a float layer gets float32 multipliers."""
    p = lower(realized(calibrated_net, scheme=QuantScheme(scale_kind="power-of-2")))
    assert "run_reference" not in calls(p)
    assert calls(p) == calls(lower(realized(calibrated_net)))
    int8_calls = [dict(k.args) for k in p.kernels if k.function == "conv2d_i8_requant"]
    assert len(int8_calls) == 4
    for args in int8_calls:
        shifts = p.consts[args["mult"].id].data
        assert shifts.dtype == np.int32 and np.all((-31 <= shifts) & (shifts <= 62))


def test_shift_requantization_out_of_range_is_a_one_line_error():
    """A layer whose power-of-2 multiplier needs a shift the integer epilogue cannot do (outside
    [-31, 62], as `quant_math.requantize_shift`) is refused with a QV2CError naming the layer."""
    from types import SimpleNamespace

    from qv2c.codegen.lower import _requant_factors
    from qv2c.errors import QV2CError

    layer = SimpleNamespace(attrs={"requant": "shift"}, location="qv.qconv (ONNX node 'conv9')")
    assert _requant_factors(layer, np.array([2.0 ** -62, 2.0 ** 31], np.float64)).tolist() == [62, -31]
    for m in (2.0 ** -63, 2.0 ** 32):
        with pytest.raises(QV2CError, match=r"conv9.*outside \[-31, 62\]; keep this layer in fp32") as err:
            _requant_factors(layer, np.array([0.5, m], np.float64))
        assert "\n" not in str(err.value)


# -- the small net end to end: every assignment and placement -------------------------------------
#: every numeric case under every placement; a case that fixes realize-quant's placement to "per-op" runs once
NET_RUNS = [(case, placement) for case in NUMERIC_CASES
            for placement in ["boundary+fuse", "boundary", "per-op", "boundary+fuse/inexact"]
            if NUMERIC_CASES[case][2] != "per-op" or placement == "per-op"]


@pytest.mark.parametrize("case, placement", NET_RUNS)
def test_net_matches_the_interpreter(calibrated_net, case, placement):
    """Bit-exact where every fp32 value comes from integers; fp32 layers within 1e-4. With exact=False the
    int8 FC dequantizes its accumulators without rounding to its int8 grid: within half a step of it."""
    int8_layers, scheme, _ = NUMERIC_CASES[case]
    exact = not placement.endswith("/inexact")
    placement = placement.removesuffix("/inexact")
    q = realized(calibrated_net, int8_layers, scheme, placement.removesuffix("+fuse"), placement.endswith("+fuse"))
    x = calibrated_net[2][:2]
    want = interpret(q, {"x": x})["y"]
    got = build_executable(q, exact=exact).run({"x": x})["y"]
    if not exact:
        fc_step = next((op.result.type.quant.scale[0] for op in q.walk() if op.name == "qv.qgemm"), 0.0)
        np.testing.assert_allclose(got, want, rtol=0, atol=fc_step * 0.5001 + 1e-4 * np.abs(want).max())
    elif int8_layers == set(NET_LAYERS):
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())


# -- spec hash, rendering, cache ---------------------------------------------------------------
def test_spec_hash_keys_the_generated_source_not_the_weights(calibrated_net):
    p1, p2 = lower(realized(calibrated_net)), lower(realized(calibrated_net))
    assert p1.spec_hash == p2.spec_hash and render(p1) == render(p2)
    assert [k.spec_hash for k in p1.kernels] == [k.spec_hash for k in p2.kernels]
    other_weights = run_pipeline(random_net(seed=5, batch=2), ["fuse"])
    same_weights = run_pipeline(random_net(seed=0, batch=2), ["fuse"])
    assert lower(other_weights).spec_hash == lower(same_weights).spec_hash  # literals equal, constants differ
    other_scales = realized(calibrated_net, {"conv1", "conv2", "fc"})
    assert lower(other_scales).spec_hash != p1.spec_hash


def test_source_is_inspectable_and_cached(calibrated_net, tmp_path):
    q = realized(calibrated_net)
    exe = build_executable(q)
    assert exe.source_path is not None and exe.source_path.parent == tmp_path / "cache"
    assert exe.source_path.read_text() == exe.source
    assert "def run(b, c):" in exe.source and "conv2d_i8_requant(" in exe.source
    stamp = exe.source_path.stat().st_mtime_ns
    again = build_executable(realized(calibrated_net))
    assert again.source_path == exe.source_path and exe.source_path.stat().st_mtime_ns == stamp
    x = calibrated_net[2][:2]
    np.testing.assert_array_equal(again.run({"x": x})["y"], exe.run({"x": x})["y"])


@pytest.mark.parametrize("damage", ["truncate", "garbage", "edited", "stale-import", "empty"])
def test_damaged_cache_file_is_rebuilt(calibrated_net, damage):
    q = realized(calibrated_net)
    exe = build_executable(q)
    path, good = exe.source_path, exe.source
    header, _, body = good.partition("\n# body_sha256")
    if damage == "truncate":
        path.write_text(good[: len(good) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\xff\xfe\x00 not python")
    elif damage == "edited":
        path.write_text(good.replace("def run(b, c):", "def run(b, c):\n    raise RuntimeError"))
    elif damage == "empty":
        path.write_text("")
    else:  # a file whose checks pass but which no longer imports
        import hashlib

        bad_body = "from qv2c.runtime.ops_pool import no_such_kernel\n"
        path.write_text(f"{header}\n# body_sha256 = {hashlib.sha256(bad_body.encode()).hexdigest()}\n{bad_body}")
    rebuilt = build_executable(realized(calibrated_net))
    assert rebuilt.source == good and path.read_text() == good
    x = calibrated_net[2][:2]
    np.testing.assert_array_equal(rebuilt.run({"x": x})["y"], exe.run({"x": x})["y"])


def test_unusable_cache_directory_runs_from_memory(calibrated_net, tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    monkeypatch.setenv("QV2C_CACHE_DIR", str(blocker / "sub"))
    exe = build_executable(realized(calibrated_net))
    assert exe.source_path is None
    x = calibrated_net[2][:2]
    assert exe.run({"x": x})["y"].shape == (2, 10)


# -- buffer plan ---------------------------------------------------------------------------------
@pytest.mark.parametrize("int8_layers", [frozenset(), frozenset(NET_LAYERS), frozenset({"conv2", "fc"})])
def test_buffers_live_at_once_never_share_bytes(calibrated_net, int8_layers):
    p = lower(realized(calibrated_net, int8_layers))
    plan = plan_buffers(p)
    ranges = live_ranges(p)
    roots = [b for b in p.buffers if b.base is None and b.role != "input"]
    for i, a in enumerate(roots):
        for b in roots[i + 1:]:
            (fa, la), (fb, lb) = ranges[a.id], ranges[b.id]
            if fa <= lb and fb <= la:
                oa, ob = plan.offsets[a.id], plan.offsets[b.id]
                assert oa + a.nbytes <= ob or ob + b.nbytes <= oa, (a, b)
    assert all(ranges[bid][1] == len(p.kernels) for _, bid in p.outputs)
    assert 0 < plan.total_bytes < plan.unplanned_bytes


# -- compile API -------------------------------------------------------------------------------
def test_compile_backends_and_placements():
    from quant_models import images, small_cnn

    cnn, calib, x = small_cnn(), images(8, seed=1), images(5, seed=2)
    ref = qv2c.compile(cnn, calib, precision="int8", backend="reference")
    fast = qv2c.compile(cnn, calib, precision="int8", backend="numba")
    assert "qv.fused" in fast.ir and "def run(b, c):" in fast.source
    np.testing.assert_array_equal(fast(x), ref(x))  # int8 to the end: every fp32 value comes from integers
    for placement in ("boundary", "per-op"):
        model = qv2c.compile(cnn, calib, precision="int8", backend="numba", placement=placement)
        assert "qv.fused" not in model.ir
        np.testing.assert_allclose(model(x), dataclasses.replace(model, backend="reference")(x), rtol=0, atol=1e-5)
    fp32 = qv2c.compile(cnn, precision="fp32", backend="numba")
    assert "qv.fused" in fp32.ir
    with pytest.raises(ConfigError, match="backend"):
        qv2c.compile(cnn, calib, backend="tvm")
    with pytest.raises(ConfigError, match="placement"):
        qv2c.compile(cnn, calib, placement="everywhere")


# -- CIFAR-10 models -----------------------------------------------------------------------------
ZOO = ["cifar10_resnet18v1", "cifar10_mobilenetv2", "cifar10_squeezenet1_1", "cifar10_vgg16"]
IMAGES = 500


@pytest.fixture(scope="module")
def zoo_data():
    if "QV2C_DATA" not in os.environ:
        pytest.fail("set QV2C_DATA to the shared data folder to run the CIFAR-10 model tests")
    cache = {}

    def load(name):
        if name not in cache:
            calib, _ = load_eval_set(name, split="train", indices=spread_indices(name, 32, split="train"))
            cache[name] = (calib, *load_eval_set(name, indices=spread_indices(name, IMAGES)))
        return cache[name]

    return load


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8", "mixed"])
@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_top1_equals_reference(zoo_data, name, precision):
    """Numba backend vs reference interpreter on the same compiled module (batch 10): the same top-1.
    int8: bit-identical logits.  fp32: within 1e-4.  mixed: an fp32 layer's sums, rounded in another
    order, can move an int8 code downstream, so some images differ by a step: most must match."""
    calib, x, y = zoo_data(name)
    options = {"fp32_layers": 1} if precision == "mixed" else {}
    model = qv2c.compile(str(model_path(name)), calib, precision=precision, backend="numba", batch_size=10,
                         **options)
    got = model(x)
    want = dataclasses.replace(model, backend="reference")(x)
    assert top1(got, y) == top1(want, y)
    close = np.abs(got - want).max(axis=1) <= 1e-4 * np.abs(want).max()
    if precision == "int8":
        np.testing.assert_array_equal(got, want)
    elif precision == "fp32":
        assert close.all()
    else:
        assert close.mean() >= 0.95 and (got.argmax(1) != want.argmax(1)).sum() <= 1
