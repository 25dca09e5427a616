"""Golden test of `dce`: dead chains and unused constants go (also inside fused
bodies); outputs, what they read, and module inputs stay."""

from __future__ import annotations

from pass_golden import check_golden

DEAD = """\
module @dead {
  input %x : f32[1,4]
  input %unused : f32[1,4]
  const %w : f32[4] = [1.0, 2.0, 3.0, 4.0]
  const %old : f32[4] = [0.5, 0.5, 0.5, 0.5]
  %a = qv.mul(%x, %w) : f32[1,4]
  %dead1 = qv.relu(%x) : f32[1,4]
  %dead2 = qv.add(%dead1, %old) : f32[1,4]   // reads %dead1: the whole chain is dead
  %f = qv.fused(%a) : f32[1,4] {
    ^(%in : f32[1,4]):
    %r = qv.relu(%in) : f32[1,4]
    %dead_in_body = qv.sigmoid(%in) : f32[1,4]
    yield %r
  }
  output %f, %a
}
"""

DEAD_REMOVED = """\
module @dead {
  input %x : f32[1,4]
  input %unused : f32[1,4]
  const %w : f32[4] = [1.0, 2.0, 3.0, 4.0]
  %a = qv.mul(%x, %w) : f32[1,4]
  %f = qv.fused(%a) : f32[1,4] {
    ^(%in : f32[1,4]):
    %r = qv.relu(%in) : f32[1,4]
    yield %r
  }
  output %f, %a
}
"""


def test_dead_ops_and_constants_are_removed():
    check_golden(DEAD, "dce", DEAD_REMOVED)


def test_live_module_is_unchanged():
    check_golden(DEAD_REMOVED, "dce", DEAD_REMOVED)
