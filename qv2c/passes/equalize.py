"""`equalize`: cross-layer equalization (Nagel et al., "Data-Free Quantization Through Weight
Equalization and Bias Correction", ICCV 2019) of consecutive fp32 convs.

For a conv whose result reaches exactly one next conv, directly or through a ReLU (which commutes
with a positive per-channel scale: relu(x / s) = relu(x) / s), channel i of the first conv's output
can be divided by s_i and the next conv's input channel i multiplied by s_i without changing the
function.  With r1_i = max |W1[i]| (output channel i of the first conv) and r2_i = max |W2[:, i]|
(input channel i of the second), s_i = sqrt(r1_i / r2_i) makes both ranges sqrt(r1_i * r2_i), so a
per-tensor int8 grid (or a power-of-2 one) no longer has to cover one channel whose weights are a
hundred times larger than the rest:

    before:  %a = qv.conv(%x, %w1, %b1) {...}        W1 channel ranges [8.0, 0.01, ...]
             %r = qv.relu(%a)
             %y = qv.conv(%r, %w2, %b2) {...}         W2 input-channel ranges [0.02, 4.0, ...]
    after:   %a = qv.conv(%x, %w1_eq, %b1_eq) {...}   both [0.4, 0.2, ...]
             %r = qv.relu(%a)
             %y = qv.conv(%r, %w2_eq, %b2) {...}

Both convs may be grouped or depthwise (a depthwise second conv scales its own filter i; its output
is unchanged).  A ReLU6 or any other clip does not commute with the scale and ends a pair; so does a
result read twice, a module output, or a non-constant weight.  Pairs are equalized in program order,
and the sweep repeats (a conv is the second of one pair and the first of the next) until no scale
moves by more than 1e-3 or after `_MAX_SWEEPS`.  Scales are computed in float64; each new constant
is rounded to float32 once (names `<weight>_eq`, `<bias>_eq`; the old constants are left for `dce`),
so the fp32 outputs change only by that rounding (tests: within 1e-5 relative).
"""

from __future__ import annotations

import numpy as np

from qv2c.ir.core import Module, Op, Value
from qv2c.passes.registry import register_pass
from qv2c.passes.rewrite import fresh_name

_MAX_SWEEPS = 20
_TOLERANCE = 1e-3


@register_pass("equalize")
def run(module: Module) -> None:
    """Equalize every conv -> [relu] -> conv pair of the top-level graph (see the module docstring)."""
    pairs = [p for p in (_pair(module, op) for op in module.ops if _is_conv(op)) if p is not None]
    # float64 weights and biases of every conv in a pair, rescaled in place, written back once at the end
    params = {id(op): [op.operands[i].data.astype(np.float64) if i < len(op.operands) else None for i in (1, 2)]
              for pair in pairs for op in pair}
    for _ in range(_MAX_SWEEPS):
        moved = max((_equalize(params[id(a)], params[id(b)], b.attrs["group"]) for a, b in pairs), default=0.0)
        if moved < _TOLERANCE:
            break
    for op in {id(op): op for pair in pairs for op in pair}.values():
        for i, data in zip((1, 2), params[id(op)]):
            if data is not None and not np.array_equal(data, op.operands[i].data):
                _set_constant(module, op, i, data)


def _is_conv(op: Op) -> bool:
    return (op.name == "qv.conv" and op.result.type.dtype == "f32"
            and all(v.is_constant for v in op.operands[1:]))


def _only_reader(module: Module, v: Value) -> Op | None:
    users = v.users
    return users[0] if len(users) == 1 and v not in module.outputs and users[0].operands[0] is v else None


def _pair(module: Module, first: Op) -> tuple[Op, Op] | None:
    """(first, second) when `first`'s result reaches only the conv `second`, through at most a ReLU."""
    nxt = _only_reader(module, first.result)
    if nxt is not None and nxt.name == "qv.relu":
        nxt = _only_reader(module, nxt.result)
    if nxt is None or not _is_conv(nxt):
        return None
    return first, nxt


def _input_channel_ranges(w2: np.ndarray, groups: int) -> np.ndarray:
    """max |W2[:, i]| for every input channel i of a conv with `groups` groups ([OC, IC/g, KH, KW])."""
    oc, icg = w2.shape[:2]
    a = np.abs(w2).reshape(groups, oc // groups, icg, -1)
    return a.max(axis=(1, 3)).reshape(groups * icg)


def _equalize(first: list, second: list, g2: int) -> float:
    """Rescale one pair: `first` = [W1, b1 or None], `second` = [W2, b2 or None] (float64, replaced in the
    lists); returns max |log s|, how far it moved."""
    w1, w2 = first[0], second[0]
    r1 = np.abs(w1).reshape(w1.shape[0], -1).max(axis=1)
    r2 = _input_channel_ranges(w2, g2)
    if r1.shape != r2.shape:
        return 0.0
    s = np.ones_like(r1)
    ok = (r1 > 0) & (r2 > 0)
    s[ok] = np.sqrt(r1[ok] / r2[ok])
    oc2, icg2 = w2.shape[:2]
    col = s.reshape(g2, 1, icg2, 1)  # the scale of input channel g * icg2 + j, for every output row of group g
    second[0] = (w2.reshape(g2, oc2 // g2, icg2, -1) * col).reshape(w2.shape)
    first[0] = w1 / s.reshape(-1, *(1,) * (w1.ndim - 1))
    if first[1] is not None:
        first[1] = first[1] / s
    return float(np.abs(np.log(s)).max(initial=0.0))


def _set_constant(module: Module, op: Op, i: int, data: np.ndarray) -> None:
    """Operand `i` of `op` becomes a new float32 constant `<old name>_eq` holding `data`."""
    old = op.operands[i]
    op.set_operand(i, module.add_constant(data.astype(np.float32), fresh_name(module, f"{old.name or 'const'}_eq")))
