"""`fold-batchnorm`: fold inference batch norm into the conv/gemm before it.

With s = gamma / sqrt(var + eps) (per output channel), a batch norm after a conv
or gemm with constant weights is the same conv/gemm with new constants

    w' = w * s[:, None, None, None]        (gemm: scaled along the output axis of B)
    b' = (b - mean) * s + beta             (b = 0 when the conv had no bias)

computed in float64 and cast to float32, so folding adds one float32 rounding per
weight and no more. The folded constants are named `<weight>_bnfolded` and
`<bias>_bnfolded` (`<weight>_bnfolded_bias` when there was no bias); the old
constants are left for `dce`.

    before:  %c = qv.conv(%x, %w) {...} : f32[1,8,16,16]
             %y = qv.batchnorm(%c, %gamma, %beta, %mean, %var) {epsilon = 1e-05} : f32[1,8,16,16]
             %r = qv.relu(%y) : f32[1,8,16,16]
    after:   %c = qv.conv(%x, %w_bnfolded, %w_bnfolded_bias) {...} : f32[1,8,16,16]
             %r = qv.relu(%c) : f32[1,8,16,16]

Folding needs the batch norm's input to be the *only* use of the conv/gemm result
(another reader would otherwise see normalised values) and not a module output.
A batch norm that cannot be folded (after a pooling op, an add, a conv whose result
has other readers, ...) becomes an explicit per-channel multiply and add with
constants of shape [1, C, 1, 1] (rank of the input):

    before:  %y = qv.batchnorm(%p, %gamma, %beta, %mean, %var) {epsilon = 1e-05} : f32[1,8,4,4]
    after:   %y_bnscaled = qv.mul(%p, %y_bnscale) : f32[1,8,4,4]
             %y = qv.add(%y_bnscaled, %y_bnshift) : f32[1,8,4,4]

with scale = s and shift = beta - mean * s, so no `qv.batchnorm` survives and later
passes (quantization, fusion) only ever see conv, gemm, mul and add. A batch norm
whose parameters are not constants, or that is not f32, is left alone. Only the
top-level graph is rewritten: this pass runs before fusion creates bodies.
"""

from __future__ import annotations

import numpy as np

from qv2c.ir.builder import Builder
from qv2c.ir.core import Module, Op, Value
from qv2c.passes.registry import register_pass
from qv2c.passes.rewrite import fresh_name, replace_op


@register_pass("fold-batchnorm")
def run(module: Module) -> None:
    """Fold every foldable `qv.batchnorm` into its producer; decompose the rest."""
    for bn in [op for op in module.ops if op.name == "qv.batchnorm"]:
        x, *params = bn.operands
        if not all(p.is_constant and p.type.dtype == "f32" for p in params) or x.type.dtype != "f32":
            continue
        gamma, beta, mean, var = (p.data.astype(np.float64) for p in params)
        scale = gamma / np.sqrt(var + bn.attrs["epsilon"])
        if _foldable(module, x):
            _fold(module, bn, x.owner, scale, beta, mean)
        else:
            _decompose(module, bn, scale, beta - mean * scale)


def _foldable(module: Module, x: Value) -> bool:
    producer = x.owner
    return (
        producer is not None
        and producer.name in ("qv.conv", "qv.gemm")
        and producer.parent is module
        and len(x.uses) == 1
        and x not in module.outputs
        and all(v.is_constant for v in producer.operands[1:])
    )


def _fold(module: Module, bn: Op, producer: Op, s: np.ndarray, beta: np.ndarray, mean: np.ndarray) -> None:
    """Replace `producer` by a copy with scaled weights and shifted bias, and drop `bn`."""
    a, w, *bias = producer.operands
    attrs = dict(producer.attrs)
    if producer.name == "qv.conv":
        new_w = w.data * s[:, None, None, None]
        b = bias[0].data.astype(np.float64) if bias else 0.0
    else:
        # B is [K, N] (or [N, K] when trans_b): scale it along the output axis N
        new_w = w.data * (s[:, None] if attrs["trans_b"] else s[None, :])
        # the gemm's `beta` attribute scales its bias; fold it in and make it 1
        b = attrs["beta"] * bias[0].data.astype(np.float64) if bias else 0.0
        attrs["beta"] = 1.0
    new_b = (b - mean) * s + beta
    wname = w.name or "weight"
    w_const = module.add_constant(new_w.astype(np.float32), fresh_name(module, f"{wname}_bnfolded"))
    bname = f"{bias[0].name}_bnfolded" if bias and bias[0].name else f"{wname}_bnfolded_bias"
    b_const = module.add_constant(new_b.astype(np.float32), fresh_name(module, bname))
    new = Builder(module, insert_before=producer).create(
        producer.name, [a, w_const, b_const], meta=dict(producer.meta), result_names=[producer.result.name], **attrs
    )
    replace_op(module, bn, new.result)
    module.erase(producer)


def _decompose(module: Module, bn: Op, scale: np.ndarray, shift: np.ndarray) -> None:
    """Replace `bn` by `x * scale + shift` with per-channel [1, C, 1, ...] constants."""
    x = bn.operands[0]
    shape = (1, scale.size) + (1,) * (x.type.rank - 2)
    base = bn.result.name or "batchnorm"
    scale_c = module.add_constant(scale.astype(np.float32).reshape(shape), fresh_name(module, f"{base}_bnscale"))
    shift_c = module.add_constant(shift.astype(np.float32).reshape(shape), fresh_name(module, f"{base}_bnshift"))
    b = Builder(module, insert_before=bn)
    scaled = b.op("qv.mul", [x, scale_c], meta=dict(bn.meta), result_names=[fresh_name(module, f"{base}_bnscaled")])
    shifted = b.op("qv.add", [scaled, shift_c], meta=dict(bn.meta), result_names=[bn.result.name])
    replace_op(module, bn, shifted)
