"""Golden and numeric tests of `drop-identity`: every identity form goes, every
look-alike that changes the tensor stays, and output names survive."""

from __future__ import annotations

from pass_golden import check_golden

from qv2c.ir import parse
from qv2c.passes import run_pipeline

IDENTITIES = """\
module @identities {
  input %x : f32[1,2,2,2]
  const %one : f32[1,2,1,1] = [1.0, 1.0]
  const %zero : f32[1] = [0.0]
  const %ones_big : f32[2,2,2,2] = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
  %same_shape = qv.reshape(%x) {shape = [1, 2, 2, 2]} : f32[1,2,2,2]
  %no_perm = qv.transpose(%same_shape) {perm = [0, 1, 2, 3]} : f32[1,2,2,2]
  %no_pad = qv.pad(%no_perm) {mode = "constant", pads = [0, 0, 0, 0, 0, 0, 0, 0], value = 0.0} : f32[1,2,2,2]
  %no_clip = qv.clip(%no_pad) {max = inf, min = -inf} : f32[1,2,2,2]
  %times_one = qv.mul(%one, %no_clip) : f32[1,2,2,2]
  %plus_zero = qv.add(%times_one, %zero) : f32[1,2,2,2]
  %minus_zero = qv.sub(%plus_zero, %zero) : f32[1,2,2,2]
  %over_one = qv.div(%minus_zero, %one) : f32[1,2,2,2]
  %r = qv.relu(%over_one) : f32[1,2,2,2]
  %flat = qv.reshape(%r) {shape = [1, 8]} : f32[1,8]
  %nhwc = qv.transpose(%r) {perm = [0, 2, 3, 1]} : f32[1,2,2,2]
  %broadcast = qv.mul(%r, %ones_big) : f32[2,2,2,2]
  %negated = qv.sub(%zero, %r) : f32[1,2,2,2]
  %relu_clip = qv.clip(%r) {max = inf, min = 0.0} : f32[1,2,2,2]
  %out = qv.reshape(%x) {shape = [1, 2, 2, 2]} : f32[1,2,2,2]
  output %flat, %nhwc, %broadcast, %negated, %relu_clip, %out
}
"""

# Kept: a real reshape, a real transpose (same shape, different layout), a
# broadcasting `* ones` that grows the shape, `0 - x`, a clip with a bound, and the
# identity reshape whose removal would rename module input %x to output %out.
# Constants stay for `dce`.
IDENTITIES_DROPPED = """\
module @identities {
  input %x : f32[1,2,2,2]
  const %one : f32[1,2,1,1] = [1.0, 1.0]
  const %zero : f32[1] = [0.0]
  const %ones_big : f32[2,2,2,2] = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
  %r = qv.relu(%x) : f32[1,2,2,2]
  %flat = qv.reshape(%r) {shape = [1, 8]} : f32[1,8]
  %nhwc = qv.transpose(%r) {perm = [0, 2, 3, 1]} : f32[1,2,2,2]
  %broadcast = qv.mul(%r, %ones_big) : f32[2,2,2,2]
  %negated = qv.sub(%zero, %r) : f32[1,2,2,2]
  %relu_clip = qv.clip(%r) {max = inf, min = 0.0} : f32[1,2,2,2]
  %out = qv.reshape(%x) {shape = [1, 2, 2, 2]} : f32[1,2,2,2]
  output %flat, %nhwc, %broadcast, %negated, %relu_clip, %out
}
"""


def test_identities_are_dropped_and_look_alikes_kept():
    check_golden(IDENTITIES, "drop-identity", IDENTITIES_DROPPED)


OUTPUT_IDENTITY = """\
module @tail {
  input %x : f32[2,3]
  %r = qv.relu(%x) : f32[2,3]
  %logits = qv.reshape(%r) {shape = [2, 3]} : f32[2,3]
  output %logits
}
"""

OUTPUT_IDENTITY_DROPPED = """\
module @tail {
  input %x : f32[2,3]
  %logits = qv.relu(%x) : f32[2,3]
  output %logits
}
"""


def test_identity_at_the_output_hands_its_name_to_its_input():
    check_golden(OUTPUT_IDENTITY, "drop-identity", OUTPUT_IDENTITY_DROPPED)


# 1.0000001 is not 1 in float32 (it rounds to 1 + 2^-23), and a quantized "1"
# means (1 - zp) * scale: neither multiplies by one
NOT_IDENTITIES = """\
module @almost {
  input %x : f32[1,2]
  const %c : f32[2] = [1.0, 1.0000001192092896]
  const %qone : i8[2]{scale = 0.5, zp = 0} = [1, 1]
  %y = qv.mul(%x, %c) : f32[1,2]
  %q = qv.quantize(%x) : i8[1,2]{scale = 0.5, zp = 0}
  %z = qv.mul(%q, %qone) : i8[1,2]{scale = 0.5, zp = 0}
  %d = qv.dequantize(%z) : f32[1,2]
  output %y, %d
}
"""


def test_near_identities_stay():
    m = parse(NOT_IDENTITIES)
    run_pipeline(m, ["drop-identity"])
    assert str(m) == NOT_IDENTITIES
