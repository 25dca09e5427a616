"""A debugging backend: run one IR op with the NumPy reference interpreter inside a compiled program.

Every op the frontend imports, and every op the passes build from them, has a kernel
(`codegen/standalone.py` lists the few cases left without one, and why), so a compiled
model never calls this.  Lowering an op without a kernel is an error naming the op
(`codegen/lower.py`, `_Lowerer.fallback`), unless the environment variable `ENV` is "1":
then such ops run here, through their reference function, which is a way to run a module
the kernels cannot (a conv whose weight is a run-time tensor) or to bisect a suspected
kernel bug against the definition.  These calls allocate and are slow; the profile shows
them as `run_reference`.

Inside a program every rank-4 activation is NHWC; the reference works on the ONNX
layout (NCHW), so operands are permuted on the way in and the result on the way out.
"""

from __future__ import annotations

import os

import numpy as np

from qv2c.ir.core import Op
from qv2c.ir.reference import REFERENCE, load_all
from qv2c.runtime.program import TO_NCHW, TO_NHWC

#: set to "1" to let lowering send ops without a kernel here instead of failing
ENV = "QV2C_REFERENCE_FALLBACK"


def reference_fallback_enabled() -> bool:
    """Whether the debugging backend is switched on (`ENV` is "1"); read when a module is lowered."""
    return os.environ.get(ENV, "") == "1"


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
