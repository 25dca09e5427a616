"""Golden tests of `fold-constants`: chains fold in one run, results keep their
names (and quantized types), ops reading run-time values stay."""

from __future__ import annotations

import numpy as np
from pass_golden import check_golden

from qv2c.ir import Builder, Module, TensorType, Value
from qv2c.passes import run_pipeline

CHAIN = """\
module @consts {
  input %x : f32[1,3]
  const %w : f32[2,3] = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
  const %two : f32[1] = [2.0]
  %wt = qv.transpose(%w) {perm = [1, 0]} : f32[3,2]
  %0 = qv.mul(%wt, %two) : f32[3,2]
  %y = qv.matmul(%x, %0) : f32[1,2]
  %four = qv.add(%two, %two) : f32[1]
  output %y, %four
}
"""

# %wt folds, which makes the mul foldable in the same run; every new constant takes
# the name of the value it replaces, and %four stays a module output, now a
# constant. The old constants stay for dce.
CHAIN_FOLDED = """\
module @consts {
  input %x : f32[1,3]
  const %w : f32[2,3] = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
  const %two : f32[1] = [2.0]
  const %wt : f32[3,2] = [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
  const %0 : f32[3,2] = [0.0, 6.0, 2.0, 8.0, 4.0, 10.0]
  const %four : f32[1] = [4.0]
  %y = qv.matmul(%x, %0) : f32[1,2]
  output %y, %four
}
"""


def test_constant_chain_folds_in_one_run():
    check_golden(CHAIN, "fold-constants", CHAIN_FOLDED)


QUANTIZED = """\
module @qweight {
  input %x : f32[2]
  const %w : f32[2] = [0.5, -1.0]
  %wq = qv.quantize(%w) : i8[2]{scale = 0.25, zp = 0}
  %wd = qv.dequantize(%wq) : f32[2]
  %y = qv.mul(%x, %wd) : f32[2]
  output %y
}
"""

# %wq becomes an i8 constant of the quantize's result type, scale and zero point
# included; %wd its dequantized f32 copy
QUANTIZED_FOLDED = """\
module @qweight {
  input %x : f32[2]
  const %w : f32[2] = [0.5, -1.0]
  const %wq : i8[2]{scale = 0.25, zp = 0} = [2, -4]
  const %wd : f32[2] = [0.5, -1.0]
  %y = qv.mul(%x, %wd) : f32[2]
  output %y
}
"""


def test_folded_constant_keeps_the_quantized_type():
    check_golden(QUANTIZED, "fold-constants", QUANTIZED_FOLDED)


DYNAMIC = """\
module @dynamic {
  input %x : f32[2,2]
  const %c : f32[2,2] = [1.0, 0.0, 0.0, 1.0]
  %y = qv.add(%x, %c) : f32[2,2]
  %r = qv.relu(%x) : f32[2,2]
  output %y, %r
}
"""


def test_ops_reading_runtime_values_stay():
    check_golden(DYNAMIC, "fold-constants", DYNAMIC)


def test_an_unnamed_result_folds_to_a_constant_named_after_its_op():
    m = Module("unnamed")
    x = m.add_input(Value(TensorType((2,), "f32"), "x"))
    c = m.add_constant(np.array([1.0, -1.0], np.float32), "c")
    b = Builder(m)
    m.outputs = [b.op("qv.add", [x, b.op("qv.relu", [c])], result_names=["y"])]
    run_pipeline(m, ["fold-constants"])
    assert [c.name for c in m.constants] == ["c", "relu_folded"]
    np.testing.assert_array_equal(m.constants[1].data, [1.0, 0.0])
