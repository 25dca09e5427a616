"""`Executable`: a lowered program, its buffers planned and its kernels compiled, ready to run.

    exe = qv2c.backend.build_executable(module)   # lower -> render/load -> Executable (the driver)
    exe = Executable(module, program, loaded)     # what the driver does last: plan, allocate, compile
    outputs = exe.run({"input": x})       # {output name: array}
    arrays = exe.run_outputs({"input": x})   # [array] in the module's output order
    outputs, times = exe.run({"input": x}, profile=True)   # plus per-kernel seconds
    exe.source                            # the generated Python, one kernel call per line
    exe.peak_bytes                        # the activation arena (buffers reused by liveness)

The runtime never imports the compiler: it receives a `runtime.program.Program` (the lowered
program) and its imported source (`runtime.loader.LoadedProgram`).  Everything that can be
done once is done in the constructor: the buffers are planned and allocated in one arena, their views (reshape aliases, the
[M, 1, 1, K] views of FC layers, concat rows) are built, and every kernel the program
calls is compiled (in parallel worker processes on a cold cache, `precompile.py`).
A run binds the caller's input arrays, calls the generated `run(buffers, consts)` and
copies the outputs out (the only allocation of a run at this level; some kernels use
small scratch arrays of their own, e.g. the zero-padded input of a conv).  An Executable is not
reentrant: two threads must not run the same one at once (they would share buffers).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from qv2c.ir.core import Module
from qv2c.ir.interpreter import check_inputs
from qv2c.runtime.buffer_plan import materialize, plan_buffers
from qv2c.runtime.kernels import prepare as prepare_kernels
from qv2c.runtime.loader import LoadedProgram, bind_entry_points
from qv2c.runtime.precompile import kernel_jobs, precompile
from qv2c.runtime.program import Program


@dataclass(frozen=True)
class KernelTime:
    """One kernel call's share of a profiled run."""

    index: int
    label: str
    kernel: str
    seconds: float


class Executable:
    """A compiled module bound to its buffers; see the module docstring."""

    def __init__(self, module: Module, program: Program, loaded: LoadedProgram):
        """`module` is the IR the program was lowered from (its inputs are checked against it)."""
        prepare_kernels()
        self.module = module
        self.program = program
        self.plan = plan_buffers(self.program)
        self._arena, self._buffers = materialize(self.program, self.plan)
        self._consts = tuple(c.data for c in self.program.consts)
        self._loaded = loaded
        self._bound = False  # kernels called through their entry points (after the first run)
        precompile(kernel_jobs(self.program, self._buffers, self._consts))

    @property
    def source(self) -> str:
        """The generated Python source of this program."""
        return self._loaded.source

    @property
    def source_path(self):
        """The cached file the program was imported from (None when the cache was not writable)."""
        return self._loaded.path

    @property
    def peak_bytes(self) -> int:
        """Bytes of the activation arena (the peak of live buffers, as planned)."""
        return self.plan.total_bytes

    def run(self, inputs: dict[str, np.ndarray], profile: bool = False):
        """Outputs by name; with `profile=True`, `(outputs, [KernelTime, ...])` in execution order."""
        arrays, times = self._run(inputs, profile)
        outputs = {name: a for (name, _), a in zip(self.program.outputs, arrays)}
        if not profile:
            return outputs
        return outputs, [KernelTime(i, k.label, k.kernel, t) for i, (k, t) in enumerate(zip(self.program.kernels, times))]

    def run_outputs(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The outputs in the module's output order (where two outputs may share a name, e.g. an
        analysis tapping an int8 value named like the model output it is dequantized into)."""
        return self._run(inputs, False)[0]

    def _run(self, inputs: dict[str, np.ndarray], profile: bool) -> tuple[list[np.ndarray], list[float]]:
        arrays = check_inputs(self.module, inputs)
        for (_, slot, _, _), a in zip(self.program.inputs, arrays):
            # the types the kernels were compiled for on the first run (`bind_entry_points`)
            self._buffers[slot] = np.require(a, requirements=("C_CONTIGUOUS", "ALIGNED", "WRITEABLE"))
        times = [0.0] * len(self.program.kernels) if profile else []
        try:
            if profile:
                self._loaded.run_profiled(self._buffers, self._consts, time.perf_counter, times)
            else:
                self._loaded.run(self._buffers, self._consts)
            outputs = [self._buffers[bid].copy() for _, bid in self.program.outputs]
            if not self._bound:
                bind_entry_points(self._loaded)
                self._bound = True
        finally:
            for _, slot, _, _ in self.program.inputs:
                self._buffers[slot] = None  # do not keep the caller's arrays alive
        return outputs, times
