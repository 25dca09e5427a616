"""Train the small CIFAR-10 CNN that `qv2c-run` compiles when given no model, and write the
embedded sample images beside it (`qv2c/default/`).

    .venv/bin/pip install -e '.[train]'   # torch: training only, not a qv2c runtime dependency
    QV2C_DATA=../shared/data nice -n 10 .venv/bin/python tools/train_default_model.py

The network is MobileNet-V1 in miniature for 32x32 inputs: a 3x3 stem, six depthwise 3x3 +
pointwise 1x1 pairs (three of them strided), 38,600 parameters, every conv followed by BatchNorm
and ReLU6, global average pooling and one fully connected layer: the kind of network (depthwise
convs, BatchNorm folded into them) where int8 is known to cost accuracy once trained long enough
for the folded per-channel ranges to drift apart. Trained this briefly it barely does (see
benchmarks/results/default_run.md): small enough to compile in seconds is the first requirement.

Training: the 50,000 CIFAR-10 training images (the JPEG zips of the shared data folder, read
by `qv2c.datasets`), random crop (pad 4) and horizontal flip, SGD with Nesterov momentum, a
one-cycle learning rate (peak 0.4), label smoothing 0.1, no weight decay, a fixed seed; 25
epochs, about 15 s each on two idle CPU cores (7 minutes in all; many times that when the cores
are shared). It writes
  qv2c/default/model.onnx           the trained network (BatchNorm folded by the exporter), opset 13
  qv2c/default/cifar10_sample.npz   uint8 images and labels: `eval_*` from the CIFAR-10 test split,
                                    `calib_*` from the training split (for calibration), with indices
and prints the test accuracy of the torch model over the whole test split and over the sample.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from qv2c.datasets import cifar10_pixels, get_preprocess

OUT = Path(__file__).resolve().parents[1] / "qv2c" / "default"
#: (out channels, stride) of each depthwise + pointwise pair after the 3x3 stem
BLOCKS = ((32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1))
STEM = 16


def conv_bn(cin: int, cout: int, k: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class TinyMobileNet(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        layers, cin = [conv_bn(3, STEM, 3, 1)], STEM
        for cout, stride in BLOCKS:
            layers += [conv_bn(cin, cin, 3, stride, groups=cin), conv_bn(cin, cout, 1, 1)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def spread(total: int, count: int) -> np.ndarray:
    """`count` indices spread evenly over a split stored class by class (every n-th image)."""
    return np.arange(0, total, total // count)[:count]


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random 32x32 crops of the 4-pixel zero-padded batch, half of them mirrored."""
    n = x.shape[0]
    padded = nn.functional.pad(x, (4, 4, 4, 4))
    dy, dx = torch.randint(0, 9, (2,), generator=gen).tolist()  # one offset per batch: cheap, enough
    out = padded[:, :, dy:dy + 32, dx:dx + 32]
    flip = torch.rand(n, generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        right = sum(int((model(x[i:i + 500]).argmax(1) == y[i:i + 500]).sum()) for i in range(0, len(x), 500))
    return 100.0 * right / len(x)


def name_layers(path: Path) -> None:
    """Short node names for the tables qv2c prints: stem, dw1/pw1 .. dw6/pw6, fc (and act*, pool)."""
    import onnx

    proto = onnx.load(str(path))
    block = 0
    for node in proto.graph.node:
        if node.op_type == "Conv":
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            block += group > 1
            node.name = "stem" if block == 0 else f"{'dw' if group > 1 else 'pw'}{block}"
        elif node.op_type == "Gemm":
            node.name = "fc"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="data root (default: $QV2C_DATA)")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.4)
    p.add_argument("--eval-count", type=int, default=1000, help="test images embedded (spread over the split)")
    p.add_argument("--calib-count", type=int, default=64, help="training images embedded for calibration")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    normalize = get_preprocess("cifar10")
    start = time.perf_counter()
    train_px, train_y = cifar10_pixels("train", args.data)
    test_px, test_y = cifar10_pixels("test", args.data)
    x_train, y_train = torch.from_numpy(normalize(train_px)), torch.from_numpy(train_y)
    x_test, y_test = torch.from_numpy(normalize(test_px)), torch.from_numpy(test_y)
    print(f"decoded {len(x_train)} + {len(x_test)} images in {time.perf_counter() - start:.1f} s", flush=True)

    model = TinyMobileNet().to(memory_format=torch.channels_last)  # measured ~25 % faster on CPU
    steps = args.epochs * (len(x_train) // args.batch)
    # no weight decay: BatchNorm scales and depthwise filters free to drift apart, as in the long trainings
    # whose folded per-channel ranges make int8 hard (here they stayed within 2.6-8x of each other)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=steps, pct_start=0.25)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=gen)
        t, total = time.perf_counter(), 0.0
        for b in range(len(x_train) // args.batch):
            idx = order[b * args.batch:(b + 1) * args.batch]
            batch = augment(x_train[idx], gen).contiguous(memory_format=torch.channels_last)
            loss = loss_fn(model(batch), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        print(f"epoch {epoch + 1}/{args.epochs}: loss {total / (b + 1):.3f}, test top-1 "
              f"{accuracy(model, x_test, y_test):.2f} %, {time.perf_counter() - t:.0f} s", flush=True)

    model.eval().to(memory_format=torch.contiguous_format)
    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / "model.onnx"
    torch.onnx.export(model, torch.zeros(1, 3, 32, 32), str(onnx_path), input_names=["input"],
                      output_names=["logits"], opset_version=13, dynamo=False)
    name_layers(onnx_path)
    eval_idx, calib_idx = spread(len(test_y), args.eval_count), spread(len(train_y), args.calib_count)
    np.savez_compressed(args.out / "cifar10_sample.npz", eval_images=test_px[eval_idx], eval_labels=test_y[eval_idx],
                        eval_indices=eval_idx, calib_images=train_px[calib_idx], calib_labels=train_y[calib_idx],
                        calib_indices=calib_idx)
    print(f"torch top-1: {accuracy(model, x_test, y_test):.2f} % on the 10,000 test images, "
          f"{accuracy(model, x_test[eval_idx], y_test[eval_idx]):.2f} % on the {len(eval_idx)} embedded ones; "
          f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e3:.0f} kB) and the sample; "
          f"{(time.perf_counter() - start) / 60:.1f} min in all")


if __name__ == "__main__":
    main()
