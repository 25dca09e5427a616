"""A small depthwise-separable CNN with TF-style "same" padding written as explicit `Pad` nodes.

    python benchmarks/models/make_padded_dwcnn.py OUT.onnx [--size 96] [--seed 0]

The model qv2c must compile without a standalone pad (issue 15): ports of TF models
(MobileNet, EfficientNet) export "same" padding as a `Pad` in front of every strided and
every depthwise conv, because ONNX's symmetric `pads` cannot say "one more at the end",
which is what TF gives a stride-2 conv on an even input. Here:

    x[1,3,S,S] -> Pad -> conv 3x3/2 (3->16) -> ReLU6
               -> 5 x [Pad -> depthwise 3x3 (stride 1, 2, 1, 2, 1) -> ReLU6 -> conv 1x1 -> ReLU6]
               -> GlobalAveragePool -> Flatten -> Gemm (-> 10)

eleven convs and a Gemm, ReLU6 as `Clip(0, 6)`, no batch norm (the weights are what a
folded batch norm would leave). Every Pad is TF's: total = max((ceil(n / s) - 1) * s + k - n, 0),
begin = total // 2, end = total - begin, so a 3x3 stride-2 conv on an even input gets
[0, 1] and a stride-1 conv [1, 1]. Weights are He-scaled normal from `--seed` (no training:
the model is for compile and speed checks; outputs are compared with the reference
interpreter, not with labels). Opset 13: the pads are an int64 initializer input of Pad.
The .onnx file is not committed; this script is how to make it.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from qv2c.errors import ConfigError

#: (stride, output channels) of each depthwise-separable block
BLOCKS = ((1, 24), (2, 32), (1, 32), (2, 64), (1, 64))
STEM_CHANNELS, CLASSES, KERNEL = 16, 10, 3


def tf_same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "same" padding of one spatial axis: (begin, end), the odd one at the end."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _Graph:
    """Nodes and initializers of the model as they are added, with fresh tensor names."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def init(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def pad(self, x: str, name: str, size: int, stride: int) -> str:
        begin, end = tf_same_pads(size, KERNEL, stride)  # square input and kernel: the same along H and W
        pads = self.init(f"{name}_pads", np.array([0, 0, begin, begin, 0, 0, end, end], np.int64))
        self.nodes.append(helper.make_node("Pad", [x, pads], [f"{name}_padded"], name=f"{name}_pad", mode="constant"))
        return f"{name}_padded"

    def conv_relu6(self, x: str, name: str, cin: int, cout: int, kernel: int, stride: int, group: int) -> str:
        fan_in = cin // group * kernel * kernel
        w = self.rng.standard_normal((cout, cin // group, kernel, kernel)) * np.sqrt(2.0 / fan_in)
        b = 0.05 * self.rng.standard_normal(cout)
        ins = [x, self.init(f"{name}_w", w.astype(np.float32)), self.init(f"{name}_b", b.astype(np.float32))]
        self.nodes.append(helper.make_node("Conv", ins, [f"{name}_out"], name=name, kernel_shape=[kernel, kernel],
                                           strides=[stride, stride], group=group))
        self.nodes.append(helper.make_node("Clip", [f"{name}_out", "relu6_min", "relu6_max"], [f"{name}_act"],
                                           name=f"{name}_relu6"))
        return f"{name}_act"


def build(size: int = 96, seed: int = 0) -> onnx.ModelProto:
    """The model for a `size` x `size` RGB input (a multiple of 8, at least 32), batch 1."""
    if not isinstance(size, int) or size < 32 or size % 8:
        raise ConfigError(f"input size must be a multiple of 8 and at least 32, not {size!r}")
    g = _Graph(seed)
    g.init("relu6_min", np.array(0.0, np.float32))
    g.init("relu6_max", np.array(6.0, np.float32))
    x = g.conv_relu6(g.pad("input", "stem", size, 2), "stem", 3, STEM_CHANNELS, KERNEL, 2, 1)
    n, c = math.ceil(size / 2), STEM_CHANNELS
    for i, (stride, cout) in enumerate(BLOCKS, start=1):
        x = g.conv_relu6(g.pad(x, f"dw{i}", n, stride), f"dw{i}", c, c, KERNEL, stride, c)
        x = g.conv_relu6(x, f"pw{i}", c, cout, 1, 1, 1)
        n, c = math.ceil(n / stride), cout
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="pool"))
    g.nodes.append(helper.make_node("Flatten", ["pooled"], ["features"], name="flatten"))
    fc_w = g.rng.standard_normal((CLASSES, c)) * np.sqrt(1.0 / c)
    g.nodes.append(helper.make_node("Gemm", ["features", g.init("fc_w", fc_w.astype(np.float32)),
                                             g.init("fc_b", np.zeros(CLASSES, np.float32))], ["logits"],
                                    name="fc", transB=1))
    graph = helper.make_graph(g.nodes, "padded_dwcnn",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, CLASSES])], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="make_padded_dwcnn")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="where to write the .onnx file")
    parser.add_argument("--size", type=int, default=96, help="input height and width (96 or 224, say)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    onnx.save(build(args.size, args.seed), args.out)
    print(f"wrote {args.out} ({args.size}x{args.size} input)", file=sys.stderr)


if __name__ == "__main__":
    main()
