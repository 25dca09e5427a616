"""Kernel benchmarks: qv2c's Numba kernels against onnxruntime (the peer) on representative layers.

For each layer, batch size and precision it times one kernel call of ours and one
`run_with_iobinding` of a one-node onnxruntime model (fp32 `Conv`/`Gemm`; int8 as a QDQ
graph that onnxruntime fuses into `QLinearConv`/`QGemm`, which the table reports), with
the same thread count on both sides (`intra_op_num_threads`, `numba.set_num_threads`),
and prints GOP/s (2 ops per multiply-add, fp32 and int8 alike) and the ratio
onnxruntime time / our time (> 1: we are faster).

Fairness notes:
- Ours reads NHWC activations and pre-packed weights (the layouts the compiled program
  keeps between kernels); onnxruntime reads NCHW.  onnxruntime is timed at graph
  optimisation levels EXTENDED and ALL (ALL adds its NCHWc/NHWC layout transforms, whose
  reorders a one-node model pays for) and the faster one is reported.
- Convs have bias and no activation (our fused ReLU costs nothing measurable).
- Times are medians of many calls after warm-up (minimum in parentheses).  The machine
  is shared with other jobs, so wall-clock numbers are noisy (often 10-30 %, worse for
  tiny layers).  The second configuration runs both sides single-threaded and times
  them with the process CPU clock, which a busy machine disturbs much less: it compares
  the kernels themselves.

Run:  .venv/bin/python benchmarks/kernels.py [--quick] [--configs 2:wall,1:cpu] [--write PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper
from onnx import numpy_helper as nh

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import cpu_flags, cpu_model  # noqa: E402 (benchmarks/ is a folder of scripts)

from qv2c.runtime.kernels import conv_f32, conv_i8, depthwise, gemm, packing, prepare  # noqa: E402
from qv2c.runtime.kernels.conv_f32 import conv_output_hw  # noqa: E402
from qv2c.runtime.kernels.target import selected_target  # noqa: E402

prepare()
TARGET = selected_target()

#: threads of the configuration being measured (set by `main`)
THREADS = 2


@dataclass(frozen=True)
class Layer:
    name: str
    kind: str  # "conv" | "dw" | "fc"
    c: int
    h: int
    w: int
    oc: int
    k: int = 1
    s: int = 1
    p: int = 0

    def out_hw(self) -> tuple[int, int]:
        return conv_output_hw(self.h, self.w, (self.k, self.k), (self.s, self.s), (self.p,) * 4, (1, 1))

    def ops(self, batch: int) -> float:
        oh, ow = self.out_hw()
        if self.kind == "dw":
            return 2.0 * batch * oh * ow * self.c * self.k * self.k
        return 2.0 * batch * oh * ow * self.oc * self.c * self.k * self.k


LAYERS = [
    Layer("ResNet18-CIFAR 3x3 64->64 @8x8", "conv", 64, 8, 8, 64, 3, 1, 1),
    Layer("ResNet18-CIFAR 3x3 16->16 @32x32", "conv", 16, 32, 32, 16, 3, 1, 1),
    Layer("SqueezeNet 1x1 64->16 @55x55", "conv", 64, 55, 55, 16, 1, 1, 0),
    Layer("SqueezeNet 3x3 16->64 @55x55", "conv", 16, 55, 55, 64, 3, 1, 1),
    Layer("first conv 3x3/2 3->64 @224x224", "conv", 3, 224, 224, 64, 3, 2, 1),
    Layer("MobileNetV2 dw 3x3 144 @56x56", "dw", 144, 56, 56, 144, 3, 1, 1),
    Layer("FC 1280->1001", "fc", 1280, 1, 1, 1001),
]


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def measure(fn, budget: float) -> tuple[float, float]:
    """(median, min) seconds per call of `fn` over about `budget` seconds (at least 15 calls)."""
    for _ in range(3):
        fn()
    t0 = clock()
    fn()
    est = max(clock() - t0, 1e-6)
    reps = int(min(5000, max(15, budget / est)))
    times = []
    for _ in range(reps):
        t = clock()
        fn()
        times.append(clock() - t)
    return statistics.median(times), min(times)


# -- test data ---------------------------------------------------------------
@dataclass
class Data:
    x32: np.ndarray  # NCHW (or [M, K]) fp32
    w32: np.ndarray  # OIHW (or [N, K]) fp32
    b32: np.ndarray
    xq: np.ndarray  # NCHW u8
    zx: int
    sx: float
    wq: np.ndarray  # int8
    sw: np.ndarray  # per output channel
    bq: np.ndarray  # int32
    sy: float
    zy: int


def make_data(layer: Layer, batch: int) -> Data:
    rng = np.random.default_rng(0)
    cin = 1 if layer.kind == "dw" else layer.c
    if layer.kind == "fc":
        x32 = rng.standard_normal((batch, layer.c)).astype(np.float32)
        w32 = (rng.standard_normal((layer.oc, layer.c)) / np.sqrt(layer.c)).astype(np.float32)
    else:
        x32 = rng.standard_normal((batch, layer.c, layer.h, layer.w)).astype(np.float32)
        w32 = (rng.standard_normal((layer.oc, cin, layer.k, layer.k)) / np.sqrt(cin * layer.k ** 2)).astype(np.float32)
    b32 = (rng.standard_normal(layer.oc) * 0.1).astype(np.float32)
    sx, zx = 8.0 / 255, 128
    xq = np.clip(np.rint(x32 / sx) + zx, 0, 255).astype(np.uint8)
    sw = (np.abs(w32).reshape(layer.oc, -1).max(axis=1) / 127).astype(np.float32)
    wq = np.clip(np.rint(w32 / sw.reshape((-1,) + (1,) * (w32.ndim - 1))), -127, 127).astype(np.int8)
    bq = np.rint(b32 / (sx * sw)).astype(np.int32)
    return Data(x32, w32, b32, xq, zx, sx, wq, sw, bq, 0.05, 128)


# -- onnxruntime one-node models ------------------------------------------------
def _model(nodes, inputs, outputs, inits) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "bench", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _op_node(layer: Layer, inputs, output):
    if layer.kind == "fc":
        return helper.make_node("Gemm", inputs, [output], transB=1)
    return helper.make_node("Conv", inputs, [output], kernel_shape=[layer.k] * 2, strides=[layer.s] * 2,
                            pads=[layer.p] * 4, group=layer.c if layer.kind == "dw" else 1)


def ort_fp32_model(layer: Layer, d: Data) -> onnx.ModelProto:
    return _model([_op_node(layer, ["x", "W", "B"], "y")],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(d.x32.shape))],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                  [nh.from_array(d.w32, "W"), nh.from_array(d.b32, "B")])


def ort_qdq_model(layer: Layer, d: Data) -> onnx.ModelProto:
    oc = layer.oc
    inits = [nh.from_array(d.wq, "Wq"), nh.from_array(d.sw, "ws"), nh.from_array(np.zeros(oc, np.int8), "wz"),
             nh.from_array(np.array(d.sx, np.float32), "xs"), nh.from_array(np.array(d.zx, np.uint8), "xz"),
             nh.from_array(d.bq, "Bq"), nh.from_array((np.float32(d.sx) * d.sw).astype(np.float32), "bs"),
             nh.from_array(np.zeros(oc, np.int32), "bz"),
             nh.from_array(np.array(d.sy, np.float32), "ys"), nh.from_array(np.array(d.zy, np.uint8), "yz")]
    nodes = [helper.make_node("DequantizeLinear", ["x", "xs", "xz"], ["xf"]),
             helper.make_node("DequantizeLinear", ["Wq", "ws", "wz"], ["Wf"], axis=0),
             helper.make_node("DequantizeLinear", ["Bq", "bs", "bz"], ["Bf"], axis=0),
             _op_node(layer, ["xf", "Wf", "Bf"], "yf"),
             helper.make_node("QuantizeLinear", ["yf", "ys", "yz"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.UINT8, list(d.xq.shape))],
                  [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)


def ort_runner(model: onnx.ModelProto, x: np.ndarray, level) -> tuple[callable, list[str]]:
    """A zero-allocation call of the model (IOBinding) and the op types left after optimisation."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    so.inter_op_num_threads = 1
    so.graph_optimization_level = level
    so.log_severity_level = 3
    with tempfile.TemporaryDirectory() as tmp:
        so.optimized_model_filepath = os.path.join(tmp, "opt.onnx")
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        ops = [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]
    y = sess.run(None, {"x": x})[0]
    out = np.empty_like(y)
    io = sess.io_binding()
    io.bind_cpu_input("x", x)
    io.bind_output("y", "cpu", 0, out.dtype, list(out.shape), out.ctypes.data)
    return (lambda: sess.run_with_iobinding(io) or out), ops  # the closure keeps `out` (bound memory) alive


def time_ort(model: onnx.ModelProto, x: np.ndarray, budget: float) -> tuple[float, float, str]:
    best = None
    for level, tag in ((ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "ext"),
                       (ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "all")):
        fn, ops = ort_runner(model, x, level)
        med, mn = measure(fn, budget)
        del fn
        time.sleep(0.1)  # let onnxruntime's spinning workers go idle before the next measurement
        if best is None or med < best[0]:
            best = (med, mn, f"{'+'.join(o for o in ops if o not in ('Transpose',))}[{tag}]")
    return best


# -- our kernels ------------------------------------------------------------------
def our_fp32(layer: Layer, d: Data):
    act = (-np.inf, np.inf)
    if layer.kind == "fc":
        w = packing.pack_gemm_f32(d.w32).data
        out = np.empty((d.x32.shape[0], layer.oc), np.float32)
        return lambda: gemm.gemm_f32(d.x32, w, d.b32, out, out, *act, False, TARGET.marker())
    x = np.ascontiguousarray(d.x32.transpose(0, 2, 3, 1))
    oh, ow = layer.out_hw()
    out = np.empty((x.shape[0], oh, ow, layer.oc), np.float32)
    geo = (layer.s, layer.s, layer.p, layer.p, 1, 1)
    if layer.kind == "dw":
        w = packing.pack_depthwise_f32(d.w32).data
        return lambda: depthwise.depthwise_f32(x, w, d.b32, out, out, *geo, *act, False, TARGET.marker())
    w = packing.pack_conv_f32(d.w32).data
    return lambda: conv_f32.conv2d_f32(x, w, d.b32, out, out, layer.k, layer.k, *geo, *act, False, TARGET.marker())


def our_int8(layer: Layer, d: Data):
    mult = (np.float32(d.sx) * d.sw / np.float32(d.sy)).astype(np.float32)
    if layer.kind == "fc":
        w = packing.pack_gemm_i8(d.wq, dot=TARGET.int8_dot).data
        out = np.empty((d.xq.shape[0], layer.oc), np.uint8)
        return lambda: gemm.gemm_i8(d.xq, d.zx, w, d.bq, out, mult, d.zy, 0, 255, TARGET.marker())
    x = np.ascontiguousarray(d.xq.transpose(0, 2, 3, 1))
    oh, ow = layer.out_hw()
    out = np.empty((x.shape[0], oh, ow, layer.oc), np.uint8)
    geo = (layer.s, layer.s, layer.p, layer.p, 1, 1)
    if layer.kind == "dw":
        w = packing.pack_depthwise_i8(d.wq).data
        return lambda: depthwise.depthwise_i8(x, d.zx, w, d.bq, out, *geo, mult, d.zy, 0, 255,
                                                     TARGET.marker())
    w = packing.pack_conv_i8(d.wq, dot=TARGET.int8_dot).data
    return lambda: conv_i8.conv2d_i8(x, d.zx, w, d.bq, out, layer.k, layer.k, *geo, mult, d.zy, 0, 255,
                                     TARGET.marker())


def run_table(batches, only: str, budget: float) -> list[str]:
    """Measure every layer x batch x precision; print and return the markdown rows."""
    rows = []
    for batch in batches:
        for layer in LAYERS:
            if only and only not in layer.name:
                continue
            d = make_data(layer, batch)
            for prec, ours, model, x in (("fp32", our_fp32, ort_fp32_model, d.x32),
                                         ("int8", our_int8, ort_qdq_model, d.xq)):
                fn = ours(layer, d)
                med, mn = measure(fn, budget)
                time.sleep(0.1)
                omed, omn, ops = time_ort(model(layer, d), x, budget)
                gop = layer.ops(batch) / 1e9
                row = (f"| {layer.name} | {batch} | {prec} | {gop / med:.1f} ({gop / mn:.1f}) | "
                       f"{gop / omed:.1f} ({gop / omn:.1f}) | {omed / med:.2f} | {ops} |")
                rows.append(row)
                print(row, flush=True)
    return rows


#: everything after this line of the results file is hand-written analysis, kept on rewrite
NOTES_MARKER = "<!-- notes: text below this line is kept when benchmarks/kernels.py rewrites the file -->"

HEADER = ("| layer | batch | prec | ours GOP/s (best) | onnxruntime GOP/s (best) | ratio | onnxruntime op |\n"
          "|---|---|---|---|---|---|---|")


def main(argv=None) -> int:
    global THREADS, clock
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short time budget per measurement")
    ap.add_argument("--batches", default="1,8", help="comma-separated batch sizes (default 1,8)")
    ap.add_argument("--only", default="", help="run layers whose name contains this text")
    ap.add_argument("--configs", default="2:wall,1:cpu",
                    help="comma-separated THREADS:CLOCK runs, CLOCK wall or cpu (default 2:wall,1:cpu)")
    ap.add_argument("--write", default="", help="also write the markdown tables to this path")
    args = ap.parse_args(argv)
    budget = 0.15 if args.quick else 0.6
    import numba

    batches = [int(b) for b in args.batches.split(",")]
    sections = []
    for config in args.configs.split(","):
        threads, clock_name = config.split(":")
        THREADS, clock = int(threads), CLOCKS[clock_name]
        numba.set_num_threads(THREADS)
        title = f"{THREADS} thread{'s' if THREADS > 1 else ''}, {clock_name}-clock medians"
        print(f"\n## {title}\n\n{HEADER}", flush=True)
        sections.append((title, run_table(batches, args.only, budget)))
    if args.write:
        notes = ""
        if os.path.exists(args.write):
            with open(args.write) as f:
                old = f.read()
            if NOTES_MARKER in old:
                notes = old[old.index(NOTES_MARKER):]
        with open(args.write, "w") as f:
            f.write("# Kernel benchmarks: qv2c Numba kernels vs onnxruntime\n\n")
            f.write(f"CPU: `{cpu_model()}` ({os.cpu_count()} cores; {cpu_flags()}); "
                    f"numba {numba.__version__}, onnxruntime {ort.__version__}.  "
                    "Generated by `benchmarks/kernels.py`.\n\n")
            f.write("GOP/s = 2 x multiply-adds / time; medians of repeated calls (minimum in parentheses); "
                    "ratio = onnxruntime time / our time (> 1: ours is faster).  The machine was shared with "
                    "other jobs while measuring, so wall-clock numbers are noisy (often 10-30 %, more for tiny "
                    "layers); the single-thread CPU-clock table is the steadier comparison of the kernels.\n")
            for title, rows in sections:
                f.write(f"\n## {title}\n\n{HEADER}\n" + "\n".join(rows) + "\n")
            if notes:
                f.write("\n" + notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
