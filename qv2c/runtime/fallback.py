"""Run one IR op with the NumPy reference interpreter inside a compiled program.

The code generator has a kernel for every op the evaluated CNNs use; an op it has no
kernel for (LRN, a batched matmul, a standalone `qv.requantize` with "shift" requantization,
a reflect pad...) still runs, through its reference function, so every module the
interpreter accepts also compiles.  Such ops allocate and are slow; the profile shows
them by name ("reference fallback").

Inside a program every rank-4 activation is NHWC; the reference works on the ONNX
layout (NCHW), so operands are permuted on the way in and the result on the way out.
"""

from __future__ import annotations

import numpy as np

from qv2c.ir.core import Op
from qv2c.ir.reference import REFERENCE, load_all
from qv2c.runtime.program import TO_NCHW, TO_NHWC


def to_logical(a: np.ndarray) -> np.ndarray:
    """The ONNX-layout view of a program buffer (rank-4 buffers are NHWC)."""
    return a.transpose(TO_NCHW) if a.ndim == 4 else a


def to_physical(a: np.ndarray) -> np.ndarray:
    """The program-layout view of an ONNX-layout array."""
    return a.transpose(TO_NHWC) if a.ndim == 4 else a


class ReferenceOp:
    """A callable running `op` (one result) on program buffers.

    `constants` holds, per operand, its data if it is a constant (bound here) or None
    for an activation passed at call time; by default the op's own constant operands
    (an op inside a `qv.fused` body reads constants through body inputs, so the code
    generator passes them explicitly).
    """

    def __init__(self, op: Op, constants: list[np.ndarray | None] | None = None):
        load_all()
        self.op = op
        self.fn = REFERENCE[op.name]
        self.constants = constants if constants is not None else [v.data for v in op.operands]

    def __call__(self, out: np.ndarray, *activations: np.ndarray) -> None:
        given = iter(activations)
        args = [c if c is not None else np.ascontiguousarray(to_logical(next(given))) for c in self.constants]
        result = self.fn(self.op, *args)[0]
        np.copyto(out, to_physical(result), casting="no")


def run_reference(fallback: ReferenceOp, out: np.ndarray, *activations: np.ndarray) -> None:
    """Kernel-style entry point the generated code calls: `fallback(out, *activations)`."""
    fallback(out, *activations)
