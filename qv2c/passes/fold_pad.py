"""`fold-pad`: fold a constant-zero `qv.pad` into the convs and pools that read it.

TF-style "same" padding is often exported as an explicit `Pad` in front of every
strided and depthwise conv. As its own op the pad is a full copy of the tensor and,
once the model is quantized, a cut in the int8 island; as the conv's own `pads` it
costs nothing, because conv kernels pad on the fly (with the zero point in int8).

    before:  %p = qv.pad(%x) {mode = "constant", pads = [0, 0, 0, 0, 0, 0, 1, 1], value = 0.0} : f32[1,8,17,17]
             %c = qv.conv(%p, %w) {dilations = [1, 1], group = 8, pads = [0, 0, 0, 0], strides = [2, 2]} : f32[1,8,8,8]
    after:   %c = qv.conv(%x, %w) {dilations = [1, 1], group = 8, pads = [0, 0, 1, 1], strides = [2, 2]} : f32[1,8,8,8]

The pad's spatial widths are added to the reader's `pads` ([top, left, bottom, right]),
which is exact for

- `qv.conv`: a conv pads with zeros, so explicit zeros and its own are the same;
- `qv.avgpool` with `count_include_pad = 1`: the padded positions count in the divisor
  either way; with `count_include_pad = 0` only if the pool has no pads of its own
  (the explicit zeros counted as input, so the folded pool gets `count_include_pad = 1`);
- `qv.maxpool` when its input is known to be non-negative (a ReLU, a clip with min >= 0,
  a sigmoid, or data movement and pooling of such values) and every window along
  each axis still holds at least one input element: max-pool's own padding never
  wins (it is the lowest finite value, `qv2c/ir/reference/pooling.py`), the explicit
  zeros only lose to values >= 0, and an all-padding window would give 0 unfolded
  but the lowest value folded.

A fold also needs the reader's result shape to come out the same (with `ceil_mode`, a
last window that started in the explicit end padding is dropped once that padding
belongs to the op), and the pad to be read only as the data operand (operand 0).

A pad stays, and says why here, when folding would change a value:
- mode reflect/edge/wrap: the border repeats input values, not zeros;
- a non-zero constant: convs and pools pad with 0 (or max-pool's lowest);
- padding of the batch or channel axis, or a rank other than 4: conv/pool `pads`
  cover the two spatial axes only;
- a negative pad (a crop): conv/pool `pads` cannot crop;
- a quantized pad (the pass runs before `realize-quant`; a quantized pad already
  runs int8 with the zero point);
- any reader that cannot take it (an add, a max-pool of possibly negative input, an
  avg-pool excluding its own padding from the count, ...), or the pad being a module
  output: the padded tensor must then exist, so folding into the other readers would
  save no copy.
Pads are visited last to first, so a chain pad -> pad -> conv folds entirely. Only the
top-level graph is rewritten: this pass runs before fusion creates bodies.
"""

from __future__ import annotations

from typing import Any

from qv2c.errors import ShapeError
from qv2c.ir.core import Module, Op, Value
from qv2c.ir.ops import result_types, window_output_size
from qv2c.passes.registry import register_pass

#: readers that only ever pass values through or combine them without changing sign
_SIGN_PRESERVING = ("qv.maxpool", "qv.avgpool", "qv.global_avgpool", "qv.reshape", "qv.transpose", "qv.concat")


@register_pass("fold-pad")
def run(module: Module) -> None:
    """Fold every foldable `qv.pad` (see the module docstring) into its readers."""
    for pad in reversed([op for op in module.ops if op.name == "qv.pad"]):
        widths = spatial_zero_pads(pad)
        y = pad.result
        if widths is None or not y.uses or y in module.outputs:
            continue
        folded = [(reader, _folded_attrs(reader, pad.operands[0], widths)) for reader in y.users]
        if any(attrs is None for _, attrs in folded) or any(i != 0 for _, i in y.uses):
            continue
        for reader, attrs in folded:
            reader.attrs.update(attrs)
            reader.set_operand(0, pad.operands[0])
        module.erase(pad)


def spatial_zero_pads(pad: Op) -> tuple[int, int, int, int] | None:
    """[top, left, bottom, right] of a constant-zero, non-negative, spatial-only pad of an
    unquantized rank-4 tensor, or None when the pad is any other kind (which then stays)."""
    a = pad.attrs
    p = a["pads"]
    if pad.operands[0].type.rank != 4 or pad.operands[0].type.quant is not None:
        return None
    if a["mode"] != "constant" or a["value"] != 0.0 or any(p[i] for i in (0, 1, 4, 5)) or min(p) < 0:
        return None
    return p[2], p[3], p[6], p[7]


def _folded_attrs(reader: Op, x: Value, widths: tuple[int, int, int, int]) -> dict[str, Any] | None:
    """The attributes `reader` gets when it reads `x` with `widths` added to its pads, or None
    when that would not compute the same result."""
    if reader.name not in ("qv.conv", "qv.avgpool", "qv.maxpool"):
        return None
    pads = [own + extra for own, extra in zip(reader.attrs["pads"], widths)]
    attrs: dict[str, Any] = {"pads": pads}
    if reader.name == "qv.avgpool" and not reader.attrs["count_include_pad"]:
        if any(reader.attrs["pads"]):
            return None
        attrs["count_include_pad"] = 1
    new_attrs = {**reader.attrs, **attrs}
    try:
        (t,) = result_types(reader.name, [x.type, *(v.type for v in reader.operands[1:])], new_attrs)
    except ShapeError:
        return None
    if t.shape != reader.result.type.shape:
        return None
    if reader.name == "qv.maxpool" and not (non_negative(x) and _windows_touch_input(x, new_attrs)):
        return None
    return attrs


def _windows_touch_input(x: Value, attrs: dict[str, Any]) -> bool:
    """True when, along each spatial axis, every window of the pool holds an input position."""
    (pt, pl, pb, pr), dilations = attrs["pads"], attrs.get("dilations", [1, 1])
    ceil_mode = bool(attrs.get("ceil_mode", 0))
    for size, kernel, stride, dilation, begin, end in zip(x.type.shape[2:], attrs["kernel"], attrs["strides"],
                                                          dilations, (pt, pl), (pb, pr)):
        out = window_output_size(size, kernel, stride, begin, end, dilation, ceil_mode)
        for k in range(out):
            if not any(begin <= k * stride + i * dilation < begin + size for i in range(kernel)):
                return False
    return True


def non_negative(v: Value) -> bool:
    """True when every element of `v` is known to be >= 0 (a conservative, structural test)."""
    if v.is_constant:
        return bool((v.data >= 0).all())
    op = v.owner
    if op is None:
        return False
    if op.name in ("qv.relu", "qv.sigmoid"):
        return True
    if op.name == "qv.clip":
        return op.attrs["min"] >= 0.0
    if op.name == "qv.pad":
        return (op.attrs["mode"] != "constant" or op.attrs["value"] >= 0.0) and non_negative(op.operands[0])
    return op.name in _SIGN_PRESERVING and all(non_negative(u) for u in op.operands)
