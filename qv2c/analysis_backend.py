"""`NumbaEvaluator`: calibration and sensitivity analysis on the generated code.

The analyses (`passes/calibrate.py`, `passes/sensitivity/`) run modules through the
`passes.evaluator.Evaluator` protocol and import no backend (DESIGN.md); the driver
(`qv2c.api.compile(..., analysis_backend="numba")`) hands them this one. It runs a module on
the Numba backend with taps: the tapped values are added as extra outputs of a view of the
module (the same ops, inputs and constants; only the output list differs), that view is
lowered and loaded like any program (`backend.build_executable`), and each run hands the
tapped outputs to the analysis.

    evaluator = NumbaEvaluator()
    ranges = calibrate(module, data, batch, evaluator=evaluator)
    ranking = rank_layers("quantunev2", SensitivityContext(..., evaluator=evaluator))

Executables are cached per (module, taps), the last few, so the calibration batches of one
analysis reuse one program, while leave-one-out's N mixed modules are built one after another
without holding N activation arenas. Analysis modules are unfused `realize_quant` output (the
analyses look up values the `fuse` pass would hide inside groups); the backend runs those op by
op, conv/GEMM anchors on the same kernels as fused groups.

Numerics: integer tensors are bit-exact with the reference interpreter; fp32 tensors differ
by the summation order of the fp32 kernels, so ranges and metrics agree within fp32 rounding,
and a near-tie between two layers' scores can swap (benchmarks/results/analysis_speed.md).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from qv2c.backend import build_executable
from qv2c.ir.clone import clone_module
from qv2c.ir.core import Module, Value
from qv2c.passes.evaluator import Observe
from qv2c.passes.manager import run_pipeline
from qv2c.runtime.executable import Executable
from qv2c.runtime.kernels.target import TargetSpec


class NumbaEvaluator:
    """Runs analysis modules on generated code (see the module docstring)."""

    name = "numba"

    def __init__(self, target: TargetSpec | None = None, cached: int = 4, fuse: bool = True):
        self.target = target
        self.cached = cached
        self.fuse = fuse
        #: (id(module), ids of the taps) -> (module, executable, output index of each computed tap)
        self._cache: OrderedDict[tuple, tuple[Module, Executable, dict[int, int]]] = OrderedDict()
        #: programs built so far (a cache miss each)
        self.builds = 0

    def run(self, module: Module, inputs: dict[str, np.ndarray], taps: Sequence[Value], observe: Observe) -> None:
        exe, index = self._executable(module, taps)
        outputs = exe.run_outputs(inputs)
        for v in taps:
            observe(v, outputs[index[id(v)]] if id(v) in index else inputs[v.name])

    def _executable(self, module: Module, taps: Sequence[Value]) -> tuple[Executable, dict[int, int]]:
        key = (id(module), tuple(id(v) for v in taps))
        hit = self._cache.get(key)
        if hit is not None and hit[0] is module:  # the same object, not a new one at a reused id
            self._cache.move_to_end(key)
            return hit[1], hit[2]
        computed = [v for v in taps if v.owner is not None]  # inputs are observed from the feeds
        program = tapped(module, computed, self.fuse)
        index = {id(v): i for i, v in enumerate([*module.outputs, *computed])}
        exe = build_executable(program, target=self.target)
        self.builds += 1
        self._cache[key] = (module, exe, index)
        while len(self._cache) > self.cached:
            self._cache.popitem(last=False)
        return exe, index


def tapped(module: Module, values: Sequence[Value], fuse: bool = True) -> Module:
    """A copy of `module` whose outputs are its own followed by `values` (op results of its top
    level), fused (`passes/fuse.py`) unless `fuse=False`. `module` is not changed. The copy's
    outputs keep their positions through fusion (a group's result takes its last op's place),
    and fusion never hides a tapped value inside a group (no group runs past a module output)."""
    copy, mapping = clone_module(module)
    copy.outputs = [*copy.outputs, *(mapping[id(v)] for v in values)]
    return run_pipeline(copy, ["fuse"]) if fuse else copy
