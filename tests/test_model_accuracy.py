"""Top-1 of the reference interpreter equals onnxruntime's on real labelled images.

ImageNet models on the first 300 images of imagenet_val_1300, the CIFAR-10 zoo on the
first 1000 test images, to keep the suite short; `benchmarks/fp32_parity.py` runs the
full sets (all 1300 / all 10,000) and records the figures in benchmarks/results/.
Both engines see the same preprocessed arrays, so any difference is the compiler's.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import qv2c
from qv2c.datasets import iter_eval_batches, model_info, model_path, top1

CASES = [
    ("squeezenet1.1", range(300)),
    ("mobilenetv2", range(300)),
    *((f"cifar10_{n}", range(1000)) for n in ("resnet18v1", "resnet50v1", "squeezenet1_1", "vgg16", "mobilenetv2")),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, indices", CASES, ids=[c[0] for c in CASES])
def test_interpreter_top1_equals_onnxruntime(name, indices):
    info = model_info(name)
    path = str(model_path(name))
    model = qv2c.compile(path, precision="fp32", batch_size=50 if info.dataset == "cifar10" else 1,
                         backend="reference")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    ours, theirs, labels = [], [], []
    for x, y in iter_eval_batches(name, indices=indices):
        ours.append(model(x))
        theirs.append(np.concatenate([session.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))]))
        labels.append(y)
    ours, theirs, labels = np.concatenate(ours), np.concatenate(theirs), np.concatenate(labels)
    ours_top1 = top1(ours, labels, info.label_offset)
    assert ours_top1 == top1(theirs, labels, info.label_offset)
    assert (ours.argmax(1) == theirs.argmax(1)).mean() > 0.999
