"""Helpers for frontend tests: small ONNX models written inline in `onnx.parser` text,
and a differential check of an imported module against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
from onnx import numpy_helper

import qv2c
from qv2c.ir import interpret


def model(text: str, opset: int = 13, ir_version: int = 8, **initializers: np.ndarray) -> onnx.ModelProto:
    """Parse a graph written in ONNX text (without the `<...>` header) and add `initializers`."""
    header = f'<ir_version: {ir_version}, opset_import: ["" : {opset}]>\n'
    m = onnx.parser.parse_model(header + text)
    for name, arr in initializers.items():
        m.graph.initializer.append(numpy_helper.from_array(np.asarray(arr), name))
    for out in m.graph.output:
        # the parser writes `float y` as a rank-0 shape; make it "unknown shape" as intended
        if not out.type.tensor_type.shape.dim:
            out.type.tensor_type.ClearField("shape")
    return m


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def ops(module) -> list[str]:
    """Op names of `module`, in program order."""
    return [op.name for op in module.ops]


def the_op(module, name: str):
    """The single op called `name` in `module`."""
    found = [op for op in module.ops if op.name == name]
    assert len(found) == 1, f"expected one {name}, got {ops(module)}"
    return found[0]


def run_onnxruntime(m: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def run_onnx_reference(m: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """onnx's own evaluator: the oracle where onnxruntime lacks a feature (dilated SAME padding)."""
    from onnx.reference import ReferenceEvaluator

    names = [o.name for o in m.graph.output]
    return dict(zip(names, ReferenceEvaluator(m).run(None, feeds)))


def assert_matches_onnxruntime(m: onnx.ModelProto, module=None, batch_size=None, atol=1e-5, seed=0,
                               oracle=run_onnxruntime):
    """Run `m` with onnxruntime (or another `oracle`) and the imported module with the reference
    interpreter on the same random inputs; every output must agree within `atol` (relative to
    the output's scale)."""
    module = module if module is not None else qv2c.import_onnx(m, batch_size=batch_size)
    rng = np.random.default_rng(seed)
    feeds = {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in module.inputs}
    expected = oracle(m, feeds)
    got = interpret(module, feeds)
    assert sorted(got) == sorted(expected)
    for name, want in expected.items():
        assert got[name].shape == want.shape, f"{name}: {got[name].shape} != {want.shape}"
        scale = max(1.0, float(np.abs(want).max(initial=0.0)))
        np.testing.assert_allclose(got[name], want, rtol=0, atol=atol * scale, err_msg=name)
    return module
