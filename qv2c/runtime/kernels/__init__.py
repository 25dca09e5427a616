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
  are register-blocked LLVM-IR micro-kernels (`microkernel.py`) written in
  target-independent IR: LLVM selects FMA / `vpmaddwd` on AVX2 hosts, and the tests also
  pass with SSE2-only code generation (`NUMBA_CPU_NAME=x86-64`).

Modules: conv_f32, conv_i8, depthwise, gemm (entry points); packing, layout (data
preparation); microkernel, indirect, epilogue, convplan, tiling (building blocks);
cache_guard (keeps Numba's on-disk cache consistent across these modules).

Threading: importing this package sets OMP_WAIT_POLICY=PASSIVE unless the environment
already sets it (it only takes effect if no OpenMP parallel region has run yet).  With
GNU OpenMP's default spin-waiting, a parallel region on a machine whose cores are busy
with other processes took 8 ms (two scheduler ticks: the spinning master keeps its core
while the worker waits for one) instead of ~11 us; see benchmarks/results/kernels.md.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from qv2c.runtime.kernels.cache_guard import invalidate_stale_caches  # noqa: E402 (after the env default)

invalidate_stale_caches()
