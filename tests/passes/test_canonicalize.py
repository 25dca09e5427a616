"""The standard clean-up pipeline: a golden test on a small net, and on every
CIFAR-10 zoo model with batch norms (needs QV2C_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pass_golden import assert_close, check_golden, random_inputs

import qv2c
from qv2c.ir import interpret, parse
from qv2c.passes import CANONICALIZE, run_pipeline

NET = """\
module @net {
  input %x : f32[1,2,4,4]
  const %gamma : f32[2] = [1.0, 3.0]
  const %beta : f32[2] = [0.5, -1.0]
  const %mean : f32[2] = [1.0, 2.0]
  const %var : f32[2] = [0.25, 1.0]
  const %w : f32[2,1,1,1] = [1.0, 2.0]
  const %fcw : f32[3,2] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
  const %gamma2 : f32[3] = [1.0, 1.0, 1.0]
  const %beta2 : f32[3] = [0.0, 0.0, 0.0]
  const %mean2 : f32[3] = [0.0, 1.0, 2.0]
  const %var2 : f32[3] = [1.0, 0.25, 4.0]
  %c = qv.conv(%x, %w) {dilations = [1, 1], group = 2, pads = [0, 0, 0, 0], strides = [1, 1]} : f32[1,2,4,4]
  %y = qv.batchnorm(%c, %gamma, %beta, %mean, %var) {epsilon = 0.0} : f32[1,2,4,4]
  %r = qv.relu(%y) : f32[1,2,4,4]
  %p = qv.global_avgpool(%r) : f32[1,2,1,1]
  %f = qv.reshape(%p) {shape = [1, 2]} : f32[1,2]
  %wt = qv.transpose(%fcw) {perm = [1, 0]} : f32[2,3]      // constant: folded first
  %g = qv.gemm(%f, %wt) {alpha = 1.0, beta = 1.0, trans_a = 0, trans_b = 0} : f32[1,3]
  %n = qv.batchnorm(%g, %gamma2, %beta2, %mean2, %var2) {epsilon = 0.0} : f32[1,3]
  %logits = qv.reshape(%n) {shape = [1, 3]} : f32[1,3]     // identity at the output
  output %logits
}
"""

# conv: s = [2, 3], bias -mean * s + beta = [-1.5, -7]
# gemm: %wt = fcw^T = [[1, 3, 5], [2, 4, 6]], s2 = [1, 2, 0.5] scales its columns,
#       bias -mean2 * s2 + beta2 = [0, -2, -1]; the gemm inherits the output name
NET_CANONICAL = """\
module @net {
  input %x : f32[1,2,4,4]
  const %w_bnfolded : f32[2,1,1,1] = [2.0, 6.0]
  const %w_bnfolded_bias : f32[2] = [-1.5, -7.0]
  const %wt_bnfolded : f32[2,3] = [1.0, 6.0, 2.5, 2.0, 8.0, 3.0]
  const %wt_bnfolded_bias : f32[3] = [0.0, -2.0, -1.0]
  %c = qv.conv(%x, %w_bnfolded, %w_bnfolded_bias) {dilations = [1, 1], group = 2, pads = [0, 0, 0, 0], strides = [1, 1]} : f32[1,2,4,4]
  %r = qv.relu(%c) : f32[1,2,4,4]
  %p = qv.global_avgpool(%r) : f32[1,2,1,1]
  %f = qv.reshape(%p) {shape = [1, 2]} : f32[1,2]
  %logits = qv.gemm(%f, %wt_bnfolded, %wt_bnfolded_bias) {alpha = 1.0, beta = 1.0, trans_a = 0, trans_b = 0} : f32[1,3]
  output %logits
}
"""


def test_pipeline_golden():
    check_golden(NET, CANONICALIZE, NET_CANONICAL)


def test_canonicalize_pass_equals_the_pipeline():
    check_golden(NET, "canonicalize", NET_CANONICAL)


def _zoo() -> Path:
    data = os.environ.get("QV2C_DATA")
    if not data:
        pytest.fail("QV2C_DATA is not set: export QV2C_DATA=/path/to/shared/data (the folder holding cifar10_zoo/)")
    return Path(data) / "cifar10_zoo"


ZOO = ["resnet18v1", "resnet50v1", "squeezenet1_1", "vgg16", "mobilenetv2"]


@pytest.mark.parametrize("name", ZOO)
def test_zoo_batchnorms_fold_away(name):
    zoo = _zoo()
    module = qv2c.import_onnx(zoo / f"{name}.onnx", batch_size=2)
    assert any(op.name == "qv.batchnorm" for op in module.ops)
    inputs = random_inputs(module)
    before = interpret(module, inputs)["logits"]
    run_pipeline(module, CANONICALIZE)
    assert not any(op.name == "qv.batchnorm" for op in module.walk())
    assert_close(interpret(module, inputs)["logits"], before, 1e-4)

    # the exporter's own folding and ours give the same program, up to float rounding
    folded = run_pipeline(qv2c.import_onnx(zoo / f"{name}_folded.onnx", batch_size=2), CANONICALIZE)
    assert [(op.name, op.attrs) for op in module.ops] == [(op.name, op.attrs) for op in folded.ops]
    assert_close(interpret(folded, inputs)["logits"], before, 1e-4)
    # and the canonical text is a fixed point of the pipeline
    again = run_pipeline(parse(str(module)), CANONICALIZE)
    assert str(again) == str(module)
