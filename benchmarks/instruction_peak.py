"""The arithmetic peak of one core, measured: the int8 kernels' multiply-add against fp32 FMA.

    python benchmarks/instruction_peak.py

qv2c's exact int8 path on the avx2 target multiplies int16 pairs with `pmaddwd`
(`llvm.x86.avx2.pmadd.wd`, 16 multiply-accumulates per 256-bit instruction, plus a `vpaddd` into
the accumulator); fp32 uses `vfmadd231ps` (8 per instruction).  On the avx512-vnni target int8 is
`vpdpbusd` on zmm (64 u8 x s8 multiply-accumulates, accumulate included) and fp32 a zmm
`vfmadd231ps` (16); those two are measured where the CPU has them.  Which one is faster, and by how much, sets the ceiling
for "int8 faster than fp32" on this CPU, so it is measured rather than taken from a data sheet:
12 independent accumulator chains (enough to hide the latency of either), each step feeding
the accumulator back into the multiply so LLVM cannot hoist it, 20 M iterations, best of 9
alternating rounds.
Each line needs its instructions; a CPU without them gets a 'not measured' line instead.

Results: benchmarks/results/instruction_peak.{md,json}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, cpu_flags, cpu_model  # noqa: E402 (benchmarks/ is a folder of scripts)

CHAINS = 12
ITERATIONS = 20_000_000
_I16, _I32, _F32 = ir.IntType(16), ir.IntType(32), ir.FloatType()
_V16, _V8I = ir.VectorType(_I16, 16), ir.VectorType(_I32, 8)


def _splat(builder, vecty, scalar):
    v = builder.insert_element(ir.Constant(vecty, ir.Undefined), scalar, ir.Constant(_I32, 0))
    mask = ir.Constant(ir.VectorType(_I32, vecty.count), [0] * vecty.count)
    return builder.shuffle_vector(v, ir.Constant(vecty, ir.Undefined), mask)


def _chains_i16(builder, n, seed):
    """acc[i] += pmaddwd(acc[i] as 16 x i16, b): one pmaddwd + one vpaddd per chain and step."""
    b = _splat(builder, _V16, builder.trunc(seed, _I16))
    pmadd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V8I, [_V16, _V16]),
                                           "llvm.x86.avx2.pmadd.wd")
    accs = [cgutils.alloca_once_value(builder, ir.Constant(_V8I, [i] * 8)) for i in range(CHAINS)]
    with cgutils.for_range(builder, n):
        for acc in accs:
            cur = builder.load(acc)
            builder.store(builder.add(cur, builder.call(pmadd, [builder.bitcast(cur, _V16), b])), acc)
    total = builder.load(accs[0])
    for acc in accs[1:]:
        total = builder.add(total, builder.load(acc))
    return builder.sitofp(builder.extract_element(total, ir.Constant(_I32, 0)), ir.DoubleType())


def _chains_f32(builder, n, seed, lanes=8):
    """acc[i] = fma(a, b, acc[i]): one vfmadd231ps (ymm, or zmm with 16 lanes) per chain and step."""
    vf = ir.VectorType(_F32, lanes)
    a = _splat(builder, vf, builder.sitofp(seed, _F32))
    fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vf, [vf] * 3), f"llvm.fma.v{lanes}f32")
    accs = [cgutils.alloca_once_value(builder, ir.Constant(vf, [float(i)] * lanes)) for i in range(CHAINS)]
    with cgutils.for_range(builder, n):
        for acc in accs:
            builder.store(builder.call(fma, [a, a, builder.load(acc)]), acc)
    total = builder.load(accs[0])
    for acc in accs[1:]:
        total = builder.fadd(total, builder.load(acc))
    return builder.fpext(builder.extract_element(total, ir.Constant(_I32, 0)), ir.DoubleType())


def _chains_vnni(builder, n, seed):
    """acc[i] = vpdpbusd(acc[i], acc[i], b) on zmm: 64 u8 x s8 multiply-accumulates per instruction."""
    v16 = ir.VectorType(_I32, 16)
    b = _splat(builder, v16, builder.trunc(seed, _I32))
    dot = cgutils.get_or_insert_function(builder.module, ir.FunctionType(v16, [v16] * 3),
                                         "llvm.x86.avx512.vpdpbusd.512")
    accs = [cgutils.alloca_once_value(builder, ir.Constant(v16, [i] * 16)) for i in range(CHAINS)]
    with cgutils.for_range(builder, n):
        for acc in accs:
            cur = builder.load(acc)
            builder.store(builder.call(dot, [cur, cur, b]), acc)
    total = builder.load(accs[0])
    for acc in accs[1:]:
        total = builder.add(total, builder.load(acc))
    return builder.sitofp(builder.extract_element(total, ir.Constant(_I32, 0)), ir.DoubleType())


def _kernel(body):
    @intrinsic
    def chains(typingctx, n, seed):
        def codegen(context, builder, signature, args):
            return body(builder, *args)
        return types.float64(types.int64, types.int64), codegen

    @njit
    def run(n, seed):
        return chains(n, seed)
    return run


#: name -> (IR body, operations per instruction: 2 per multiply-accumulate, CPU features it needs)
KINDS = {"int16 pmaddwd (qv2c int8, avx2 target)": (_chains_i16, 32, ("avx2",)),
         "fp32 FMA ymm (qv2c fp32, avx2 target)": (_chains_f32, 16, ()),
         "u8 x s8 vpdpbusd zmm (qv2c int8, avx512-vnni target)": (_chains_vnni, 128, ("avx512f", "avx512vnni")),
         "fp32 FMA zmm (qv2c fp32, avx512 targets)": (lambda b, n, s: _chains_f32(b, n, s, 16), 32, ("avx512f",))}


def has_features(names) -> bool:
    import llvmlite.binding as llvm

    features = llvm.get_host_cpu_features()
    return all(features.get(n, False) for n in names)


def has_avx2() -> bool:
    return has_features(("avx2",))


def measure(repeats: int = 9) -> dict:
    """Best time of each kind over `repeats` rounds that alternate the kinds (so a slow spell of the
    shared VM, or a clock change, hits both alike)."""
    runs = {name: (_kernel(body), ops) for name, (body, ops, needs) in KINDS.items() if has_features(needs)}
    for run, _ in runs.values():
        run(1000, 1)
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, (run, _) in runs.items():
            t = time.perf_counter()
            run(ITERATIONS, 1)
            best[name] = min(best[name], time.perf_counter() - t)
    return {name: {"instructions_per_s": ITERATIONS * CHAINS / best[name],
                   "gops": ITERATIONS * CHAINS * ops / best[name] / 1e9} for name, (_, ops) in runs.items()}


def per_core_peaks() -> dict:
    """{"peak_f32_gops_per_core", "peak_i8_gops_per_core"} measured now, for the instructions of the target
    qv2c generates for (`QV2C_TARGET` or the host's best); the int8 figure is None where that target's
    int8 instruction is not measured (no AVX2)."""
    from qv2c.runtime.kernels.target import selected_target

    tgt = selected_target()
    rows = measure()
    f32_key = "fp32 FMA zmm" if tgt.lanes == 16 else "fp32 FMA ymm"
    i8_key = "u8 x s8 vpdpbusd" if tgt.int8_dot == "quads" and tgt.vnni == "native" else "int16 pmaddwd"
    f32 = next(v["gops"] for k, v in rows.items() if k.startswith(f32_key))
    i8 = next((v["gops"] for k, v in rows.items() if k.startswith(i8_key)), None)
    return {"peak_f32_gops_per_core": f32, "peak_i8_gops_per_core": i8, "target": tgt.label}


def main() -> None:
    rows = measure()
    meta = {"cpu": cpu_model(), "cpu_flags": cpu_flags(), "date": time.strftime("%Y-%m-%d"), "chains": CHAINS, "iterations": ITERATIONS}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "instruction_peak.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = ["# Arithmetic peak of one core, measured\n",
             f"CPU: {meta['cpu']} (flags: {meta['cpu_flags']}), {meta['date']}. {CHAINS} independent chains, {ITERATIONS:,} steps, best of 9 "
             "alternating rounds, "
             "one thread. GOP/s counts a multiply-accumulate as 2 operations.\n",
             "| instruction | G instructions/s | GOP/s |", "|---|---|---|"]
    lines += [f"| {k} | {v['instructions_per_s'] / 1e9:.2f} | {v['gops']:.1f} |" for k, v in rows.items()]
    names = list(rows)
    for i8_name, f32_name in ((names[0], names[1]), *(((names[2], names[3]),) if len(names) == 4 else ())):
        i8, f32 = rows[i8_name]["gops"], rows[f32_name]["gops"]
        lines.append(f"\n{i8_name} peak / {f32_name} peak = {i8 / f32:.2f}: the most a compute-bound int8 "
                     "layer can gain over fp32 on this CPU with that target's exact arithmetic.")
    if len(names) < 4:
        lines.append("\nNot measured (this CPU lacks the instructions): "
                     + ", ".join(k for k in KINDS if k not in rows) + ".")
    (RESULTS / "instruction_peak.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
