"""The lowered program, the format between compiler and runtime: frozen `KernelSpec`s over numbered
buffers and constants.

The compiler (`qv2c/codegen/lower.py`) turns a (fused) module into a `Program` and
`codegen/render.py` prints it as Python source; the runtime (`executable.py`) allocates the
buffers and runs that source.  The runtime owns this format and never imports the compiler.
A spec names everything the generated call needs and nothing else:

    KernelSpec(kernel="qv2c.runtime.kernels.conv_i8:conv2d_i8",
               args=(("x", Buf(3)), ("zx", 128), ("w", Const(0)), ("bias", Const(1)), ("out", Buf(4)),
                     ("kh", 3), ..., ("mult", Const(2)), ("zy", 0), ("lo", 0), ("hi", 255)),
               reads=(3,), writes=(4,), label="qv.qconv+qv.qadd (ONNX node 'conv1')")

renders as `conv2d_i8(b[3], 128, c[0], c[1], b[4], 3, ..., c[2], 0, 0, 255)`.  Static
parameters (geometry, zero points, integer or float activation bounds, scales used as
scalars) are literals; arrays (packed weights, bias, per-channel multipliers) are
`Const` references into `Program.consts`; activations are `Buf` references.

Buffers carry their physical layout: every rank-4 activation is NHWC inside the
program ("nhwc"), model inputs and outputs are the ONNX layout ("nchw" / "plain").  A
buffer with a `base` is a view of another buffer's memory (reshape, transpose, slice):
the planner gives it no memory of its own.

`Program.spec_hash` hashes what the rendered source depends on (the kernel list, the
buffers), not the constants' values: two models that differ only in their weights share
one generated file (the code generator adds its own version to the cache key, `render.load`).

The layout convention of programs: every rank-4 activation is NHWC (`TO_NHWC` from the
IR's NCHW), everything else row-major as in the IR (`codegen/layout.py` applies it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: NHWC physical -> NCHW logical, and back (as numpy transposes)
TO_NCHW = (0, 3, 1, 2)
TO_NHWC = (0, 2, 3, 1)
#: package prefixes of kernel entry points (`KernelSpec.kernel` is "<module>:<function>")
KERNELS = "qv2c.runtime.kernels."
RUNTIME = "qv2c.runtime."
#: the "module" of a kernel generated for this program and defined in its own source (`Program.generated`)
GENERATED = "generated"


@dataclass(frozen=True)
class Buf:
    """Reference to buffer `id` of the program."""

    id: int


@dataclass(frozen=True)
class Const:
    """Reference to constant `id` (`Program.consts[id]`)."""

    id: int


#: a kernel argument: a buffer, a constant, or a Python literal (int, float, bool)
Arg = Buf | Const | int | float | bool


@dataclass(frozen=True)
class BufferSpec:
    """One activation buffer: physical shape and dtype, layout, and (for a view) what it views.

    `view` is a tuple of steps applied to the base array, each ("reshape", shape),
    ("transpose", perm) or ("slice", ((start, stop), ...)).
    """

    id: int
    shape: tuple[int, ...]
    dtype: str
    layout: str  # "nhwc" | "nchw" | "plain"
    name: str
    base: int | None = None
    view: tuple[tuple[str, Any], ...] = ()
    #: "temp" (planned by liveness), "input" (the caller's array, bound per run) or "output"
    role: str = "temp"

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(DTYPE_NAMES[self.dtype]).itemsize


DTYPE_NAMES = {"f32": "float32", "u8": "uint8", "i8": "int8", "i16": "int16", "i32": "int32", "i64": "int64",
               "f64": "float64", "bool": "bool"}


@dataclass(frozen=True)
class KernelSpec:
    """One call of a kernel entry point: `kernel` is "module.path:function"; `args` in call order."""

    kernel: str
    args: tuple[tuple[str, Arg], ...]
    reads: tuple[int, ...]
    writes: tuple[int, ...]
    #: the IR op (pattern and ONNX node) this call implements, for comments and profiles
    label: str
    #: for a conv/GEMM group, the compiler's typed description of the kernel (`codegen.kernel_desc.KernelDesc`:
    #: anchor, accumulation, epilogue, target); None for other kernels.  Informational: the call is `args`.
    desc: Any = None

    @property
    def spec_hash(self) -> str:
        return _sha(repr(self))

    @property
    def function(self) -> str:
        return self.kernel.split(":")[1]


@dataclass(frozen=True)
class ConstSpec:
    """A constant array the kernels read (or a fallback callable), with a name for comments."""

    name: str
    data: Any = field(compare=False, repr=False)

    def describe(self) -> str:
        d = self.data
        if isinstance(d, np.ndarray):
            return f"{self.name}: {d.dtype}{list(d.shape)}"
        return f"{self.name}: {type(d).__name__}"


@dataclass(frozen=True)
class Program:
    """A whole lowered module: kernels in execution order, buffers, constants, inputs and outputs."""

    name: str
    kernels: tuple[KernelSpec, ...]
    buffers: tuple[BufferSpec, ...]
    consts: tuple[ConstSpec, ...]
    #: (model input name, buffer id of its caller-provided array, IR dtype, logical shape)
    inputs: tuple[tuple[str, int, str, tuple[int, ...]], ...]
    #: (model output name, buffer id holding it in the model's layout)
    outputs: tuple[tuple[str, int], ...]
    #: (function name, Python source) of the kernels generated for this program (elementwise chains,
    #: `codegen/elementwise.py`), called as "generated:<name>" and defined in the program's own source
    generated: tuple[tuple[str, str], ...] = ()

    @property
    def spec_hash(self) -> str:
        """sha256 of everything the generated source depends on (not the constants' values)."""
        return _sha(repr((self.kernels, self.buffers, self.inputs, self.outputs, [c.name for c in self.consts],
                          self.generated)))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def apply_view(a: np.ndarray, steps) -> np.ndarray:
    """`a` seen through view steps (see `BufferSpec.view`); a reshape that would need a copy raises,
    since a view must share its base's memory."""
    for kind, arg in steps:
        if kind == "reshape":
            a = np.reshape(a, arg, copy=False)
        elif kind == "transpose":
            a = a.transpose(arg)
        else:
            a = a[tuple(slice(s, e) for s, e in arg)]
    return a
