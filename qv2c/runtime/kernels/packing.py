"""Weight packing, done once at compile time, into the layouts the kernels stream.

ONNX weights arrive as OIHW (`[OC, IC/groups, KH, KW]`) or `[N, K]` for Gemm.  The
kernels read them in a different order, chosen so that the innermost loop of every
kernel touches consecutive memory:

- Dense / grouped conv and GEMM (`pack_conv_f32`, `pack_conv_i8`, `pack_gemm_*`): the
  reduction index is k = (kh * KW + kw) * ICg + ic, the order of an NHWC im2col row
  (input channels innermost), and output channels are cut into panels of 16
  (`microkernel.PANEL`, two 8-lane vectors), zero padded at the end:

      fp32: data[g, panel, k, j]             = w[g*OCg + panel*16 + j, ic, kh, kw]     (float32)
      int8 "pairs" (vpmaddwd): data[g, panel, k // 2, j, k % 2] = same, widened to int16, with
            k = (kh*KW + kw)*ICgp + ic where ICgp = ICg rounded up to even (zero weights in the pad channel)
      int8 "quads" (vpdpbusd): data[g, panel, k // 4, j, k % 4] = same, int8, ICgp rounded up to a
            multiple of 4, plus one trailing group per panel holding its 16 int32 weight sums

  A micro-kernel step at reduction index k (or pair k//2) then loads the 16 weights of
  its panel with one or two 32-byte loads.  The int8 pairs interleave two consecutive
  k for the same output channel, which is the operand order of `vpmaddwd`; each tap's
  channels are padded to an even count so a pair never straddles two taps (the widened
  input `indirect.pad_widen_s16` has the same zero pad channel).
- Depthwise conv (`pack_depthwise_*`): data[kh, kw, c], channels innermost, because the
  depthwise kernels vectorise over the channels of an NHWC pixel; int8 weights are widened
  to int16, the operand width of the int8 depthwise kernel's multiplies.

A GEMM weight [N, K] is a 1x1 convolution weight [N, K, 1, 1]; `gemm.py` runs FC layers
through the same kernels.  Packing never changes values: int8 weights stay in
[-128, 127] (the numerics contract keeps them in [-127, 127]), and the zero point of
the activations is subtracted by the kernels when they widen activations to int16, so
no weight-sum correction term is needed (padding taps then contribute exactly 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qv2c.runtime.kernels.microkernel import PANEL


@dataclass(frozen=True)
class PackedConv:
    """Packed weights of a dense/grouped convolution (or GEMM) plus the geometry the kernel needs.

    `data` is float32 [G, panels, K, 16] (`dtype == "f32"`), or for `dtype == "i8"` int16
    [G, panels, Kp/2, 16, 2] ("pairs") or int8 [G, panels, Kp/4 + 1, 16, 4] ("quads", see
    `pack_conv_i8`).  `k` is the true reduction length KH*KW*ICg; `kpad` the packed one (equal for
    fp32; KH*KW*ICgp with ICg padded to even, or to a multiple of 4, for int8).
    """

    data: np.ndarray
    dtype: str
    out_channels: int
    in_channels: int
    groups: int
    kernel: tuple[int, int]
    k: int
    kpad: int

    @property
    def panels(self) -> int:
        return self.data.shape[1]


@dataclass(frozen=True)
class PackedDepthwise:
    """Packed depthwise weights: `data[kh, kw, c]` float32 or int16 (from int8)."""

    data: np.ndarray
    dtype: str
    channels: int
    kernel: tuple[int, int]


def _check_conv_weight(w: np.ndarray, groups: int) -> tuple[int, int, int, int]:
    if w.ndim != 4:
        raise ValueError(f"conv weight must be 4-D [OC, IC/groups, KH, KW], got shape {w.shape}")
    oc, icg, kh, kw = w.shape
    if groups < 1 or oc % groups:
        raise ValueError(f"{oc} output channels are not divisible by groups={groups}")
    return oc, icg, kh, kw


def _panels_kmajor(w: np.ndarray, groups: int) -> tuple[np.ndarray, int]:
    """[G, panels, K, 16] with k = (kh, kw, ic) and zero-padded output channels, in w's dtype."""
    oc, icg, kh, kw = _check_conv_weight(w, groups)
    ocg = oc // groups
    k = kh * kw * icg
    npan = -(-ocg // PANEL)
    # [G, OCg, ICg, KH, KW] -> [G, OCg, KH, KW, ICg] -> [G, OCg, K]
    wk = w.reshape(groups, ocg, icg, kh, kw).transpose(0, 1, 3, 4, 2).reshape(groups, ocg, k)
    padded = np.zeros((groups, npan * PANEL, k), dtype=w.dtype)
    padded[:, :ocg] = wk
    return np.ascontiguousarray(padded.reshape(groups, npan, PANEL, k).transpose(0, 1, 3, 2)), k


def pack_conv_f32(w: np.ndarray, groups: int = 1) -> PackedConv:
    """Pack an fp32 OIHW conv weight into k-major panels of 16 output channels."""
    w = np.asarray(w, dtype=np.float32)
    data, k = _panels_kmajor(w, groups)
    oc, icg, kh, kw = w.shape
    return PackedConv(data, "f32", oc, icg * groups, groups, (kh, kw), k, k)


def pack_conv_i8(w: np.ndarray, groups: int = 1, dot: str = "pairs") -> PackedConv:
    """Pack an int8 OIHW conv weight for the int8 kernels' dot product `dot`:

    "pairs" (`vpmaddwd`): int16 [G, P, Kp/2, 16, 2], consecutive k interleaved in pairs, each tap's
    channels padded to an even count.
    "quads" (`vpdpbusd`): int8 [G, P, Kq/4 + 1, 16, 4], consecutive k in groups of 4, each tap's
    channels padded to a multiple of 4; the last group of each panel holds the panel's 16 int32
    weight sums sum_k w[oc, k] (as 64 bytes), from which the kernel forms the zero-point
    correction bias - zx * sum_k w.
    """
    w = np.asarray(w)
    if w.dtype != np.int8:
        raise ValueError(f"int8 conv weight must have dtype int8, got {w.dtype}")
    if dot not in ("pairs", "quads"):
        raise ValueError(f"int8 dot product must be 'pairs' or 'quads', got {dot!r}")
    oc, icg, kh, kw = _check_conv_weight(w, groups)
    width = 2 if dot == "pairs" else 4
    icp = -(-icg // width) * width
    wide = np.zeros((oc, icp, kh, kw), dtype=np.int16 if dot == "pairs" else np.int8)
    wide[:, :icg] = w
    panels, kpad = _panels_kmajor(wide, groups)
    g, npan = panels.shape[:2]
    # [G, P, Kp, 16] -> [G, P, Kp/w, w, 16] -> [G, P, Kp/w, 16, w]
    data = np.ascontiguousarray(panels.reshape(g, npan, kpad // width, width, PANEL).transpose(0, 1, 2, 4, 3))
    if dot == "quads":
        sums = panels.sum(axis=2, dtype=np.int32)  # [G, P, 16]
        data = np.concatenate([data, sums.view(np.int8).reshape(g, npan, 1, PANEL, 4)], axis=2)
    return PackedConv(data, "i8", oc, icg * groups, groups, (kh, kw), kh * kw * icg, kpad)


def _gemm_as_conv(w: np.ndarray, trans_b: bool) -> np.ndarray:
    if w.ndim != 2:
        raise ValueError(f"gemm weight must be 2-D, got shape {w.shape}")
    wn = w if trans_b else w.T  # -> [N, K]
    return wn.reshape(wn.shape[0], wn.shape[1], 1, 1)


def pack_gemm_f32(w: np.ndarray, trans_b: bool = True) -> PackedConv:
    """Pack an fp32 GEMM weight: [N, K] when `trans_b` (ONNX Gemm transB=1, the FC layout), else [K, N]."""
    return pack_conv_f32(_gemm_as_conv(np.asarray(w, dtype=np.float32), trans_b))


def pack_gemm_i8(w: np.ndarray, trans_b: bool = True, dot: str = "pairs") -> PackedConv:
    """Pack an int8 GEMM weight ([N, K] when `trans_b`, else [K, N]) for `gemm.gemm_i8` (`dot` as for convs)."""
    return pack_conv_i8(_gemm_as_conv(np.asarray(w), trans_b), dot=dot)


def _depthwise_khwc(w: np.ndarray) -> np.ndarray:
    if w.ndim != 4 or w.shape[1] != 1:
        raise ValueError(f"depthwise weight must be [C, 1, KH, KW], got shape {w.shape}")
    return w[:, 0].transpose(1, 2, 0)


def pack_depthwise_f32(w: np.ndarray) -> PackedDepthwise:
    """Pack an fp32 depthwise weight [C, 1, KH, KW] (groups == C) as [KH, KW, C]."""
    w = np.asarray(w, dtype=np.float32)
    data = np.ascontiguousarray(_depthwise_khwc(w))
    return PackedDepthwise(data, "f32", w.shape[0], (w.shape[2], w.shape[3]))


def pack_depthwise_i8(w: np.ndarray) -> PackedDepthwise:
    """Pack an int8 depthwise weight [C, 1, KH, KW] as int16 [KH, KW, C]."""
    w = np.asarray(w)
    if w.dtype != np.int8:
        raise ValueError(f"int8 depthwise weight must have dtype int8, got {w.dtype}")
    data = np.ascontiguousarray(_depthwise_khwc(w).astype(np.int16))
    return PackedDepthwise(data, "i8", w.shape[0], (w.shape[2], w.shape[3]))
