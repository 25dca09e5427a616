"""The machine code a micro-kernel becomes on a named CPU, whatever CPU this is.

`microkernel.standalone_ir` gives the LLVM IR of one conv/GEMM micro-kernel as qv2c generates
it for a target; `assemble` optimises it (LLVM's O3 pipeline) and compiles it with llvmlite for
any x86 CPU LLVM knows (`znver4`, `icelake-server`, `haswell`, ...).  So a developer on an AVX2
machine can see that the avx512-vnni target's inner loop is `vpdpbusd` on zmm registers, and
the tests (`tests/test_targets.py`) and `benchmarks/target_asm.py` check it on every host.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from qv2c.runtime.kernels.microkernel import standalone_ir
from qv2c.runtime.kernels.target import TargetSpec


@dataclass(frozen=True)
class Assembly:
    """Instructions (one per line, no directives) and their mnemonic counts."""

    lines: tuple[str, ...]
    counts: collections.Counter

    def with_mnemonic(self, mnemonic: str) -> list[str]:
        return [ln for ln in self.lines if ln.split()[0] == mnemonic]


def assemble(ir_text: str, cpu: str) -> Assembly:
    """Optimise `ir_text` and compile it for x86-64 CPU `cpu` (its default features)."""
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    machine = llvm.Target.from_triple("x86_64-unknown-linux-gnu").create_target_machine(cpu=cpu, opt=3)
    module = llvm.parse_assembly(ir_text)
    module.verify()
    builder = llvm.create_pass_builder(machine, llvm.create_pipeline_tuning_options(speed_level=3))
    builder.getModulePassManager().run(module, builder)
    # AVX-VNNI's encoding prints as "{vex} vpdpbusd": keep the mnemonic, drop the prefix
    lines = tuple(ln.strip().replace("{vex} ", "") for ln in machine.emit_assembly(module).splitlines()
                  if ln.startswith("\t") and not ln.startswith("\t."))
    return Assembly(lines, collections.Counter(ln.split()[0] for ln in lines))


def kernel_assembly(target: TargetSpec, kind: str, epilogue: str, cpu: str) -> Assembly:
    """The micro-kernel of `target` (accumulation `kind`, `epilogue`) compiled for `cpu`."""
    return assemble(standalone_ir(target, kind, epilogue), cpu)
