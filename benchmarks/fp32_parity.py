"""fp32 top-1 of the reference interpreter vs onnxruntime on the full evaluation sets.

    QV2C_DATA=../shared/data python benchmarks/fp32_parity.py

ImageNet models on all 1300 images of imagenet_val_1300, the CIFAR-10 zoo on all
10,000 test images. Writes benchmarks/results/fp32_parity.{md,json} with the CPU model.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, cpu_model  # noqa: E402 (benchmarks/ is a folder of scripts, not a package)

import qv2c  # noqa: E402
from qv2c.datasets import iter_eval_batches, model_info, model_path, top1

MODELS = ["squeezenet1.1", "mobilenetv2", "cifar10_resnet18v1", "cifar10_resnet50v1", "cifar10_squeezenet1_1",
          "cifar10_vgg16", "cifar10_mobilenetv2"]


def evaluate(name: str) -> dict:
    info = model_info(name)
    path = str(model_path(name))
    batch = 50 if info.dataset == "cifar10" else 1
    model = qv2c.compile(path, precision="fp32", batch_size=batch, backend="reference")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    ours, theirs, labels = [], [], []
    start = time.perf_counter()
    for x, y in iter_eval_batches(name):
        ours.append(model(x))
        if info.dataset == "cifar10":
            theirs.append(session.run(None, {"input": x})[0])
        else:
            theirs.append(np.concatenate([session.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))]))
        labels.append(y)
    ours, theirs, labels = np.concatenate(ours), np.concatenate(theirs), np.concatenate(labels)
    return {
        "model": name,
        "images": int(len(labels)),
        "qv2c_top1": top1(ours, labels, info.label_offset),
        "onnxruntime_top1": top1(theirs, labels, info.label_offset),
        "argmax_agreement": float((ours.argmax(1) == theirs.argmax(1)).mean() * 100),
        "max_abs_logit_diff": float(np.abs(ours - theirs).max()),
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    rows = []
    for name in MODELS:
        rows.append(evaluate(name))
        print(rows[-1], flush=True)
    RESULTS.mkdir(exist_ok=True)
    meta = {"cpu": cpu_model(), "date": time.strftime("%Y-%m-%d"), "engine": "qv2c reference interpreter (fp32)"}
    (RESULTS / "fp32_parity.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"# fp32 parity: qv2c reference interpreter vs onnxruntime\n\nCPU: {meta['cpu']}, {meta['date']}\n",
             "| model | images | qv2c top-1 | onnxruntime top-1 | argmax agreement % | max abs logit diff |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['images']} | {r['qv2c_top1']:.2f} | {r['onnxruntime_top1']:.2f} | "
                     f"{r['argmax_agreement']:.2f} | {r['max_abs_logit_diff']:.2e} |")
    (RESULTS / "fp32_parity.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
