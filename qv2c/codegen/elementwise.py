"""Generate one kernel for an elementwise `qv.fused` chain: one loop over the tensor, every op of the
chain applied to each element in registers, instead of one kernel (and one buffer) per op.

    %y = qv.fused(%x) {pattern = "qv.dequantize+qv.relu+qv.quantize"} : u8[1,8,8,16]

becomes, in the generated program (`render.py` puts the source above `run`), a kernel named after the
chain's structure (op kinds and dtypes; the scales and bounds are its arguments, so the chains of one
structure in a program share one compiled kernel):

    @njit(cache=_qv2c_cache)
    def _ew_3e0a..._range(x, out, p0, p1, p2, p3, p4, p5, p6, p7, start, stop):
        xs, outs = x[start:stop], out[start:stop]
        for i in range(xs.size):
            v = xs[i]
            v = dequantize_value(v, p0, p1)
            v = min(max(v, p2), p3)
            v = np.uint8(quantize_value(v, p4, p5, p6, p7))
            outs[i] = v

plus an entry point `ew_3e0a...(x, out, s0_scale, s0_zp, s1_lo, s1_hi, s2_scale, ..., parallel)` that
casts the parameters as the op-by-op kernels do (p0 = np.float32(s0_scale), ...) and splits the range
into parallel chunks.  The per-element steps are the op-by-op kernels' own functions
(`runtime/ops_quant.py`: quantize_value, dequantize_value, requantize_value;
`runtime/ops_elementwise.py`: sigmoid_value; clamp as `clamp_flat`), and every integer step's value is
cast to its IR dtype as storing it in a buffer would, so a chain is bit-exact with the ops run one by
one (and with the reference interpreter).

Chains with a per-channel quantize/dequantize or a "shift" requantize are not generated (`chain_of`
returns None) and run op by op.  The kernel is compiled by Numba on its first call and cached with the
program file it is defined in (`_qv2c_cache`, set by `runtime.loader.import_source`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from qv2c.codegen.standalone import clamp_bounds, quant_of
from qv2c.ir.core import Op
from qv2c.ir.quant_math import qrange, requantize_multiplier
from qv2c.runtime.program import DTYPE_NAMES

#: how each step's parameters are prepared in the entry point, from its run-time arguments
_PREPARE = {
    "quantize": ("np.float32({0})", "np.float32({1})", "np.float32({2})", "np.float32({3})"),
    "dequantize": ("np.float32({0})", "np.int32({1})"),
    "requantize": ("np.int32({0})", "np.float32({1})", "np.float32({3} - {2})", "np.float32({4} - {2})",
                   "np.float32({2})"),
    "clamp": ("{t}({0})", "{t}({1})"),
    "sigmoid": (),
}
#: the names of each step's run-time arguments (in the kernel they are `s<step>_<name>`)
_PARAMS = {"quantize": ("scale", "zp", "qlo", "qhi"), "dequantize": ("scale", "zp"),
           "requantize": ("zx", "mult", "zy", "qlo", "qhi"), "clamp": ("lo", "hi"), "sigmoid": ()}
#: the step itself, on `v`, with its prepared parameters p0, p1, ...
_STEP = {
    "quantize": "quantize_value(v, {0}, {1}, {2}, {3})",
    "dequantize": "dequantize_value(v, {0}, {1})",
    "requantize": "requantize_value(v, {0}, {1}, {2}, {3}, {4})",
    "clamp": "min(max(v, {0}), {1})",
    "sigmoid": "sigmoid_value(v)",
}


@dataclass(frozen=True)
class Step:
    """One op of a chain: its kind (a key of `_STEP`), input and output dtypes (IR names), and the
    run-time arguments the entry point prepares (`_PREPARE`)."""

    kind: str
    in_dtype: str
    out_dtype: str
    params: tuple[float | int, ...]


@dataclass(frozen=True)
class ElementwiseChain:
    """A generated elementwise kernel: its steps in order."""

    steps: tuple[Step, ...]

    @property
    def name(self) -> str:
        """The kernel's name: a hash of the structure only (kinds and dtypes), not of the parameters."""
        shape = repr([(s.kind, s.in_dtype, s.out_dtype) for s in self.steps])
        return "ew_" + hashlib.sha256(shape.encode()).hexdigest()[:16]

    @property
    def params(self) -> list[float | int]:
        return [p for s in self.steps for p in s.params]

    @property
    def param_names(self) -> list[str]:
        """The kernel's argument name of each of `params` ("s1_scale": the scale of the second step)."""
        return [f"s{i}_{name}" for i, s in enumerate(self.steps) for name in _PARAMS[s.kind]]

    def source(self) -> str:
        """The kernel's Python source (a range function and the entry point), self-contained."""
        args, prepared, lines = [], [], []
        names_of_all = self.param_names
        for s in self.steps:
            names = names_of_all[len(args):len(args) + len(s.params)]
            args += names
            t = "np." + DTYPE_NAMES[s.in_dtype]
            first = len(prepared)
            prepared += [f.format(*names, t=t) for f in _PREPARE[s.kind]]
            step = _STEP[s.kind].format(*(f"p{first + i}" for i in range(len(_PREPARE[s.kind]))))
            if s.out_dtype != "f32":
                step = f"np.{DTYPE_NAMES[s.out_dtype]}({step})"
            lines.append(f"            v = {step}")
        p = [f"p{i}" for i in range(len(prepared))]
        a_list, p_list = ", ".join(["x", "out", *args]), ", ".join(["x", "out", *p])
        return "\n".join([
            "import numpy as np",
            "from numba import njit, prange",
            "from qv2c.runtime.ops_elementwise import sigmoid_value",
            "from qv2c.runtime.ops_quant import CHUNK, dequantize_value, quantize_value, requantize_value",
            "",
            "",
            "@njit(cache=_qv2c_cache)",
            f"def _{self.name}_range({p_list}, start, stop):",
            "    xs, outs = x[start:stop], out[start:stop]",
            "    for i in range(xs.size):",
            "        v = xs[i]",
            *(ln[4:] for ln in lines),
            "        outs[i] = v",
            "",
            "",
            "@njit(parallel=True, cache=_qv2c_cache)",
            f"def {self.name}({a_list}, parallel):",
            f'    """{" -> ".join(s.kind for s in self.steps)}, one loop (codegen/elementwise.py)."""',
            *(f"    {name} = {expr}" for name, expr in zip(p, prepared)),
            "    n = x.size",
            "    if parallel:",
            "        for t in prange((n + CHUNK - 1) // CHUNK):",
            f"            _{self.name}_range({p_list}, t * CHUNK, min(n, (t + 1) * CHUNK))",
            "    else:",
            f"        _{self.name}_range({p_list}, 0, n)",
            "",
        ])


def chain_of(ops: list[Op]) -> ElementwiseChain | None:
    """The generated kernel of the elementwise chain `ops` (each op reading the previous one's result),
    or None where an op has no per-element step here (it then runs op by op)."""
    steps = []
    for i, op in enumerate(ops):
        if i and op.operands[0] is not ops[i - 1].result:
            return None
        step = _step(op)
        if step is None:
            return None
        steps.append(step)
    return ElementwiseChain(tuple(steps)) if len(steps) >= 2 else None


def _step(op: Op) -> Step | None:
    x, y = op.operands[0].type, op.result.type
    if x.shape != y.shape:
        return None
    if op.name in ("qv.relu", "qv.clip", "qv.qclip"):
        bounds = clamp_bounds(op)
        return Step("clamp", x.dtype, y.dtype, bounds) if bounds is not None and x.dtype == y.dtype else None
    if op.name == "qv.sigmoid":
        return Step("sigmoid", "f32", "f32", ()) if x.quant is None and x.dtype == y.dtype == "f32" else None
    if op.name == "qv.quantize":
        if y.dtype not in ("u8", "i8") or x.dtype != "f32" or y.quant.per_channel:
            return None
        lo, hi = qrange(y.dtype)
        return Step("quantize", "f32", y.dtype, (float(y.quant.scale[0]), int(y.quant.zero_point[0]), int(lo), int(hi)))
    if op.name == "qv.dequantize":
        if x.quant is None or x.quant.per_channel or y.dtype != "f32":
            return None
        return Step("dequantize", x.dtype, "f32", (float(x.quant.scale[0]), int(x.quant.zero_point[0])))
    if op.name == "qv.requantize" and op.attrs.get("requant", "float") == "float":
        (sx, zx), (sy, zy) = quant_of(op.operands[0]), quant_of(op.result)
        lo, hi = qrange(y.dtype)
        return Step("requantize", x.dtype, y.dtype,
                    (int(zx), float(requantize_multiplier(sx, 1.0, sy)), int(zy), int(lo), int(hi)))
    return None
