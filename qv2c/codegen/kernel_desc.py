"""A typed description of the kernel one conv/GEMM group needs, and the entry point that runs it.

Lowering (`lower.py`) decodes a `qv.fused` group (`ir.fused.fused_parts`) into a `KernelDesc`:
the anchor (conv / depthwise / gemm), the accumulation (fp32 or int8), the epilogue as data
(`Epilogue`: the precision boundary, a residual, the clamp, the requantization scale kind) and
the target the micro-kernels are generated for.  `KernelDesc.entry_point` then names the kernel
entry point from a table, not from strings glued together; the description travels with the
`KernelSpec` (`KernelSpec.desc`), so the generated program's comments and a test can read it.

    KernelDesc(anchor="conv", accumulation="int8",
               epilogue=Epilogue(boundary="requantize", residual=True, clamp=(0.0, inf), scale_kind="float"),
               target=TARGETS["avx2"]).entry_point()
    -> EntryPoint("conv_i8:conv2d_i8_requant", as_pixels=False)

`as_pixels`: a gemm runs as the 1x1 conv it is, on [M, 1, 1, K] views (`runtime/kernels/gemm.py`
does the same).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qv2c.runtime.kernels.target import TargetSpec

#: Epilogue.boundary values: what the kernel stores, from what it accumulates
BOUNDARIES = ("none", "quantize", "requantize", "dequantize")


@dataclass(frozen=True)
class Epilogue:
    """What a conv/GEMM kernel applies to its accumulator tile before its single store.

    boundary: "none" (fp32 -> fp32), "quantize" (fp32 -> int8, QuantizeLinear), "requantize"
    (int8 -> int8), "dequantize" (int8 -> fp32).  residual: a tensor of the output's shape added
    before the clamp (fp32 add; for int8, `qv.qadd` after requantizing into the conv's grid).
    clamp: the activation bounds after the residual, in real units.  scale_kind: how int8
    requantizes, "float" (float32 multipliers) or "shift" (power-of-2, integer shifts); "none"
    for fp32 accumulation.
    """

    boundary: str
    residual: bool
    clamp: tuple[float, float] = (-math.inf, math.inf)
    scale_kind: str = "none"

    def __post_init__(self):
        if self.boundary not in BOUNDARIES:
            raise ValueError(f"epilogue boundary must be one of {BOUNDARIES}, got {self.boundary!r}")


@dataclass(frozen=True)
class EntryPoint:
    """A kernel entry point ("module:function" under `qv2c.runtime.kernels`) and how it is called."""

    kernel: str
    as_pixels: bool = False


@dataclass(frozen=True)
class KernelDesc:
    """One fused conv/GEMM group's kernel: anchor, accumulation, epilogue, target."""

    anchor: str          # "conv" | "depthwise" | "gemm"
    accumulation: str    # "f32" | "int8"
    epilogue: Epilogue
    target: TargetSpec

    def summary(self) -> str:
        """One line for the generated program's comments, e.g. "int8 conv; epilogue: requantize (float
        scales) + residual, clamp [0, inf]; target avx2"."""
        e = self.epilogue
        scales = f" ({e.scale_kind} scales)" if e.scale_kind != "none" else ""
        residual = " + residual" if e.residual else ""
        return (f"{self.accumulation} {self.anchor}; epilogue: {e.boundary}{scales}{residual}, "
                f"clamp [{e.clamp[0]:g}, {e.clamp[1]:g}]; target {self.target.label}")

    def entry_point(self) -> EntryPoint:
        key = (self.accumulation, self.anchor, self.epilogue.boundary)
        if key not in _ENTRY_POINTS:
            raise NotImplementedError(f"no kernel entry point for {self}")
        return _ENTRY_POINTS[key]


def _table() -> dict[tuple[str, str, str], EntryPoint]:
    """(accumulation, anchor, boundary) -> entry point.  A residual is an argument of the same entry point
    (`has_res`), and a gemm runs as the 1x1 conv it is: every entry point a model calls is compiled on
    its first run, each with its own full LLVM pass over the conv driver below it, so programs call
    as few as there are drivers (`runtime/kernels/gemm.py` keeps GEMM entry points for direct use)."""
    t = {}
    for anchor, module, conv_fn in (("conv", "conv_f32", "conv2d_f32"), ("depthwise", "depthwise", "depthwise_f32")):
        t["f32", anchor, "none"] = EntryPoint(f"{module}:{conv_fn}")
        t["f32", anchor, "quantize"] = EntryPoint(f"{module}:{conv_fn}_quant")
    t["f32", "gemm", "none"] = EntryPoint("conv_f32:conv2d_f32", as_pixels=True)
    t["f32", "gemm", "quantize"] = EntryPoint("conv_f32:conv2d_f32_quant", as_pixels=True)
    for anchor, module, fn in (("conv", "conv_i8", "conv2d_i8"), ("depthwise", "depthwise", "depthwise_i8")):
        t["int8", anchor, "requantize"] = EntryPoint(f"{module}:{fn}_requant")
        t["int8", anchor, "dequantize"] = EntryPoint(f"{module}:{fn}_dequant")
    t["int8", "gemm", "requantize"] = EntryPoint("conv_i8:conv2d_i8_requant", as_pixels=True)
    t["int8", "gemm", "dequantize"] = EntryPoint("conv_i8:conv2d_i8_dequant", as_pixels=True)
    return t


_ENTRY_POINTS = _table()
