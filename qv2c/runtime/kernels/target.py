"""Code-generation targets: the instruction-set features a conv/GEMM micro-kernel is generated for.

A target fixes three things of the register-blocked micro-kernels (`microkernel.py`):

- `lanes`: the vector width in 32-bit lanes (4 for 128-bit SSE/NEON, 8 for AVX2's 256-bit
  ymm, 16 for AVX-512's 512-bit zmm).  A 16-channel weight panel is `16 / lanes` vectors.
- `rows`: the pixel rows of the largest register tile.  AVX2 has 16 vector registers
  (6 rows x 2 vectors = 12 accumulators); AVX-512 has 32 (12 rows x 1 zmm).
- `tail_rows`: the height of the blocks that cover what is left after the full tiles (a divisor
  of `rows`; a single left-over row has its own 1-row block, for matrix-vector products).  Every
  block height is inlined code, and that code is what a cold JIT spends its time on, so the
  tails are one small height run in a loop rather than one block per possible remainder.
- `int8_dot`: how u8/i8 x int8 products are summed.
  "pairs": activations widened to int16 (x - zx), weights int16, `mul(sext, sext)` + "even
  + odd lanes", which LLVM selects as `vpmaddwd` (AVX2, AVX-512BW) or `pmaddwd` (SSE2).
  "quads": activations stay u8 (i8 is shifted by 128), weights int8 packed with K in groups
  of 4, one `vpdpbusd` (AVX-512 VNNI) per 4 x `lanes` products into int32.  The zero point
  is taken out afterwards through a per-channel correction, bias - zx * sum_k w[k], as
  onnxruntime and oneDNN do; every step is exact int32 arithmetic (wrapping, never saturating).
  `vnni` says whether "quads" uses the real instruction ("native") or the same data flow in
  portable IR ("emulated": zext/sext, multiply, sum of four lanes), which runs on any host and
  is what the tests use to check the VNNI packing and tiling bit-exact where the CPU lacks VNNI.

Which target runs: `selected_target()` reads `QV2C_TARGET` (generic, avx2, avx512,
avx512-vnni), else picks the best the host has (`llvmlite.binding.get_host_cpu_features`).
A forced target the host cannot execute natively runs where it still can be correct: wider
vectors than the host has are split by LLVM, and "avx512-vnni" on a host without VNNI uses the
emulated dot.  Nothing here runs at import time.

Numba sees a target as the *type* of a small marker argument (`TargetSpec.marker()`), so every
target is its own compiled specialisation, in memory and in Numba's on-disk cache, and a process
can run several side by side (tests, A/B runs).  The marker is a one-element int8 array whose
rank names the target: Numba types an array argument in C on every call, while a named tuple
(the first design) is typed in Python on every kernel call (benchmarks/results/backend_costs.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache

import numpy as np

from qv2c.errors import ConfigError

#: the environment variable that forces a target
TARGET_ENV = "QV2C_TARGET"


@dataclass(frozen=True)
class TargetSpec:
    """What the micro-kernels are generated for (see the module docstring)."""

    name: str
    lanes: int
    rows: int
    tail_rows: int
    int8_dot: str          # "pairs" (vpmaddwd) or "quads" (vpdpbusd)
    vnni: str              # "native", "emulated" or "none"
    marker_rank: int       # the rank of `marker()`, unique per target

    def marker(self) -> np.ndarray:
        """The value passed to the kernels; its Numba type (int8 array of this rank) selects this target."""
        return np.zeros((1,) * self.marker_rank, np.int8)

    @property
    def label(self) -> str:
        return self.name + (" (emulated VNNI)" if self.vnni == "emulated" else "")


TARGETS = {
    "generic": TargetSpec("generic", 4, 4, 2, "pairs", "none", 1),
    "avx2": TargetSpec("avx2", 8, 6, 3, "pairs", "none", 2),
    "avx512": TargetSpec("avx512", 16, 12, 4, "pairs", "none", 3),
    "avx512-vnni": TargetSpec("avx512-vnni", 16, 12, 4, "quads", "native", 4),
}
#: "avx512-vnni" with the VNNI step in portable IR (hosts without VNNI; tests)
AVX512_VNNI_EMULATED = TargetSpec("avx512-vnni", 16, 12, 4, "quads", "emulated", 5)

_BY_RANK = {t.marker_rank: t for t in (*TARGETS.values(), AVX512_VNNI_EMULATED)}


def spec_of_marker_type(ty) -> TargetSpec:
    """The TargetSpec of a marker's Numba type (raises TypeError for anything else)."""
    from numba import types

    if not (isinstance(ty, types.Array) and ty.dtype == types.int8 and ty.ndim in _BY_RANK):
        raise TypeError(f"not a qv2c target marker: {ty}")
    return _BY_RANK[ty.ndim]


def host_features() -> dict[str, bool]:
    """The feature flags of the CPU Numba compiles for, as LLVM names them: the host's, unless Numba is
    given its own (`NUMBA_CPU_FEATURES`, e.g. empty with `NUMBA_CPU_NAME=generic` for a cache that other
    machines can load).  Then only the features listed there ("+avx2,+fma,...") count: code compiled
    without VNNI cannot hold the `vpdpbusd` intrinsic (LLVM aborts the process), so the native VNNI
    target must not be chosen.  (Numba itself takes the host's features unless that variable is set,
    whatever `NUMBA_CPU_NAME` says.)"""
    import llvmlite.binding as llvm
    from numba.core import config

    if config.CPU_FEATURES is None:
        return dict(llvm.get_host_cpu_features())
    flags = (item.strip() for item in config.CPU_FEATURES.split(","))
    return {item[1:]: item[0] == "+" for item in flags if len(item) > 1 and item[0] in "+-"}


def best_target(features: dict[str, bool]) -> TargetSpec:
    """The fastest target a CPU with `features` runs natively."""
    avx512 = all(features.get(f, False) for f in ("avx512f", "avx512bw", "avx512vl", "avx512dq"))
    if avx512 and features.get("avx512vnni", False):
        return TARGETS["avx512-vnni"]
    if avx512:
        return TARGETS["avx512"]
    if features.get("avx2", False) and features.get("fma", False):
        return TARGETS["avx2"]
    return TARGETS["generic"]


def runnable(name: str, features: dict[str, bool], given_as: str = TARGET_ENV) -> TargetSpec:
    """Target `name` as it can run on a CPU with `features`: VNNI emulated where the CPU lacks it.
    `given_as` names where the name came from, for the error message."""
    if name not in TARGETS:
        raise ConfigError(f"{given_as}={name!r} is not a target: choose one of {', '.join(TARGETS)}")
    spec = TARGETS[name]
    if spec.vnni == "native" and not features.get("avx512vnni", False):
        return AVX512_VNNI_EMULATED
    return spec


@cache
def _selected(forced: str | None) -> TargetSpec:
    features = host_features()
    return runnable(forced, features) if forced else best_target(features)


def selected_target() -> TargetSpec:
    """The target this process generates kernels for: `QV2C_TARGET` if set, else the host's best."""
    forced = os.environ.get(TARGET_ENV, "").strip().lower() or None
    return _selected(forced)
