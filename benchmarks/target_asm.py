"""What each target's micro-kernels compile to on named CPUs (any host: llvmlite compiles for them).

    python benchmarks/target_asm.py

For every target of `qv2c/runtime/kernels/target.py` and the CPUs it is meant for, the counts of
the instructions that decide speed in the generated conv/GEMM micro-kernel (one 12- or 6-row tile
plus its tail blocks, requantizing epilogue for int8, fp32 epilogue for fp32): the dot-product
instruction (`vpdpbusd`, `vpmaddwd`/`vpdpwssd`, `vfmadd231ps`), how many instructions touch zmm
registers, and the saturating `vpmaddubsw`, which must never appear.  These are static counts
over the code, not executed counts; `instruction_peak.py` and `latency.py` measure speed.

Results: benchmarks/results/target_asm.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, cpu_flags, cpu_model  # noqa: E402 (benchmarks/ is a folder of scripts)

from qv2c.codegen.target_asm import kernel_assembly  # noqa: E402
from qv2c.runtime.kernels.target import AVX512_VNNI_EMULATED, TARGETS  # noqa: E402

CASES = [  # (target, accumulation, epilogue, CPUs)
    (TARGETS["avx512-vnni"], "u8s8", "requant", ("znver4", "znver5", "icelake-server", "sapphirerapids")),
    (TARGETS["avx512"], "f32", "f32", ("znver4", "icelake-server", "skylake-avx512")),
    (TARGETS["avx512"], "s16", "requant", ("skylake-avx512",)),
    (TARGETS["avx2"], "s16", "requant", ("haswell", "znver3")),
    (TARGETS["avx2"], "f32", "f32", ("haswell", "znver3")),
    (AVX512_VNNI_EMULATED, "u8s8", "requant", ("znver3",)),
    (TARGETS["generic"], "f32", "f32", ("x86-64",)),
]
COUNTED = ("vpdpbusd", "vpdpwssd", "vpmaddwd", "vfmadd231ps", "vpmaddubsw")


def main() -> None:
    lines = ["# Instruction selection of the generated micro-kernels, per target and CPU\n",
             f"Generated on {cpu_model()} ({cpu_flags()}), {time.strftime('%Y-%m-%d')}; compiled by llvmlite for "
             "each named CPU. Static counts over one kernel (main tile + tail blocks).\n",
             "| target | accumulation | epilogue | cpu | " + " | ".join(COUNTED) + " | zmm instructions |",
             "|---" * (5 + len(COUNTED)) + "|"]
    for tgt, kind, epilogue, cpus in CASES:
        for cpu in cpus:
            asm = kernel_assembly(tgt, kind, epilogue, cpu)
            zmm = sum("zmm" in ln for ln in asm.lines)
            lines.append(f"| {tgt.label} | {kind} | {epilogue} | {cpu} | "
                         + " | ".join(str(asm.counts[m]) for m in COUNTED) + f" | {zmm} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "target_asm.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
