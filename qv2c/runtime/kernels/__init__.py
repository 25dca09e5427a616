"""Compute kernels the Numba backend calls: conv (dense, grouped, 1x1, depthwise) and GEMM, fp32 and int8.

Conventions shared by every kernel (details in each module's docstring):

- Activations are NHWC, C-contiguous (`layout.nchw_to_nhwc` at the model boundary);
  op semantics (attributes, OIHW weights) are ONNX's.  FC inputs are row-major [M, K].
- Weights are packed once, at compile time, by `packing.py` (`pack_conv_f32`,
  `pack_conv_i8`, `pack_depthwise_*`, `pack_gemm_*`); kernels take `packed.data`.
- Every kernel writes its output through a fused epilogue (`epilogue.py`): bias,
  optional residual, activation clamp, and for int8 the requantization (or a
  dequantization to fp32 / quantization from fp32 at precision boundaries).
- Shapes, strides, pads, dilations, zero points and scales are runtime arguments, so
  one compiled specialisation per dtype combination serves every layer.
- The kernels are `@njit(cache=True)`; parallel ones use `prange` over independent
  output tiles (`tiling.py`), small layers run serially.  The conv/GEMM/depthwise cores
  are register-blocked LLVM-IR micro-kernels (`microkernel.py`), generated on first use for
  a *target* (`target.py`: generic, avx2, avx512, avx512-vnni; `QV2C_TARGET` or the host's
  best), which the conv/GEMM entry points receive as their last argument `tgt`: vector
  width, tile height and the int8 dot product (`vpmaddwd` on int16 pairs, or `vpdpbusd` on
  u8 x s8 quads, emulated in portable IR on CPUs without VNNI).

Modules: conv_f32, conv_i8, depthwise, gemm (entry points); packing, layout, i8_input (data
preparation); target, dispatch, microkernel, indirect, epilogue, convplan, tiling (building
blocks); cache_guard (keeps Numba's on-disk cache consistent across these modules).

Before the first kernel runs, `prepare()` (called by `runtime.Executable`; direct callers of
the kernels call it themselves) does two things that importing qv2c never does:

- Cache consistency: `cache_guard.invalidate_stale_caches()` deletes this package's Numba
  cache files if they were built from other sources (see cache_guard.py).
- Threading: it sets GOMP_SPINCOUNT=20000 (GNU OpenMP's idle workers spin about half a
  millisecond before they sleep) unless the environment already sets GOMP_SPINCOUNT or
  OMP_WAIT_POLICY; it only takes effect if no OpenMP parallel region has run yet.

A model is a chain of kernels a few microseconds apart, so with a short spin every parallel
region after the first finds its worker awake, and even 1-2 M operation convs gain from the
second core.  Measured with interleaved A/B runs of whole models (benchmarks/results/
ab_compare.md, 2026-11-27, 2-vCPU Zen 3): against the previous OMP_WAIT_POLICY=PASSIVE
(workers sleep at once, so small convs ran serially), spin + the lower parallel thresholds of
`tiling.py` made ResNet18-CIFAR fp32 0.77x, VGG16-CIFAR fp32 0.81x, ResNet18-CIFAR int8 0.84x
and SqueezeNet fp32 0.90x the time; a spin count of 2000 was 4x slower than 20000 (the
workers fall asleep between kernels), 100000 no faster.  The cost: while another process
keeps one of the two cores busy, a parallel region waits for its worker to be scheduled, and
ResNet18-CIFAR took 4.2x as long as with PASSIVE (which ran its small convs serially).  On a
machine whose cores are busy with other work, run with fewer threads (NUMBA_NUM_THREADS=1) or
set OMP_WAIT_POLICY=PASSIVE.
"""

import os

_PREPARED: list[bool] = []


def prepare() -> None:
    """Make the kernels ready to run in this process (once): stale Numba caches removed, the
    OpenMP spin default applied (see the module docstring)."""
    if _PREPARED:
        return
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", "20000")
    from qv2c.runtime.kernels.cache_guard import invalidate_stale_caches

    invalidate_stale_caches()
    _PREPARED.append(True)
