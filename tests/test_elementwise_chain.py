"""Elementwise `qv.fused` chains run as one generated kernel (`codegen/elementwise.py`): Hypothesis
builds random chains of quantize / dequantize / requantize / relu / clip / qclip / sigmoid, the `fuse`
pass groups them, and the program must make one generated call for the chain, with integer outputs
equal to the reference interpreter's bit for bit and fp32 outputs within 1e-4."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_runtime import _private_cache, assert_close, assert_exact, qtype, run_both  # noqa: F401 (_private_cache: autouse)

from qv2c.backend import build_executable
from qv2c.codegen.elementwise import chain_of
from qv2c.ir import Builder, Module, QuantParams, TensorType, Value
from qv2c.runtime.program import GENERATED

CHAINS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _grid(rng, dtype: str) -> tuple[float, int]:
    return float(rng.uniform(0.01, 0.3)), (int(rng.integers(0, 256)) if dtype == "u8" else int(rng.integers(-20, 20)))


@st.composite
def chains(draw):
    """(module, number of ops): a random valid chain of 2-4 elementwise ops on one tensor."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=1, max_size=4)))
    t = TensorType(shape, "f32") if draw(st.booleans()) else qtype(shape, draw(st.sampled_from(["u8", "i8"])),
                                                                    *_grid(rng, "u8"))
    if t.dtype == "i8":
        t = qtype(shape, "i8", t.quant.scale[0], 0)
    m = Module("chain")
    v = m.add_input(Value(t, "x"))
    b = Builder(m)
    n = draw(st.integers(2, 4))
    for _ in range(n):
        t = v.type
        if t.dtype == "f32":
            kind = draw(st.sampled_from(["relu", "clip", "sigmoid", "quantize"]))
            if kind == "quantize":
                dtype = draw(st.sampled_from(["u8", "i8"]))
                scale, zp = _grid(rng, dtype)
                v = b.op("qv.quantize", [v], result_types=[qtype(shape, dtype, scale, zp if dtype == "u8" else 0)])
            elif kind == "clip":
                lo = float(np.float32(rng.uniform(-2, 0)))
                v = b.op("qv.clip", [v], min=lo, max=float(np.float32(lo + rng.uniform(0.1, 3))))
            else:
                v = b.op(f"qv.{kind}", [v])
        else:
            kind = draw(st.sampled_from(["dequantize", "requantize", "relu", "qclip"]))
            if kind == "dequantize":
                v = b.op("qv.dequantize", [v])
            elif kind == "requantize":
                dtype = draw(st.sampled_from(["u8", "i8"]))
                scale, zp = _grid(rng, dtype)
                v = b.op("qv.requantize", [v], result_types=[qtype(shape, dtype, scale, zp if dtype == "u8" else 0)])
            elif kind == "relu":
                v = b.op("qv.relu", [v], result_types=[t])
            else:
                lo = float(np.float32(rng.uniform(-1, 0)))
                v = b.op("qv.qclip", [v], result_types=[t], min=lo, max=float(np.float32(lo + rng.uniform(0.2, 3))))
    m.outputs = [v]
    return m, n


@CHAINS
@given(case=chains(), seed=st.integers(0, 2**31))
def test_chain_runs_as_one_generated_kernel(case, seed):
    m, n = case
    got, want, _ = run_both(m, np.random.default_rng(seed), fuse=True)
    (fused,) = m.ops
    assert fused.name == "qv.fused" and len(fused.body.ops) == n
    (key,) = want
    (assert_close if want[key].dtype == np.float32 else assert_exact)(got, want)
    calls = [k.kernel for k in build_executable(m).program.kernels]
    assert [c for c in calls if c.startswith(GENERATED + ":")] == [f"{GENERATED}:{chain_of(fused.body.ops).name}"]
    assert len(calls) <= 3  # the chain, and the layout copies into and out of the program's NHWC buffers


def test_chains_of_one_structure_share_a_kernel_and_per_channel_steps_are_not_generated():
    shape = (2, 3, 4, 5)
    progs = []
    for scale in (0.1, 0.2):
        m = Module("chain")
        x = m.add_input(Value(TensorType(shape, "f32"), "x"))
        b = Builder(m)
        q = b.op("qv.quantize", [x], result_types=[qtype(shape, "u8", scale, 7)])
        m.outputs = [b.op("qv.dequantize", [b.op("qv.relu", [q], result_types=[q.type])])]
        progs.append(chain_of([op for op in m.ops]))
    assert progs[0].name == progs[1].name and progs[0].params != progs[1].params
    per_channel = Module("pc")
    x = per_channel.add_input(Value(TensorType(shape, "f32"), "x"))
    t = TensorType(shape, "u8", QuantParams((0.1, 0.2, 0.3), (1, 2, 3), 1))
    b = Builder(per_channel)
    per_channel.outputs = [b.op("qv.dequantize", [b.op("qv.quantize", [x], result_types=[t])])]
    assert chain_of(list(per_channel.ops)) is None
