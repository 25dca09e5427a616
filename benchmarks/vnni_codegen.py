"""Does LLVM turn a target-independent u8 x s8 dot product into VNNI `vpdpbusd`?

    python benchmarks/vnni_codegen.py        # writes results/vnni_codegen.md

This experiment is why the avx512-vnni target (`qv2c/runtime/kernels/target.py`) calls the x86
intrinsic rather than relying on portable IR: written target-independently, the int8 micro-kernels
would get `vpdpbusd` on a VNNI CPU only if LLVM's instruction selection formed it. This
compiles (never runs) two portable forms of acc[8 x i32] += 32 u8 x s8 products summed in groups
of four for several target CPUs and counts the vector instructions LLVM emits:

- `partial-reduce`: `llvm.vector.partial.reduce.add` of mul(zext u8, sext s8) in i32;
- `shuffle-sum`: the same products, then the four lanes of each group added through shuffles;
- `x86-intrinsic` (the positive control): `llvm.x86.avx512.vpdpbusd.256` itself, which shows the
  count finds `vpdpbusd` where the target has it (targets without VNNI are skipped for it).
"""

from __future__ import annotations

import collections
import time
from pathlib import Path

from llvmlite import binding as ll
from llvmlite import ir

RESULTS = Path(__file__).parent / "results"
CPUS = ("znver3", "znver5", "icelake-server", "alderlake")
_I8, _I32 = ir.IntType(8), ir.IntType(32)


def dot_module(form: str) -> str:
    """IR of `f(acc <8 x i32>, a <32 x u8>, w <32 x s8>) -> <8 x i32>` in the given portable form."""
    module = ir.Module()
    v8, v32, v32x8 = ir.VectorType(_I32, 8), ir.VectorType(_I32, 32), ir.VectorType(_I8, 32)
    fn = ir.Function(module, ir.FunctionType(v8, [v8, v32x8, v32x8]), "dot")
    b = ir.IRBuilder(fn.append_basic_block())
    acc, a, w = fn.args
    if form == "x86-intrinsic":
        dot = ir.Function(module, ir.FunctionType(v8, [v8, v8, v8]), "llvm.x86.avx512.vpdpbusd.256")
        b.ret(b.call(dot, [acc, b.bitcast(a, v8), b.bitcast(w, v8)]))
        return str(module)
    products = b.mul(b.zext(a, v32), b.sext(w, v32))
    if form == "partial-reduce":
        reduce = ir.Function(module, ir.FunctionType(v8, [v8, v32]), "llvm.vector.partial.reduce.add.v8i32.v32i32")
        b.ret(b.call(reduce, [acc, products]))
    else:
        parts = [b.shuffle_vector(products, products, ir.Constant(v8, [4 * i + j for i in range(8)])) for j in range(4)]
        b.ret(b.add(acc, b.add(b.add(parts[0], parts[1]), b.add(parts[2], parts[3]))))
    return str(module)


def vector_instructions(ir_text: str, cpu: str) -> collections.Counter:
    target = ll.Target.from_triple(ll.get_process_triple()).create_target_machine(cpu=cpu, opt=3)
    module = ll.parse_assembly(ir_text)
    module.verify()
    asm = target.emit_assembly(module)
    mnemonics = ([word for word in line.split() if not word.startswith("{")][:1] for line in asm.splitlines()
                 if line.startswith("\t"))  # "{vex} vpdpbusd ...": AVX-VNNI's encoding prefix
    return collections.Counter(m[0] for m in mnemonics if m and m[0].startswith("v"))


def main() -> None:
    ll.initialize_native_target()
    ll.initialize_native_asmprinter()
    lines = [f"# LLVM {'.'.join(map(str, ll.llvm_version_info))}: portable u8 x s8 dot products, instructions "
             f"emitted per target CPU ({time.strftime('%Y-%m-%d')}, benchmarks/vnni_codegen.py)\n",
             "| form | cpu | vpdpbusd | vpmaddwd | vpmaddubsw | all vector instructions |", "|---|---|---|---|---|---|"]
    for form in ("partial-reduce", "shuffle-sum", "x86-intrinsic"):
        for cpu in CPUS if form != "x86-intrinsic" else ("znver5", "icelake-server"):
            counts = vector_instructions(dot_module(form), cpu)
            lines.append(f"| {form} | {cpu} | {counts['vpdpbusd']} | {counts['vpmaddwd']} | {counts['vpmaddubsw']} | "
                         f"{sum(counts.values())} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "vnni_codegen.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
