"""`fuse`: group each anchor op (conv/gemm) with its epilogue into one `qv.fused` op.

The code generator emits one kernel per group, and a test can see what was fused
before any code exists. The groups are exactly what the hand-written kernels in
`qv2c/runtime/kernels/` run in one call with their fused epilogue (`epilogue.py`):

    before:  %c = qv.conv(%x, %w, %b) {...} : f32[1,8,4,4] loc("conv1")
             %s = qv.add(%c, %skip) : f32[1,8,4,4]
             %r = qv.relu(%s) : f32[1,8,4,4]
    after:   %r = qv.fused(%x, %w, %b, %skip) {pattern = "qv.conv+qv.add+qv.relu"} : f32[1,8,4,4] loc("conv1") {
               ^(%x.in : f32[1,8,4,4], %w.in : f32[8,8,3,3], %b.in : f32[8], %skip.in : f32[1,8,4,4]):
               %c = qv.conv(%x.in, %w.in, %b.in) {...} : f32[1,8,4,4] loc("conv1")
               %s = qv.add(%c, %skip.in) : f32[1,8,4,4]
               %r.out = qv.relu(%s) : f32[1,8,4,4]
               yield %r.out
             }

Groups ([...] = optional step; kernel entry points and epilogues in brackets):

    fp32:  qv.conv | qv.gemm  [qv.add]  [qv.relu | qv.clip]  [qv.quantize]
           [conv2d_f32(_quant), depthwise_f32(_quant): store_f32 / store_f32_quant]
    int8:  qv.qconv | qv.qgemm  [qv.qadd]
           [conv2d_i8_requant, depthwise_i8_requant: store_requant / store_requant_add]
    int8:  qv.qconv | qv.qgemm  qv.dequantize  [qv.add]  [qv.relu | qv.clip]
           [conv2d_i8_dequant, depthwise_i8_dequant: store_dequant]
    elementwise chain of >= 2 of qv.relu, qv.clip, qv.sigmoid, qv.quantize, qv.dequantize,
           qv.requantize, qv.qclip on one tensor, not absorbed by an anchor (generated code)

A gemm group runs through the conv entry points on the [M, 1, 1, K] view `gemm.py` itself uses
(`codegen/kernel_desc.py`).

Rules, and the kernel fact behind each:
- Anchors are the ops whose weights the kernels pack at compile time: an fp32 conv or
  gemm that is a quantizable layer (`ir.fused.is_quantizable_layer`: constant weight; a
  gemm without trans_a and with a per-column bias), or a `qv.qconv` / `qv.qgemm` with
  a constant weight (either requantization, "float" or "shift": the kernels take float32
  multipliers or int32 shifts, `runtime/kernels/epilogue_kind.py`). Every anchor is wrapped, even
  alone (pattern "qv.qconv"), so the code generator handles one op kind per kernel.
- An op joins a group only if it is the only reader of the previous op's result and
  that result is not a module output (the group's last result may be one).
- The residual (`qv.add` / `qv.qadd`) must have the anchor result's shape (the kernel
  reads it at the output's index) and comes before the activation: the kernel clamps
  after adding it, as ResNet's relu(conv + shortcut). After a dequantize, it joins
  only if the anchor's own `act` is "none", since the kernel has one clamp, after the
  residual. A `qv.quantize` joins only if per tensor (one scale and zero point).
- A lone elementwise op, pooling, concat, reshape, transpose and pad stay as they are.

The fused op reads every outside value the group reads (first-use order, each once)
and its body has one input per operand (named `<operand>.in`; the printer appends
`_1`, ... when one value feeds several groups), the moved ops, and yields the last
result. The fused op takes the last op's place, result name and readers (module
outputs too), and the first op's ONNX node (the anchor's); the body's last result is
renamed `<name>.out` so the printer keeps the original name for the fused result.
The interpreter runs bodies op by op, so fusing changes no value. (The kernels'
dequantize epilogue computes fp32 straight from the int32 accumulator, without the
int8 rounding of the IR, so those groups match the IR within a tolerance, not bit
for bit.) The IR owns `qv.fused` and its decoding (`qv2c/ir/fused.py`: `fused_parts(op)`, and
which ops are anchors); this pass only builds the groups.
"""

from __future__ import annotations

from collections.abc import Callable

from qv2c.ir.core import Graph, Module, Op, Value
from qv2c.ir.fused import (
    ACTIVATIONS,
    ELEMENTWISE,
    FP32_ANCHORS,
    FUSED,
    is_anchor,
    other_operand,
)
from qv2c.ir.printer import value_names
from qv2c.passes.registry import register_pass

#: a step of a pattern: may `op` follow `prev` (the value it reads) in the group?
Step = Callable[[Op, Value], bool]


@register_pass("fuse")
def run(module: Module) -> None:
    """Wrap every anchor with its epilogue, and every elementwise chain of >= 2 ops, in a `qv.fused`."""
    names = value_names(module)
    for op in list(module.ops):
        if op.parent is not module:  # already moved into a group
            continue
        group = _anchor_group(module, op) if is_anchor(op) else _elementwise_chain(module, op)
        if group:
            _wrap(module, group, names)


# -- matching -------------------------------------------------------------------------
def _anchor_group(module: Module, anchor: Op) -> list[Op]:
    group = [anchor]
    if anchor.name in FP32_ANCHORS:
        _extend(module, group, [_residual_add, _activation, _quantize])
    elif not _extend(module, group, [_qadd]) and _extend(module, group, [_dequantize]):
        # the kernel clamps once, after the residual: an anchor act before it cannot be kept
        after = [_activation] if anchor.attrs.get("act", "none") != "none" else [_residual_add, _activation]
        _extend(module, group, after)
    return group


def _elementwise_chain(module: Module, first: Op) -> list[Op]:
    if first.name not in ELEMENTWISE:
        return []
    chain = [first]
    while _extend(module, chain, [lambda op, prev: op.name in ELEMENTWISE]):
        pass
    return chain if len(chain) >= 2 else []


def _extend(module: Module, group: list[Op], steps: list[Step]) -> bool:
    """Append to `group` the next op of each optional step that matches, in order; True if any did."""
    grew = False
    for step in steps:
        nxt = _sole_reader(module, group[-1].result)
        if nxt is not None and step(nxt, group[-1].result):
            group.append(nxt)
            grew = True
    return grew


def _sole_reader(module: Module, v: Value) -> Op | None:
    """The op reading `v`, if it is the only read and `v` is not a module output."""
    if len(v.uses) != 1 or v in module.outputs:
        return None
    op = v.uses[0][0]
    return op if op.parent is module and len(op.results) == 1 else None


def _residual_add(op: Op, prev: Value) -> bool:
    return (op.name == "qv.add" and prev.type.dtype == "f32"
            and other_operand(op, prev).type.shape == prev.type.shape == op.result.type.shape)


def _activation(op: Op, prev: Value) -> bool:
    return op.name in ACTIVATIONS and prev.type.dtype == "f32"


def _quantize(op: Op, prev: Value) -> bool:
    q = op.result.type
    return op.name == "qv.quantize" and q.dtype in ("u8", "i8") and q.quant is not None and not q.quant.per_channel


def _qadd(op: Op, prev: Value) -> bool:
    return op.name == "qv.qadd" and other_operand(op, prev).type.shape == prev.type.shape == op.result.type.shape


def _dequantize(op: Op, prev: Value) -> bool:
    return op.name == "qv.dequantize"


# -- rewriting --------------------------------------------------------------------------
def _wrap(module: Module, group: list[Op], names: dict[int, str]) -> Op:
    """Replace the ops of `group` (a chain in program order) by one `qv.fused` op holding them."""
    inside = {id(r) for op in group for r in op.results}
    outside: dict[int, Value] = {}
    for op in group:
        for v in op.operands:
            if id(v) not in inside:
                outside.setdefault(id(v), v)
    operands = list(outside.values())
    inputs = {id(v): Value(v.type, f"{names[id(v)]}.in") for v in operands}
    last = group[-1].result
    node = group[0].meta.get("onnx_node")
    fused = Op(FUSED, operands, [last.type], {"pattern": "+".join(op.name for op in group)},
               {"onnx_node": node} if node else None, result_names=[last.name])
    module.insert_before(group[-1], fused)
    last.replace_all_uses_with(fused.result)
    module.outputs = [fused.result if v is last else v for v in module.outputs]
    names[id(fused.result)] = names[id(last)]
    last.name = f"{names[id(last)]}.out"
    for op in group:
        module.ops.remove(op)
        for i, v in enumerate(op.operands):
            if id(v) in inputs:
                op.set_operand(i, inputs[id(v)])
    fused.body = Graph(inputs.values(), group, [last])
    return fused
