"""Jit-callable entry points to the conv/GEMM micro-kernels, one per (accumulation, epilogue).

A driver calls e.g. `f32_act(tgt, nrows, a, rowoff, ...)`: `tgt` is a target marker
(`target.TargetSpec.marker()`), and while Numba compiles the call, the overload here asks
`microkernel.conv_kernel` for the intrinsic of that target, accumulation and epilogue (generated
on first use) and inlines it.  For int8 the accumulation follows from the packed weight's dtype:
int16 pairs (`packing.pack_conv_i8(..., dot="pairs")`, `vpmaddwd`) or int8 quads
(`dot="quads"`, `vpdpbusd`).  The remaining arguments are the micro-kernel's own (`_ACC_ARGS` and
the epilogue's `_EPILOGUE_ARGS` in `microkernel.py`).  The overloads are inlined into the caller
(`inline="always"`), so the intrinsic's code sits in the driver's task function as if called directly.
"""

from __future__ import annotations

from numba.extending import overload

from qv2c.runtime.kernels.i8_input import packed_dot
from qv2c.runtime.kernels.microkernel import _ACC_ARGS, _EPILOGUE_ARGS, conv_kernel
from qv2c.runtime.kernels.target import spec_of_marker_type


def _int8_kind(b) -> str:
    """The micro-kernel accumulation of a packed int8 weight: "s16" for pairs, "u8s8" for quads."""
    return {"pairs": "s16", "quads": "u8s8"}[packed_dot(b)]


def _entry(kind: str, epilogue: str):
    """The stub `f(tgt, <kernel args>)` and its overload for accumulation `kind` ("f32" or "int8")."""
    params = ", ".join(n for n, _ in _ACC_ARGS + _EPILOGUE_ARGS[epilogue])
    name = f"{kind}_{epilogue}"
    namespace = {"__name__": __name__, "conv_kernel": conv_kernel, "spec_of_marker_type": spec_of_marker_type,
                 "pick_kind": (lambda b: "f32") if kind == "f32" else _int8_kind}
    exec(f"def {name}(tgt, {params}):\n"
         f"    raise NotImplementedError('compiled by Numba only')\n"
         f"\n"
         f"def typer(tgt, {params}):\n"
         f"    mk = conv_kernel(spec_of_marker_type(tgt), pick_kind(b), {epilogue!r})\n"
         f"    def impl(tgt, {params}):\n"
         f"        mk({params})\n"
         f"    return impl\n", namespace)
    overload(namespace[name], inline="always")(namespace["typer"])
    return namespace[name]


def tile_rows(tgt):
    """The target's micro-kernel tile height (`TargetSpec.rows`), a compile-time constant."""
    raise NotImplementedError("compiled by Numba only")


@overload(tile_rows, inline="always")
def _tile_rows(tgt):
    rows = spec_of_marker_type(tgt).rows
    return lambda tgt: rows


f32_raw = _entry("f32", "raw")
f32_act = _entry("f32", "f32")
f32_quant = _entry("f32", "f32_quant")
int8_raw = _entry("int8", "raw")
int8_requant = _entry("int8", "requant")
int8_requant_add = _entry("int8", "requant_add")
int8_dequant = _entry("int8", "dequant")
