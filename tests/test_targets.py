"""Every code-generation target (`qv2c/runtime/kernels/target.py`), on any host.

- Kernels of every target this host can run or emulate, bit-exact (int8) or within 1e-4
  (fp32) against NumPy: the generic 4-lane target, AVX-512's 16-lane 12-row tiles (LLVM splits
  the vectors on a host without AVX-512), and AVX-512 VNNI's u8 x s8 "quads" with its packing,
  zero-point correction and tiles, the `vpdpbusd` step emulated in portable IR where the CPU
  lacks VNNI and run for real where it has it.  (`test_kernels.py` covers the host's own target with
  every epilogue: on a VNNI CPU that is the quads path with residual add, shifts and dequantize; here
  the emulated quads run the requantizing epilogue only, since each further epilogue is another 40 s
  of cold JIT and the epilogue code after the accumulation is the same for every target.)
- Instruction selection for named CPUs, from the same generated IR compiled by llvmlite:
  `vpdpbusd` on zmm for VNNI, `vfmadd231ps` on zmm for AVX-512 fp32, `vpmaddwd` for AVX2, and
  never the saturating `vpmaddubsw`.
- Target choice: host features, `QV2C_TARGET`, refusals.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_kernels import check_conv_f32, check_depthwise_f32, conv_cases, geometry, int8_acc, int8_data, nhwc, out_shape

from qv2c.codegen.target_asm import kernel_assembly
from qv2c.errors import QV2CError
from qv2c.ir.quant_math import requantize_float
from qv2c.runtime.kernels import conv_i8, depthwise, gemm, packing, target
from qv2c.runtime.kernels.microkernel import standalone_ir
from qv2c.runtime.kernels.target import AVX512_VNNI_EMULATED, TARGETS

FEW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])

HOST = target.host_features()
HAS_VNNI = bool(HOST.get("avx512vnni"))
#: int8 targets checked here besides the host's own: the emulated VNNI always, the real one where it runs
INT8_TARGETS = [TARGETS["generic"], TARGETS["avx512"], AVX512_VNNI_EMULATED]
FP32_TARGETS = [TARGETS["generic"], TARGETS["avx512"]]
#: depthwise channel blocks differ by vector width only: 16 channels (generic, AVX2), 32 (AVX-512)
DW_TARGETS = [TARGETS["generic"], TARGETS["avx512"]]


def _ids(targets):
    return [t.label for t in targets]


def _int8_layer(rng, case, signed_x):
    x, w, zx = int8_data(rng, case, signed_x)
    bias = rng.integers(-3000, 3000, case["oc"]).astype(np.int32)
    return x, w, zx, bias


# -- int8 --------------------------------------------------------------------------------
@pytest.mark.parametrize("tgt", INT8_TARGETS, ids=_ids(INT8_TARGETS))
@FEW
@given(case=conv_cases(), signed_x=st.booleans(), seed=st.integers(0, 2**31))
def test_conv_i8_requant_bit_exact_on_every_target(tgt, case, signed_x, seed):
    def run(x, zx, w, bias, out, mult, zy):
        packed = packing.pack_conv_i8(w, case["groups"], dot=tgt.int8_dot).data
        conv_i8.conv2d_i8(x, zx, packed, bias, out, *geometry(case), mult, zy, 0, 255, tgt.marker())
    _check_requant(run, case, signed_x, seed, 2e-4)


def _check_requant(run, case, signed_x, seed, mult_range):
    """`run(x_nhwc, zx, w, bias, out, mult, zy)` on a random int8 layer of `case` equals requantize(NumPy acc)."""
    rng = np.random.default_rng(seed)
    x, w, zx, bias = _int8_layer(rng, case, signed_x)
    mult = (rng.random(case["oc"]) * mult_range + mult_range / 20).astype(np.float32)
    zy = int(rng.integers(0, 256))
    out = np.empty(out_shape(case), np.uint8)
    run(nhwc(x), zx, w, bias, out, mult, zy)
    want = requantize_float(int8_acc(x, w, zx, bias, case), mult, zy, 0, 255)
    np.testing.assert_array_equal(out.astype(np.int32), want)


@pytest.mark.parametrize("m", [1, 7, 13])
def test_vnni_quads_gemm_bit_exact(m):
    """FC layers: batch 1 is the single-row tile with 8 partial sums per accumulator."""
    rng = np.random.default_rng(m)
    k, n = 203, 37
    a = rng.integers(0, 256, (m, k)).astype(np.uint8)
    wt = rng.integers(-128, 128, (n, k)).astype(np.int8)
    bias = rng.integers(-5000, 5000, n).astype(np.int32)
    mult = (rng.random(n) * 1e-4).astype(np.float32)
    out = np.empty((m, n), np.uint8)
    gemm.gemm_i8(a, 9, packing.pack_gemm_i8(wt, dot="quads").data, bias, out, mult, 3, 0, 255,
                 AVX512_VNNI_EMULATED.marker())
    acc = (a.astype(np.int64) - 9) @ wt.T.astype(np.int64) + bias
    np.testing.assert_array_equal(out.astype(np.int32), requantize_float(acc, mult, 3, 0, 255))


def test_vnni_quads_read_u8_input_in_place_and_pad_with_the_zero_point():
    """A 1x1 conv on u8 with 4k channels reads its input in place; a padded one sees the zero point at the border."""
    rng = np.random.default_rng(5)
    for pads, c in (((0, 0, 0, 0), 8), ((1, 1, 1, 1), 8), ((2, 0, 1, 2), 5)):
        case = dict(n=1, c=c, h=5, w=6, oc=20, groups=1, kernel=(1, 1) if not any(pads) else (3, 3),
                    strides=(1, 1), pads=pads, dilations=(1, 1))
        x, w, zx, bias = _int8_layer(rng, case, signed_x=False)
        mult = np.full(20, 3e-4, np.float32)
        out = np.empty(out_shape(case), np.uint8)
        conv_i8.conv2d_i8(nhwc(x), zx, packing.pack_conv_i8(w, dot="quads").data, bias, out, *geometry(case),
                          mult, 100, 0, 255, AVX512_VNNI_EMULATED.marker())
        np.testing.assert_array_equal(out.astype(np.int32),
                                      requantize_float(int8_acc(x, w, zx, bias, case), mult, 100, 0, 255))


@pytest.mark.skipif(not HAS_VNNI, reason="this CPU lacks avx512vnni: the real vpdpbusd cannot run here")
@FEW
@given(case=conv_cases(), signed_x=st.booleans(), seed=st.integers(0, 2**31))
def test_real_vpdpbusd_matches_its_emulation(case, signed_x, seed):
    rng = np.random.default_rng(seed)
    x, w, zx, bias = _int8_layer(rng, case, signed_x)
    mult = (rng.random(case["oc"]) * 2e-4).astype(np.float32)
    packed = packing.pack_conv_i8(w, case["groups"], dot="quads").data
    outs = []
    for tgt in (TARGETS["avx512-vnni"], AVX512_VNNI_EMULATED):
        out = np.empty(out_shape(case), np.uint8)
        conv_i8.conv2d_i8(nhwc(x), zx, packed, bias, out, *geometry(case), mult, 7, 0, 255, tgt.marker())
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0].astype(np.int32),
                                  requantize_float(int8_acc(x, w, zx, bias, case), mult, 7, 0, 255))


def test_quads_packing_layout_and_weight_sums():
    w = np.arange(-60, 60, dtype=np.int8)[: 2 * 5 * 2 * 3].reshape(2, 5, 2, 3)
    p = packing.pack_conv_i8(w, dot="quads")
    # ICg 5 -> 8 per tap, 6 taps: K 48 = 12 groups of 4, plus the sums row
    assert p.kpad == 48 and p.data.dtype == np.int8 and p.data.shape == (1, 1, 13, 16, 4)
    k = (1 * 3 + 2) * 8 + 4  # kh=1, kw=2, ic=4
    assert p.data[0, 0, k // 4, 1, k % 4] == w[1, 4, 1, 2]
    assert not p.data[0, 0, 1, :, 1:].any()  # the pad channels 5..7 of tap 0 (k 5..7: group 1, lanes 1..3)
    sums = p.data[0, 0, 12].copy().view(np.int32).reshape(16)
    np.testing.assert_array_equal(sums[:2], w.reshape(2, -1).astype(np.int32).sum(axis=1))
    assert not sums[2:].any()


@pytest.mark.parametrize("tgt", DW_TARGETS, ids=_ids(DW_TARGETS))
@FEW
@given(case=conv_cases(depthwise_only=True), signed_x=st.booleans(), seed=st.integers(0, 2**31))
def test_depthwise_i8_requant_bit_exact_on_every_target(tgt, case, signed_x, seed):
    def run(x, zx, w, bias, out, mult, zy):
        _, _, sh, sw, pt, pl, dh, dw = geometry(case)
        depthwise.depthwise_i8(x, zx, packing.pack_depthwise_i8(w).data, bias, out, sh, sw, pt, pl, dh, dw, mult,
                               zy, 0, 255, tgt.marker())
    _check_requant(run, case, signed_x, seed, 2e-3)


# -- fp32 --------------------------------------------------------------------------------
@pytest.mark.parametrize("tgt", FP32_TARGETS, ids=_ids(FP32_TARGETS))
@FEW
@given(case=conv_cases(), act=st.sampled_from(["none", "relu6"]), with_res=st.booleans(), seed=st.integers(0, 2**31))
def test_conv_f32_on_every_target(tgt, case, act, with_res, seed):
    check_conv_f32(case, act, with_res, seed, tgt.marker())


@pytest.mark.parametrize("tgt", DW_TARGETS, ids=_ids(DW_TARGETS))
@FEW
@given(case=conv_cases(depthwise_only=True), act=st.sampled_from(["none", "relu6"]), with_res=st.booleans(),
       seed=st.integers(0, 2**31))
def test_depthwise_f32_on_every_target(tgt, case, act, with_res, seed):
    check_depthwise_f32(case, act, with_res, seed, tgt.marker())


# -- instruction selection on named CPUs ---------------------------------------------------
@pytest.mark.parametrize("cpu", ["znver4", "icelake-server", "sapphirerapids"])
def test_vnni_target_selects_vpdpbusd_on_zmm(cpu):
    asm = kernel_assembly(TARGETS["avx512-vnni"], "u8s8", "requant", cpu)
    dots = asm.with_mnemonic("vpdpbusd")
    assert len(dots) >= 12, asm.counts  # at least one per row of the 12-row tile
    assert all("zmm" in ln for ln in dots)
    assert asm.counts["vpmaddubsw"] == 0 and asm.counts["vpmaddwd"] == 0


@pytest.mark.parametrize("cpu", ["znver4", "icelake-server"])
def test_avx512_target_selects_zmm_fma(cpu):
    fmas = kernel_assembly(TARGETS["avx512"], "f32", "f32", cpu).with_mnemonic("vfmadd231ps")
    assert len(fmas) >= 12 and all("zmm" in ln for ln in fmas)


@pytest.mark.parametrize("kind", ["f32", "s16"])
def test_avx2_target_selects_ymm_fma_and_vpmaddwd(kind):
    asm = kernel_assembly(TARGETS["avx2"], kind, "raw", "haswell")
    if kind == "f32":
        assert asm.counts["vfmadd231ps"] >= 12 and not any("zmm" in ln for ln in asm.lines)
    else:
        assert asm.counts["vpmaddwd"] >= 12 and asm.counts["vpmaddubsw"] == 0 and asm.counts["vpmulld"] == 0


def test_emulated_vnni_is_portable_ir():
    """The emulated VNNI kernel calls no x86 intrinsic (it must compile for any CPU), the native one calls
    vpdpbusd; and the emulation never becomes the saturating vpmaddubsw."""
    assert "llvm.x86" not in standalone_ir(AVX512_VNNI_EMULATED, "u8s8", "raw")
    assert "llvm.x86.avx512.vpdpbusd.512" in standalone_ir(TARGETS["avx512-vnni"], "u8s8", "raw")
    assert kernel_assembly(AVX512_VNNI_EMULATED, "u8s8", "raw", "haswell").counts["vpmaddubsw"] == 0


# -- choosing a target --------------------------------------------------------------------------
AVX512 = {f: True for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq")}


def test_best_target_follows_the_features():
    assert target.best_target({**AVX512, "avx512vnni": True}).name == "avx512-vnni"
    assert target.best_target(AVX512).name == "avx512"
    assert target.best_target({"avx2": True, "fma": True}).name == "avx2"
    assert target.best_target({"sse2": True}).name == "generic"


def test_forced_target_runs_emulated_where_the_cpu_lacks_it():
    assert target.runnable("avx512-vnni", {"avx2": True}) is AVX512_VNNI_EMULATED
    assert target.runnable("avx512-vnni", {**AVX512, "avx512vnni": True}) is TARGETS["avx512-vnni"]
    assert target.runnable("avx2", AVX512) is TARGETS["avx2"]
    with pytest.raises(QV2CError, match="QV2C_TARGET='avx9'.*generic, avx2, avx512, avx512-vnni"):
        target.runnable("avx9", AVX512)


def test_qv2c_target_environment_variable(monkeypatch):
    monkeypatch.setenv("QV2C_TARGET", "Generic")
    assert target.selected_target() is TARGETS["generic"]
    monkeypatch.delenv("QV2C_TARGET")
    assert target.selected_target() is target.best_target(HOST)
    monkeypatch.setenv("QV2C_TARGET", "avx9")
    with pytest.raises(QV2CError, match="QV2C_TARGET='avx9' is not a target") as e:
        target.selected_target()
    assert "\n" not in str(e.value)


def test_features_are_those_numba_compiles_for(monkeypatch):
    """With NUMBA_CPU_FEATURES set (a portable cache: NUMBA_CPU_NAME=generic, no features), the target comes
    from those features, not the host's: the native VNNI intrinsic in code compiled without VNNI would
    abort the process inside LLVM."""
    from numba.core import config

    monkeypatch.setattr(config, "CPU_FEATURES", "")
    assert target.host_features() == {}
    assert target.best_target(target.host_features()) is TARGETS["generic"]
    assert target.runnable("avx512-vnni", target.host_features()) is AVX512_VNNI_EMULATED
    monkeypatch.setattr(config, "CPU_FEATURES", "+avx2, +fma,-avx512f,-avx512vnni")
    assert target.host_features() == {"avx2": True, "fma": True, "avx512f": False, "avx512vnni": False}
    assert target.best_target(target.host_features()) is TARGETS["avx2"]
    monkeypatch.setattr(config, "CPU_FEATURES", None)
    assert target.host_features() == HOST


def test_native_vnni_kernel_refused_without_vnni():
    if HAS_VNNI:
        pytest.skip("this CPU has avx512vnni")
    from qv2c.runtime.kernels.microkernel import conv_kernel

    with pytest.raises(TypeError, match="VNNI"):
        conv_kernel(TARGETS["avx512-vnni"], "u8s8", "raw")
