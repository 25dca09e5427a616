"""End-to-end latency of compiled models: qv2c's Numba backend against onnxruntime (issue: Numba backend).

    QV2C_DATA=../shared/data python benchmarks/latency.py [--models a,b] [--batches 1,8] [--runs 30]

For every model and batch size, in one process on one machine, the median wall time
of one batch (after warm-up) for

- qv2c fp32, qv2c int8 (per-channel), qv2c mixed (QuantuneV2, k = 3 fp32 layers) under
  each placement: `per-op` (quantize -> op -> dequantize around every int8 op),
  `boundary` (quantize/dequantize only where precision changes) and `boundary+fuse`
  (the default: conv/gemm groups with their epilogues, requantization in the kernel);
- onnxruntime fp32, int8 (`quantize_static`, QDQ, per-channel, the same calibration
  images) and mixed (the same call with `nodes_to_exclude` = qv2c's fp32 layers),
  with `intra_op_num_threads` equal to the threads qv2c's kernels use.

Also, per model at batch 1: where qv2c's int8 time goes (per-kernel profile grouped by
kernel, conv/gemm throughput against the CPU's peak); and for ResNet18-CIFAR the
compile time with a cold and a warm cache (fresh processes), and for every model the
memory a loaded model adds to its process (RSS growth while building and running it,
in a fresh process) next to qv2c's planned activation arena.

Results: benchmarks/results/latency.{md,json}.  The machine is shared and noisy: the
figures are medians of `--runs` runs taken in `--rounds` interleaved rounds (a few runs of every
variant per round: the VM's speed drifts by up to 30 % within seconds, and fine interleaving
spreads each slow spell over all variants), and ratios are between runs of the same process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import instruction_peak  # noqa: E402
from common import (  # noqa: E402 (benchmarks/ is a folder of scripts, not a package)
    RESULTS,
    calibration_images,
    cpu_flags,
    cpu_model,
    onnxruntime_model_path,
    onnxruntime_quantized,
    onnxruntime_session,
)

import qv2c  # noqa: E402
from qv2c.datasets import load_eval_set, model_path  # noqa: E402
from qv2c.errors import ShapeError  # noqa: E402

ALL_MODELS = ["squeezenet1.1", "mobilenetv2", "cifar10_resnet18v1", "cifar10_resnet50v1", "cifar10_squeezenet1_1",
              "cifar10_vgg16", "cifar10_mobilenetv2"]
PLACEMENTS = ("per-op", "boundary", "boundary+fuse")
MIXED_K = 3
#: untimed runs of a variant after the pause that starts each of its blocks (see interleaved_medians)
REWARM = 2
CALIBRATION_IMAGES = 32  # latency does not depend on the ranges; fewer images keep compiles short


def interleaved_medians(fns: dict, runs: int, rounds: int, warmup: int = 3, rewarm: int = REWARM) -> dict[str, float]:
    """Median seconds of each callable over `runs` calls, taken in `rounds` interleaved rounds (every
    callable runs runs/rounds times per round), so a slow spell of the shared machine hits all alike.
    Every block starts after a short pause, because onnxruntime's intra-op threads spin-wait after a
    run and would otherwise take the cores from whatever runs next; then `rewarm` untimed runs,
    because on this VM an idle pause costs the next runs dearly: measured on VGG16-CIFAR fp32 at
    batch 1, runs right after a 50 ms pause took 6-70 ms instead of ~1 ms (every parallel region
    waits for the idle second vCPU to be scheduled again), and two untimed runs bring it back."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    per_round = -(-runs // rounds)
    for _ in range(rounds):
        for key, fn in fns.items():
            time.sleep(0.05)  # let the previous engine's worker threads stop spinning (onnxruntime spins)
            for _ in range(rewarm):
                fn()
            for _ in range(per_round):
                t = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def threads() -> int:
    import numba

    return numba.get_num_threads()


# -- one model -----------------------------------------------------------------------------------
def qv2c_variants(name: str, calib: np.ndarray, batch: int) -> dict:
    """The compiled qv2c models of the table (mixed: one QuantuneV2 ranking, reused for every placement)."""
    path = str(model_path(name))
    out = {"fp32": qv2c.compile(path, precision="fp32", batch_size=batch),
           "int8": qv2c.compile(path, calib, precision="int8", batch_size=batch)}
    mixed = qv2c.compile(path, calib, fp32_layers=MIXED_K, batch_size=batch)
    fp32_layers = tuple(n for n, p in mixed.precision.items() if p == "fp32")
    for placement in PLACEMENTS:
        out[f"mixed {placement}"] = mixed if placement == "boundary+fuse" else qv2c.compile(
            path, calib, precision="int8", keep_fp32=fp32_layers, placement=placement, batch_size=batch)
    return out, fp32_layers


def onnxruntime_variants(name: str, calib: np.ndarray, fp32_layers: tuple[str, ...], tmp: str, n_threads: int,
                         batch: int) -> dict:
    """onnxruntime sessions (fp32, int8, mixed) that accept `batch` images; a model whose graph pins
    batch 1 gets a dynamic batch dimension (`with_dynamic_batch`), and is left out (n/a) where onnxruntime
    still rejects it."""
    src = str(onnxruntime_model_path(name))
    int8, mixed = os.path.join(tmp, f"{name}_int8.onnx"), os.path.join(tmp, f"{name}_mixed_{batch}.onnx")
    if not os.path.exists(int8):
        onnxruntime_quantized(src, int8, calib)
    onnxruntime_quantized(src, mixed, calib, exclude=fp32_layers)
    sessions = {}
    for key, path in (("fp32", src), ("int8", int8), ("mixed", mixed)):
        if batch != 1:
            path = with_dynamic_batch(path, os.path.join(tmp, f"{name}_{key}_dyn.onnx"))
        try:
            session = onnxruntime_session(path, n_threads)
            session.run(None, {"input": np.zeros((batch, *calib.shape[1:]), np.float32)})
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            print(f"  onnxruntime {key} at batch {batch}: n/a ({str(e).splitlines()[0][:120]})", flush=True)
            continue
        sessions[key] = session
    return sessions


def with_dynamic_batch(src: str, dst: str) -> str:
    """A copy of `src` whose graph input and output have a symbolic batch dimension, and whose Reshape
    targets that hard-code batch 1 (a constant shape starting with 1) copy the batch instead (0), the
    per-sample reading qv2c's importer gives them (`frontend/importers/shape.py`)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(src)
    for v in [*model.graph.input, *model.graph.output]:
        dims = v.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "N"
    inits = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        allowzero = any(a.name == "allowzero" and a.i for a in node.attribute)
        if node.op_type == "Reshape" and not allowzero and node.input[1] in inits:
            target = numpy_helper.to_array(inits[node.input[1]]).copy()
            if target.size and target[0] == 1:
                target[0] = 0
                inits[node.input[1]].CopyFrom(numpy_helper.from_array(target, node.input[1]))
    del model.graph.value_info[:]
    onnx.save(model, dst)
    return dst


def bench_model(name: str, batches: list[int], runs: int, rounds: int, tmp: str) -> dict:
    calib = calibration_images(name, CALIBRATION_IMAGES)
    x_all, _ = load_eval_set(name, limit=max(batches))
    row = {"model": name, "batches": {}}
    n_threads = threads()
    for batch in batches:
        x = np.ascontiguousarray(x_all[:batch])
        try:
            models, fp32_layers = qv2c_variants(name, calib, batch)
        except ShapeError as e:
            row["batches"][str(batch)] = {"skipped": str(e)}
            print(f"{name} batch {batch}: skipped ({e})", flush=True)
            continue
        sessions = onnxruntime_variants(name, calib, fp32_layers, tmp, n_threads, batch)
        fns = {}
        for key, model in models.items():
            model.run(x)  # builds the executable (JIT-loads the kernels) outside the timing
            fns[f"qv2c {key}"] = lambda m=model, x=x: m.run(x)
        for key, session in sessions.items():
            fns[f"onnxruntime {key}"] = lambda s=session, x=x: s.run(None, {"input": x})
        times = interleaved_medians(fns, runs, rounds)
        for key in ("fp32", "int8", "mixed"):
            times.setdefault(f"onnxruntime {key}", None)
        entry = {"fp32_layers": list(fp32_layers), "seconds": times}
        if batch == 1:
            entry["profile"] = {**profile(models["int8"], x, runs), "macs": model_macs(name, batch)}
            entry["arena_bytes"] = {k: m.executable.peak_bytes for k, m in models.items()}
        row["batches"][str(batch)] = entry
        print(f"{name} batch {batch}: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in times.items()), flush=True)
    return row


def profile(model, x: np.ndarray, runs: int) -> dict:
    """Median seconds per kernel over `runs` profiled runs, summed by kernel entry point, with the
    multiply-adds of the conv/gemm kernels (from the module) for their throughput."""
    exe = model.executable
    feeds = {model.input_names[0]: x}
    per_call = defaultdict(list)
    for _ in range(runs):
        _, times = exe.run(feeds, profile=True)
        for t in times:
            per_call[t.index].append(t.seconds)
    by_kernel: dict[str, float] = defaultdict(float)
    for k, spec in enumerate(exe.program.kernels):
        by_kernel[spec.function] += statistics.median(per_call[k])
    return {"by_kernel": dict(sorted(by_kernel.items(), key=lambda kv: -kv[1]))}


def model_macs(name: str, batch: int) -> int:
    """Multiply-adds of one batch through every conv/gemm layer of the fp32 model."""
    from qv2c.api import load_canonical
    from qv2c.passes.layers import layer_macs, quantizable_layers

    return sum(layer_macs(op) for op in quantizable_layers(load_canonical(str(model_path(name)), batch)))


# -- compile time and memory (fresh processes) ----------------------------------------------------
CHILD = """
import json, os, resource, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {bench!r})
import numpy as np
import qv2c
from common import calibration_images
from qv2c.datasets import load_eval_set, model_path
mode, name = {mode!r}, {name!r}
calib = calibration_images(name, {n_calib})
x = np.ascontiguousarray(load_eval_set(name, limit=1)[0])
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
if mode == "compile":
    t1 = time.perf_counter()
    model = qv2c.compile(str(model_path(name)), calib, fp32_layers={k})
    t2 = time.perf_counter()
    model.run(x)
    t3 = time.perf_counter()
    print(json.dumps({{"import_s": t1 - t0, "compile_s": t2 - t1, "first_run_s": t3 - t2, "total_s": t3 - t1}}))
else:
    engine, precision = mode.split(":")
    if engine == "qv2c":
        model = qv2c.compile(str(model_path(name)), calib, precision=precision)
        import gc; gc.collect()
        before = rss()
        exe = model.executable
        for _ in range(10):
            model.run(x)
        print(json.dumps({{"rss_growth": rss() - before, "arena": exe.peak_bytes,
                          "consts": sum(getattr(c.data, "nbytes", 0) for c in exe.program.consts)}}))
    else:
        from common import onnxruntime_session
        path = {ort_path!r}
        import onnxruntime
        before = rss()
        s = onnxruntime_session(path, {threads})
        for _ in range(10):
            s.run(None, {{"input": x}})
        print(json.dumps({{"rss_growth": rss() - before}}))
"""


def child(mode: str, name: str, env: dict | None = None, n_threads: int = 1, n_calib: int = CALIBRATION_IMAGES,
          ort_path: str = "") -> dict:
    code = CHILD.format(bench=str(Path(__file__).parent), mode=mode, name=name, n_calib=n_calib,
                        k=MIXED_K, threads=n_threads, ort_path=ort_path)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **(env or {})},
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"child {mode} {name} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compile_times(name: str, repeats: int) -> dict:
    """Cold: fresh qv2c program cache and Numba cache directories; warm: the same directories again."""
    cold, warm = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            env = {"QV2C_CACHE_DIR": os.path.join(tmp, "qv2c"), "NUMBA_CACHE_DIR": os.path.join(tmp, "numba")}
            cold.append(child("compile", name, env))
            warm.append(child("compile", name, env))
    return {"cold": cold, "warm": warm}


def memory(name: str, n_threads: int) -> dict:
    """Memory a model adds to a fresh process: RSS growth while building it and running it 10 times.
    qv2c: after `compile` (calibrating on 4 images, so the interpreter's temporaries are small; NumPy
    returns large freed arrays to the OS), so the growth is the executable plus the Numba/LLVM runtime
    that loads its kernels.  onnxruntime: after `import onnxruntime`, the session and its runs (the
    quantized model is made beforehand, in this process)."""
    src = str(onnxruntime_model_path(name))
    out = {mode: child(mode, name, n_threads=n_threads, n_calib=4) for mode in ("qv2c:fp32", "qv2c:int8")}
    with tempfile.TemporaryDirectory() as tmp:
        q = os.path.join(tmp, "int8.onnx")
        onnxruntime_quantized(src, q, calibration_images(name, CALIBRATION_IMAGES))
        for precision, path in (("fp32", src), ("int8", q)):
            out[f"onnxruntime:{precision}"] = child(f"onnxruntime:{precision}", name, n_threads=n_threads,
                                                    ort_path=path)
    return out


# -- report ----------------------------------------------------------------------------------------
def write_report(result: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latency.json").write_text(json.dumps(result, indent=1))
    (RESULTS / "latency.md").write_text(render_markdown(result))


def _int8_instruction(meta: dict) -> str:
    """The int8 instruction the peak was measured with: the one the run's target generates."""
    if "vnni" in meta.get("target", ""):
        return "`vpdpbusd` on u8 x s8 quads"
    return "`vpmaddwd` + `vpaddd` on int16 pairs"


def _ms(s: float | None) -> str:
    return "n/a" if s is None else f"{s * 1e3:.2f}"


def render_markdown(result: dict) -> str:
    meta = result["meta"]
    lines = ["# End-to-end latency: qv2c (Numba backend) vs onnxruntime\n",
             f"CPU: {meta['cpu']} ({meta.get('cpu_flags', 'flags not recorded')}), {meta['threads']} threads on both sides, {meta['date']}. Median of "
             f"{meta['runs']} runs after 3 warm-up runs ({meta.get('rounds', 3)} interleaved rounds, each block after a 50 ms pause and {meta.get('rewarm', 0)} untimed runs), ms per batch. Mixed = QuantuneV2 with k = {MIXED_K} "
             "fp32 layers; onnxruntime mixed = `quantize_static` with `nodes_to_exclude` = those layers. "
             "Ratios: time / other time (< 1 means qv2c is faster).\n"]
    cols = ["qv2c fp32", "qv2c int8", *[f"qv2c mixed {p}" for p in PLACEMENTS], "onnxruntime fp32",
            "onnxruntime int8", "onnxruntime mixed"]
    for batch in meta["batches"]:
        lines.append(f"\n## Batch {batch}\n")
        lines.append("| model | " + " | ".join(cols) + " |")
        lines.append("|---|" + "---|" * len(cols))
        ratio_rows = []
        for row in result["rows"]:
            e = row["batches"].get(str(batch), {})
            if "skipped" in e:
                lines.append(f"| {row['model']} | " + " | ".join(["n/a"] * len(cols)) + " |")
                continue
            t = e["seconds"]
            lines.append(f"| {row['model']} | " + " | ".join(_ms(t.get(c)) for c in cols) + " |")
            ratio_rows.append((row["model"], t))
        lines.append("\n| model | per-op / boundary+fuse | qv2c fp32 / int8 | ort fp32 / int8 | qv2c fp32 / ort fp32 | "
                     "qv2c int8 / ort int8 | qv2c mixed / qv2c int8 | ort mixed / ort int8 |")
        lines.append("|---|---|---|---|---|---|---|---|")
        pairs = [("qv2c mixed per-op", "qv2c mixed boundary+fuse"), ("qv2c fp32", "qv2c int8"),
                 ("onnxruntime fp32", "onnxruntime int8"), ("qv2c fp32", "onnxruntime fp32"),
                 ("qv2c int8", "onnxruntime int8"), ("qv2c mixed boundary+fuse", "qv2c int8"),
                 ("onnxruntime mixed", "onnxruntime int8")]
        for model, t in ratio_rows:
            cells = [f"{t[a] / t[b]:.2f}" if t.get(a) and t.get(b) else "n/a" for a, b in pairs]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines.append("\n## Where qv2c's int8 time goes (batch 1, per-kernel profile)\n")
    f32_peak, i8_peak = meta["peak_f32_gops_per_core"], meta["peak_i8_gops_per_core"]
    if i8_peak is None:  # no AVX2: the int8 instruction was not measured
        lines.append(f"Peak of one core, measured (`instruction_peak.py`): fp32 {f32_peak:.0f} GFLOP/s; the int8 "
                     "peak is not measured without AVX2.\n")
    else:
        lines.append(f"Peak of one core, measured (`instruction_peak.py`: independent chains of the kernels' own "
                     f"instructions, target {meta.get('target', 'not recorded')}): fp32 FMA {f32_peak:.0f} GFLOP/s, "
                     f"int8 {i8_peak:.0f} GOP/s ({_int8_instruction(meta)}), so a compute-bound int8 layer can be at most "
                     f"{i8_peak / f32_peak:.2f}x faster than fp32 here.\n")
    for row in result["rows"]:
        e = row["batches"].get("1", {})
        if "profile" not in e:
            continue
        p = e["profile"]
        total = sum(p["by_kernel"].values())
        conv = sum(v for k, v in p["by_kernel"].items() if k.startswith(("conv2d", "depthwise", "gemm")))
        share = ", ".join(f"{k} {v / total:.0%}" for k, v in list(p["by_kernel"].items())[:6])
        lines.append(f"- {row['model']}: {total * 1e3:.2f} ms in kernels; {share}. conv/gemm kernels: "
                     f"{2 * p['macs'] / conv / 1e9:.0f} GOP/s on {p['macs'] / 1e6:.0f} M MACs.")
    if "compile" in result:
        c = result["compile"]
        lines.append(f"\n## Compile time ({c['model']}, `compile(..., fp32_layers={MIXED_K})` with "
                     f"{CALIBRATION_IMAGES} calibration images, plus the first run; fresh processes)\n")
        for kind in ("cold", "warm"):
            totals = [r["total_s"] for r in c[kind]]
            first = [r["first_run_s"] for r in c[kind]]
            lines.append(f"- {kind}: median {statistics.median(totals):.2f} s (of which first run / JIT load "
                         f"{statistics.median(first):.2f} s; import qv2c {statistics.median(r['import_s'] for r in c[kind]):.2f} s "
                         f"not included), runs: {', '.join(f'{v:.2f}' for v in totals)}")
    if "memory" in result:
        lines.append("\n## Memory a loaded model adds to its process (batch 1, MiB; fresh process each)\n")
        lines.append("| model | qv2c fp32 RSS growth | qv2c fp32 arena + constants | qv2c int8 RSS growth | "
                     "qv2c int8 arena + constants | onnxruntime fp32 RSS growth | onnxruntime int8 RSS growth |")
        lines.append("|---|---|---|---|---|---|---|")
        mib = 1 << 20
        for name, m in result["memory"].items():
            cells = [m["qv2c:fp32"]["rss_growth"] / mib, (m["qv2c:fp32"]["arena"] + m["qv2c:fp32"]["consts"]) / mib,
                     m["qv2c:int8"]["rss_growth"] / mib, (m["qv2c:int8"]["arena"] + m["qv2c:int8"]["consts"]) / mib,
                     m["onnxruntime:fp32"]["rss_growth"] / mib, m["onnxruntime:int8"]["rss_growth"] / mib]
            lines.append(f"| {name} | " + " | ".join(f"{v:.1f}" for v in cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", default=",".join(ALL_MODELS))
    p.add_argument("--batches", default="1,8")
    p.add_argument("--runs", type=int, default=60)
    p.add_argument("--rounds", type=int, default=20,
                   help="interleaved rounds: this VM's speed drifts by 30%% within seconds, so many short rounds")
    p.add_argument("--compile-repeats", type=int, default=3)
    p.add_argument("--skip-compile", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--memory-only", action="store_true", help="redo only the memory table of latency.json")
    args = p.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    n_threads = threads()
    meta = {"cpu": cpu_model(), "cpu_flags": cpu_flags(), "date": time.strftime("%Y-%m-%d"), "threads": n_threads, "runs": args.runs,
            "rounds": args.rounds, "rewarm": REWARM,
            "batches": batches, **instruction_peak.per_core_peaks()}
    if args.memory_only:
        result = json.loads((RESULTS / "latency.json").read_text())
        result["memory"] = {name: memory(name, n_threads) for name in args.models.split(",")}
        write_report(result)
        return
    result = {"meta": meta, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            result["rows"].append(bench_model(name, batches, args.runs, args.rounds, tmp))
            write_report(result)
    if not args.skip_compile:
        result["compile"] = {"model": "cifar10_resnet18v1", **compile_times("cifar10_resnet18v1", args.compile_repeats)}
        write_report(result)
    if not args.skip_memory:
        result["memory"] = {name: memory(name, n_threads) for name in args.models.split(",")}
        write_report(result)
    print((RESULTS / "latency.md").read_text())


if __name__ == "__main__":
    main()
