"""`fold-channel-permutation`: a channel permutation read by convs and gemms becomes a permutation of
their weights; one that stays is a single `qv.permute_channels`.

ShuffleNet's channel shuffle is exported as Reshape [N,C,H,W] -> [N,g,C/g,H,W], Transpose
[0,2,1,3,4], Reshape back to [N,C,H,W]: three copies of the tensor, and in NHWC (the program
layout) each of them a strided copy through NCHW. The chain only reorders channels:
y[:, c] = x[:, order[c]]. A reader that sums over its input channels with a weight per channel
can take that order into its weights, and then reads x directly:

    before:  %r = qv.reshape(%x) {shape = [1, 2, 2, 4, 4]} : f32[1,2,2,4,4]
             %t = qv.transpose(%r) {perm = [0, 2, 1, 3, 4]} : f32[1,2,2,4,4]
             %y = qv.reshape(%t) {shape = [1, 4, 4, 4]} : f32[1,4,4,4]
             %c = qv.conv(%y, %w) {group = 1, ...} : f32[1,8,4,4]
    after:   %c = qv.conv(%x, %w_permuted) {group = 1, ...} : f32[1,8,4,4]   # w_permuted[:, order] = w

When does a reader take it (x of C channels, `order` the permutation, inverse `inv`)?

- `qv.conv` with constant weights and `group = 1`: conv(x[:, order], w) = conv(x, w') with
  w'[:, order[k]] = w[:, k], for any order. Exact in fp32: every product is the same and the sum
  runs over the same terms (the reference sums in the weight's input-channel order, so the
  order of the terms changes, which stays within rounding of the same sum; the tests hold it
  to 1e-5 relative) and in int8 (integer sums are exact in any order).
- a grouped conv (`group = g`, C/g input channels a group): group j reads input channels
  [j*C/g, (j+1)*C/g). Its weights can take `order` only when `order` maps each of these blocks
  onto itself (order[k] // (C/g) == k // (C/g)); then the permutation within each block goes into
  that group's weight columns. A depthwise conv (C/g = 1) therefore takes only the identity.
  Not folded, and why: if `order` maps blocks onto other blocks as wholes (every permutation does
  for a depthwise conv), the conv's groups could be reordered instead, but then its output
  channels come out permuted the same way: the permutation moves past the conv rather than
  going away, which pays only if a later reader absorbs it. ShuffleNet's shuffle (g groups
  interleaved) mixes every block of the grouped 1x1 conv that reads it after the depthwise one,
  which is the point of the shuffle, so neither side of it can absorb it.
- `qv.gemm` reading the permuted 2-D [N, C] tensor as A (`trans_a = 0`) with a constant B: the
  rows of B (the columns when `trans_b = 1`) move with the channels.

Every reader must take it (and the permuted tensor must not be a module output), or nothing is
folded: the permuted tensor then has to exist anyway, so the chain becomes one
`qv.permute_channels(%x) {order = [...]}` instead, which runs as one parallel gather kernel and,
being data movement, keeps int8 codes and their grid (`realize-quant` passes it through). The
identity order (a chain that changes nothing) is dropped whatever reads it.

A chain is a run of `qv.reshape`, `qv.transpose` and `qv.permute_channels` ops, each
intermediate value read only by the next (and no module output), from x to a value y of x's
shape (rank >= 2); the longest such run from each op that turns out to be a channel permutation
is taken. Whether it is one is decided by running the chain on an index array of x's shape
(skipped above `MAX_ELEMENTS`). A per-channel quantized x (never so before `realize-quant`)
stays: its parameters would have to move too. Weights shared with another op are not changed:
the folded reader gets a new constant `<weight>_permuted` (`dce` removes the old one if unused).
Only the top-level graph is rewritten: this pass runs before fusion creates bodies.
"""

from __future__ import annotations

import numpy as np

from qv2c.ir.builder import Builder
from qv2c.ir.core import Module, Op, Value
from qv2c.passes.registry import register_pass
from qv2c.passes.rewrite import fresh_name, replace_op

#: ops that only move elements, from which a channel permutation can be made
CHAIN_OPS = ("qv.reshape", "qv.transpose", "qv.permute_channels")
#: index arrays larger than this are not built (the chain then stays as it is)
MAX_ELEMENTS = 1 << 25


@register_pass("fold-channel-permutation")
def run(module: Module) -> None:
    """Fold or collapse every channel-permutation chain (see the module docstring)."""
    done: set[int] = set()
    changed = True
    while changed:
        changed = False
        for op in list(module.ops):
            if op.name in CHAIN_OPS and op.parent is module and id(op) not in done:
                done.add(id(op))
                if _rewrite_from(module, op):
                    changed = True
                    break


def _rewrite_from(module: Module, first: Op) -> bool:
    """Rewrite the longest channel-permutation chain starting at `first`; False if there is none
    (or it is already a single `qv.permute_channels` nobody can absorb)."""
    x = first.operands[0]
    for ops in reversed(_candidates(module, first)):
        order = channel_order(x, ops)
        if order is None:
            continue
        y = ops[-1].result
        if _fold_into_readers(module, x, y, order):
            for op in reversed(ops):
                module.erase(op)
            return True
        if _sink_past_depthwise(module, x, y, order):
            for op in reversed(ops):
                module.erase(op)
            return True
        if len(ops) == 1 and ops[0].name == "qv.permute_channels":
            return False
        last = ops[-1]
        new = Builder(module, insert_before=last).op("qv.permute_channels", [x], result_types=[y.type],
                                                      meta=dict(last.meta), result_names=[y.name],
                                                      order=[int(i) for i in order])
        replace_op(module, last, new)
        for op in reversed(ops[:-1]):
            module.erase(op)
        return True
    return False


def _candidates(module: Module, first: Op) -> list[list[Op]]:
    """The chains from `first` whose end has the shape of its start, shortest first."""
    shape = first.operands[0].type.shape
    ops, out = [first], []
    while True:
        v = ops[-1].result
        if v.type.shape == shape:
            out.append(list(ops))
        if len(v.uses) != 1 or v in module.outputs:
            return out
        user, i = v.uses[0]
        if user.name not in CHAIN_OPS or user.parent is not module or i != 0:
            return out
        ops.append(user)


def channel_order(x: Value, ops: list[Op]) -> np.ndarray | None:
    """`order` with chain(x)[:, c] == x[:, order[c]] when the chain `ops` (reshapes, transposes and
    channel permutations, from x to a value of x's shape) only reorders axis 1, else None."""
    shape = x.type.shape
    size = x.type.size
    q = x.type.quant
    if len(shape) < 2 or size == 0 or size > MAX_ELEMENTS or (q is not None and q.per_channel):
        return None
    idx = np.arange(size, dtype=np.int64).reshape(shape)
    a = idx
    for op in ops:
        if op.name == "qv.reshape":
            a = a.reshape(op.attrs["shape"])
        elif op.name == "qv.transpose":
            a = a.transpose(op.attrs["perm"])
        else:
            a = np.take(a, op.attrs["order"], axis=1)
    n, c = shape[0], shape[1]
    inner = size // (n * c)
    a = np.ascontiguousarray(a).reshape(n, c, inner)
    order = a[0, :, 0] // inner % c
    return order if np.array_equal(a, idx.reshape(n, c, inner)[:, order, :]) else None


def _fold_into_readers(module: Module, x: Value, y: Value, order: np.ndarray) -> bool:
    """Make every reader of `y` read `x` with permuted weights; False (nothing changed) unless all can."""
    identity = bool(np.array_equal(order, np.arange(order.size)))
    if y in module.outputs or not y.uses:
        return False
    weights = []
    for reader, i in y.uses:
        w = None if identity else _permuted_weight(reader, i, order)
        if w is None and not identity:
            return False
        weights.append(w)
    for (reader, _), w in zip(list(y.uses), weights):
        if w is not None:
            old = reader.operands[1]
            reader.set_operand(1, module.add_constant(w, fresh_name(module, f"{old.name or 'weight'}_permuted")))
    for reader, i in list(y.uses):
        reader.set_operand(i, x)
    return True


def _permuted_weight(reader: Op, i: int, order: np.ndarray) -> np.ndarray | None:
    """The weight with which `reader` computes the same from x as it did from x[:, order], or None."""
    if i != 0 or len(reader.operands) < 2 or not reader.operands[1].is_constant:
        return None
    w = reader.operands[1].data
    if reader.name == "qv.conv":
        g = reader.attrs["group"]
        cin_g = w.shape[1]
        if not np.array_equal(order // cin_g, np.arange(order.size) // cin_g):
            return None
        local = (order % cin_g).reshape(g, cin_g)
        wg = w.reshape(g, w.shape[0] // g, *w.shape[1:])
        out = np.empty_like(wg)
        for j in range(g):
            out[j][:, local[j]] = wg[j]
        return out.reshape(w.shape)
    if reader.name == "qv.gemm" and reader.operands[0].type.rank == 2 and not reader.attrs["trans_a"]:
        out = np.empty_like(w)
        if reader.attrs["trans_b"]:
            out[:, order] = w
        else:
            out[order] = w
        return out
    return None


def _sink_past_depthwise(module: Module, x: Value, y: Value, order: np.ndarray) -> bool:
    """When `y` is read only by a depthwise conv whose result is smaller than `y` (a strided one), make
    the conv read `x` with its per-channel weights and bias reordered, and permute its result instead
    (after the ReLU/clip/sigmoid that follow it, so the conv keeps its fused activation); False when
    this does not apply (nothing changed)."""
    if len(y.uses) != 1 or y in module.outputs:
        return False
    conv, i = y.uses[0]
    c = order.size
    if conv.name != "qv.conv" or i != 0 or conv.attrs["group"] != c or conv.result.type.size >= y.type.size:
        return False
    if not all(v.is_constant for v in conv.operands[1:]):
        return False
    m = conv.operands[1].type.shape[0] // c
    out_order = (order[:, None] * m + np.arange(m)).reshape(-1)
    tail = conv.result
    while len(tail.uses) == 1 and tail not in module.outputs:
        user, j = tail.uses[0]
        if user.name not in ("qv.relu", "qv.clip", "qv.sigmoid") or j != 0 or user.parent is not module:
            break
        tail = user.result
    if tail in module.outputs or not tail.uses:
        return False
    for k, v in enumerate(conv.operands[1:], start=1):
        moved = np.empty_like(v.data)
        moved[out_order] = v.data
        conv.set_operand(k, module.add_constant(moved, fresh_name(module, f"{v.name or 'weight'}_permuted")))
    conv.set_operand(0, x)
    readers = list(tail.uses)
    first = min((r for r, _ in readers), key=module.ops.index)
    p = Builder(module, insert_before=first).op("qv.permute_channels", [tail], result_types=[tail.type],
                                                 meta=dict(conv.meta),
                                                 result_names=[fresh_name(module, f"{tail.name or 'y'}_permuted")],
                                                 order=[int(k) for k in out_order])
    for r, j in readers:
        r.set_operand(j, p)
    return True
