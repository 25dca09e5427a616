"""A small ONNX CNN for the quantization tests (sensitivity ranking, `qv2c.compile`).

    x[N,3,8,8] -> conv1 (3->4, 3x3) -> relu -> conv2 (4->6, 3x3, stride 2) -> relu
               -> conv3 (6->6, 1x1) -> relu -> global avg pool -> flatten -> fc (6->10)

Written inline in `onnx.parser` text with seeded random weights, so each compile takes
well under a second. `skewed=name` makes that conv hard to quantize per tensor:
output channel 0 gets weights -1000 |w| and a negative bias. Its inputs are never
negative (images in [0, 1) or a ReLU output), so channel 0 is always <= 0 and the
following ReLU zeroes it: the fp32 model computes the same kind of thing as before,
but one per-tensor int8 scale for the whole weight rounds every other channel to 0.
Per-channel scales are unaffected.
"""

from __future__ import annotations

import numpy as np
from onnx_text import model

LAYERS = ["conv1", "conv2", "conv3", "fc"]

_CNN = """
agraph (float[N,3,8,8] "{input}") => (float[N,10] y) {{
  [conv1] c1 = Conv <pads = [1, 1, 1, 1]> ("{input}", w1, b1)
  r1 = Relu (c1)
  [conv2] c2 = Conv <pads = [1, 1, 1, 1], strides = [2, 2]> (r1, w2, b2)
  r2 = Relu (c2)
  [conv3] c3 = Conv (r2, w3, b3)
  r3 = Relu (c3)
  g = GlobalAveragePool (r3)
  f = Flatten (g)
  [fc] y = Gemm <transB = 1> (f, wf, bf)
}}
"""

_SHAPES = {"conv1": ((4, 3, 3, 3), 4), "conv2": ((6, 4, 3, 3), 6), "conv3": ((6, 6, 1, 1), 6), "fc": ((10, 6), 10)}
_NAMES = {"conv1": ("w1", "b1"), "conv2": ("w2", "b2"), "conv3": ("w3", "b3"), "fc": ("wf", "bf")}


def small_cnn(seed: int = 0, skewed: str | None = None, input_name: str = "x"):
    """The CNN above as an `onnx.ModelProto` with a symbolic batch (bound on import) and
    He-scaled random weights from `seed`."""
    rng = np.random.default_rng(seed)
    params = {}
    for layer, (wshape, channels) in _SHAPES.items():
        fan_in = int(np.prod(wshape[1:]))
        w = rng.standard_normal(wshape) * np.sqrt(2.0 / fan_in)
        b = 0.1 * rng.standard_normal(channels)
        if layer == skewed:
            w[0] = -1000.0 * np.abs(w[0])
            b[0] = -abs(b[0])
        wname, bname = _NAMES[layer]
        params[wname], params[bname] = w.astype(np.float32), b.astype(np.float32)
    return model(_CNN.format(input=input_name), **params)


def images(n: int, seed: int = 0) -> np.ndarray:
    """`n` input samples [n, 3, 8, 8] in [0, 1) like scaled pixels: uniform noise times a random
    brightness per sample and channel, so that pooled features (and so the predicted class)
    differ between samples instead of averaging out to the same value."""
    rng = np.random.default_rng(seed)
    return (rng.random((n, 3, 1, 1), dtype=np.float32) * rng.random((n, 3, 8, 8), dtype=np.float32))
