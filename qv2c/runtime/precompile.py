"""Compile a program's kernels in parallel worker processes before its first run.

Why: Numba compiles a kernel entry point on its first call, one after the other, and on a
cold cache a conv driver takes 10-25 s (LLVM optimises the whole inlined micro-kernel
chain).  A model needs a handful of independent entry-point specialisations, so with
more than one core they can be compiled at the same time.

How: `kernel_jobs` lists the distinct (module, function, Numba signature) triples the
program will call, typed from the very arrays and literals the generated `run` passes.
`precompile` loads every one that Numba's on-disk cache (`cache=True`) already holds;
the others are shared between this process and `workers` child processes
(`python -m qv2c.runtime.precompile`, one job per stdin line, "ok"/"error" back), which
compile into the on-disk cache; this process then loads their results.  Anything that
goes wrong in a worker only costs time: a job whose result is not in the cache
afterwards is compiled here, exactly as a first call would.

Two workers compiling callees of the same function may each rewrite that function's
cache index, so one of two fresh entries can be lost; that costs a recompile later,
never a wrong result (every cached entry point carries its callees' code).

`QV2C_JIT_WORKERS` sets the number of child processes (default: usable CPUs - 1;
0 compiles everything in this process).
"""

from __future__ import annotations

import base64
import importlib
import logging
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from qv2c.errors import ConfigError
from qv2c.runtime.program import DTYPE_NAMES, GENERATED, Buf, Const, Program

Job = tuple[str, str, tuple]  # (module, function, argument types)

#: one debug line per compiled job: where, how long (`logging.getLogger("qv2c.precompile")`)
log = logging.getLogger("qv2c.precompile")


def kernel_jobs(program: Program, buffers: list, consts: tuple) -> list[Job]:
    """The distinct Numba kernel specialisations `program` calls, in first-call order."""
    import numba

    jobs: dict[Job, None] = {}
    for k in program.kernels:
        module, fn = k.kernel.split(":")
        if module == GENERATED:
            continue  # defined in the program's own source: compiled on its first call (a small loop)
        if not isinstance(getattr(importlib.import_module(module), fn), numba.core.dispatcher.Dispatcher):
            continue  # a plain Python kernel (`fallback.py` runs an op through the reference interpreter)
        values = [_argument_value(a, program, buffers, consts) for _, a in k.args]
        jobs[(module, fn, tuple(numba.typeof(v) for v in values))] = None
    return list(jobs)


def _argument_value(a, program: Program, buffers: list, consts: tuple):
    if isinstance(a, Buf):
        if buffers[a.id] is not None:
            return buffers[a.id]
        spec = program.buffers[a.id]  # an input slot: bound at run time, typed by its spec
        return np.zeros(spec.shape, DTYPE_NAMES[spec.dtype])
    if isinstance(a, Const):
        return consts[a.id]
    return a


def default_workers() -> int:
    """`QV2C_JIT_WORKERS`, else the CPUs this process may use minus one (this process compiles too)."""
    env = os.environ.get("QV2C_JIT_WORKERS")
    if env is None:
        return max(0, len(os.sched_getaffinity(0)) - 1)
    if not env.strip().isdigit():
        raise ConfigError(f"QV2C_JIT_WORKERS={env!r}: set it to a number of worker processes (0 = none)")
    return int(env)


def precompile(jobs: list[Job], workers: int | None = None) -> list[Job]:
    """Make every job's specialisation available in this process; return the ones that were not cached."""
    missing = [j for j in jobs if not _load_compiled(j)]
    workers = min(default_workers() if workers is None else workers, max(0, len(missing) - 1))
    if workers > 0:
        _compile_in_parallel(missing, workers)
    for job in missing:
        _dispatcher(job).compile(job[2])  # a cache hit when a worker compiled it
    return missing


def _dispatcher(job: Job):
    module, fn, _ = job
    return getattr(importlib.import_module(module), fn)


def _load_compiled(job: Job) -> bool:
    """True if the job is compiled in this process or was loaded from the on-disk cache now.

    This is `Dispatcher.compile` without its fallback to compiling (numba 0.68); if Numba's
    internals differ, the job counts as missing and is compiled the normal way.
    """
    disp, sig = _dispatcher(job), job[2]
    try:
        if sig in disp.overloads:
            return True
        cres = disp._cache.load_overload(sig, disp.targetctx)
        if cres is None:
            return False
        disp.targetctx.insert_user_function(cres.entry_point, cres.fndesc, [cres.library])
        disp.add_overload(cres)
        return True
    except Exception:
        return False


def _compile_in_parallel(jobs: list[Job], workers: int) -> None:
    """Share `jobs` between this process and `workers` children, largest groups first (`_groups`)."""
    todo: queue.Queue = queue.Queue()
    for group in sorted(_groups(jobs), key=lambda g: sum(map(_expected_cost, g)), reverse=True):
        todo.put(group)
    threads = [threading.Thread(target=_feed_worker, args=(todo,), daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    while True:
        try:
            group = todo.get_nowait()
        except queue.Empty:
            break
        for job in group:
            _compile_here(job)
    for t in threads:
        t.join()


def _groups(jobs: list[Job]) -> list[list[Job]]:
    """Jobs that share a conv driver, in one group each, so that one process compiles them one after the
    other: e.g. `conv2d_i8_requant`, `conv2d_i8` and `gemm_i8` are thin entry points over the same
    `conv_i8_core` specialisations, which the first compiles and the others then find in memory
    (two processes would each compile them)."""
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(_driver(job), []).append(job)
    return list(groups.values())


def _driver(job: Job) -> str:
    """The conv driver under a kernel entry point ("conv_i8", "conv_f32", "depthwise"), else the job itself."""
    module, fn = job[0].rsplit(".", 1)[-1], job[1]
    if module in ("conv_i8", "conv_f32", "depthwise"):
        return module
    if module == "gemm":
        return "conv_i8" if "_i8" in fn else "conv_f32"
    return f"{module}.{fn}{job[2]}"


def _compile_here(job: Job) -> float:
    start = time.perf_counter()
    _dispatcher(job).compile(job[2])
    seconds = time.perf_counter() - start
    log.debug("compiled %s.%s in this process in %.1f s", job[0], job[1], seconds)
    return seconds


def _expected_cost(job: Job) -> int:
    """Conv/GEMM drivers take seconds to compile, layout and elementwise kernels a fraction."""
    return 10 if job[0].rsplit(".", 1)[-1] in ("conv_i8", "conv_f32", "gemm", "depthwise") else 1


def _feed_worker(todo: queue.Queue) -> None:
    """Run one child process and hand it jobs from `todo` until none are left."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, env["PYTHONPATH"]]) if env.get("PYTHONPATH") else root
    try:
        child = subprocess.Popen([sys.executable, "-m", "qv2c.runtime.precompile"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    except OSError:
        return
    try:
        while True:
            try:
                group = todo.get_nowait()
            except queue.Empty:
                break
            for job in group:
                child.stdin.write(base64.b64encode(pickle.dumps(job)).decode() + "\n")
                child.stdin.flush()
                answer = child.stdout.readline()
                if not answer:  # the child died: this process compiles what is left
                    return
                log.debug("worker %d: %s.%s: %s", child.pid, job[0], job[1], answer.strip())
    except OSError:
        pass
    finally:
        try:
            child.stdin.close()
        except OSError:
            pass
        child.wait()


def _worker_main() -> None:
    """Child process: compile each job read from stdin into the on-disk cache, answer one line per job."""
    for line in sys.stdin:
        try:
            job = pickle.loads(base64.b64decode(line))
            print(f"compiled in {_compile_here(job):.1f} s", flush=True)
        except Exception as exc:  # reported, and the parent compiles the job itself
            print(f"error {type(exc).__name__}", flush=True)


if __name__ == "__main__":
    _worker_main()
