"""Parallel kernel compilation before a program's first run (`qv2c.runtime.precompile`)."""

from __future__ import annotations

import base64
import importlib
import os
import pickle
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

from qv2c.backend import build_executable
from qv2c.codegen.lower import lower
from qv2c.errors import ConfigError
from qv2c.ir import Builder, Module, TensorType, Value
from qv2c.runtime.buffer_plan import materialize, plan_buffers
from qv2c.runtime.precompile import default_workers, kernel_jobs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def relu_then_maxpool() -> Module:
    """A module whose program calls a few cheap kernels (layout changes, clamp, max-pool)."""
    m = Module("t")
    x = m.add_input(Value(TensorType((1, 3, 6, 6), "f32"), "x"))
    b = Builder(m)
    r = b.op("qv.relu", [x], result_names=["r"])
    m.outputs = [b.op("qv.maxpool", [r], result_names=["y"], kernel=[2, 2], strides=(2, 2),
                      pads=(0, 0, 0, 0), dilations=(1, 1))]
    return m


def test_kernel_jobs_are_the_distinct_calls_typed_like_the_run():
    program = lower(relu_then_maxpool())
    _, buffers = materialize(program, plan_buffers(program))
    consts = tuple(c.data for c in program.consts)
    jobs = kernel_jobs(program, buffers, consts)
    calls = {k.kernel.replace(":", ".") for k in program.kernels}
    assert {f"{module}.{fn}" for module, fn, _ in jobs} == calls
    # the input slot is unbound (None) before a run: it is typed from its buffer spec
    (_, slot, _, _), = program.inputs
    assert buffers[slot] is None
    x_type = numba.typeof(np.zeros((1, 3, 6, 6), np.float32))
    assert any(x_type in sig for _, _, sig in jobs)


def test_a_run_after_precompile_compiles_no_new_specialisation():
    """The jobs are typed exactly as the generated `run` calls the kernels: once the Executable
    has precompiled them, running it adds no overload to any kernel dispatcher."""
    m = relu_then_maxpool()
    exe = build_executable(m)
    dispatchers = {fn: getattr(importlib.import_module(module), fn)
                   for module, fn in (k.kernel.split(":") for k in exe.program.kernels)}
    before = {fn: set(d.overloads) for fn, d in dispatchers.items()}
    exe.run({"x": np.random.default_rng(0).standard_normal((1, 3, 6, 6)).astype(np.float32)})
    assert {fn: set(d.overloads) for fn, d in dispatchers.items()} == before


def test_bad_worker_count_is_a_one_line_config_error(monkeypatch):
    monkeypatch.setenv("QV2C_JIT_WORKERS", "two")
    with pytest.raises(ConfigError, match="QV2C_JIT_WORKERS='two'"):
        default_workers()
    monkeypatch.setenv("QV2C_JIT_WORKERS", "0")
    assert default_workers() == 0


def test_worker_answers_one_line_per_job_and_reports_bad_jobs():
    good = ("qv2c.runtime.kernels.tiling", "run_parallel", (numba.types.int64,) * 3)
    bad = ("qv2c.runtime.kernels.tiling", "no_such_kernel", ())
    lines = "".join(base64.b64encode(pickle.dumps(j)).decode() + "\n" for j in (good, bad))
    out = subprocess.run([sys.executable, "-m", "qv2c.runtime.precompile"], input=lines, capture_output=True,
                         text=True, cwd=ROOT, timeout=300, check=True)
    answers = out.stdout.splitlines()
    assert len(answers) == 2
    assert answers[0].startswith("compiled in ")
    assert answers[1] == "error AttributeError"


def test_cold_cache_kernels_compile_in_a_worker_and_give_the_reference_result(tmp_path):
    """Fresh Numba and program caches, one worker: some kernels are compiled by the worker, the
    parent loads them from the on-disk cache, and the program's output equals the interpreter's."""
    script = textwrap.dedent(f"""
        import logging, sys
        import numpy as np
        sys.path.insert(0, {os.path.join(ROOT, "tests")!r})
        from test_precompile import relu_then_maxpool
        from qv2c.ir import interpret
        from qv2c.backend import build_executable
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        logging.getLogger("qv2c.precompile").setLevel(logging.DEBUG)
        m = relu_then_maxpool()
        x = np.random.default_rng(0).standard_normal((1, 3, 6, 6)).astype(np.float32)
        got = build_executable(m).run({{"x": x}})["y"]
        want = interpret(m, {{"x": x}})["y"]
        assert np.array_equal(got, want), (got, want)
        print("OUTPUT OK")
    """)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba"), "QV2C_CACHE_DIR": str(tmp_path / "qv2c"),
           "QV2C_JIT_WORKERS": "1", "PYTHONPATH": ROOT}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OUTPUT OK" in out.stdout
    worker_lines = [line for line in out.stderr.splitlines() if line.startswith("worker ") and ": compiled in " in line]
    here_lines = [line for line in out.stderr.splitlines() if line.startswith("compiled ") and "in this process" in line]
    assert worker_lines, out.stderr[-3000:]
    assert here_lines, out.stderr[-3000:]
