"""The model and labelled images that ship inside the package, so `qv2c-run` with no arguments
works on a machine with no data folder and no network.

`model.onnx` is a MobileNet-style CNN for CIFAR-10 (3x3 stem, six depthwise + pointwise pairs,
ReLU6, global average pooling, one fully connected layer) trained for this project by
`tools/train_default_model.py`; `cifar10_sample.npz` holds real CIFAR-10 images as uint8 pixels
with their labels (evaluation images from the test split, calibration images from the training
split). README.md beside them says where every image comes from.

    from qv2c.default import MODEL, load_sample
    x, labels = load_sample("eval")          # float32 [N, 3, 32, 32], normalized as the model expects
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qv2c.errors import ConfigError

HERE = Path(__file__).resolve().parent
#: the embedded ONNX model
MODEL = HERE / "model.onnx"
#: uint8 images `{eval,calib}_images` [N, 32, 32, 3], int64 `{eval,calib}_labels` and the CIFAR-10 `*_indices`
SAMPLE = HERE / "cifar10_sample.npz"
#: which `qv2c.datasets.preprocess` preset the model was trained with
PREPROCESS = "cifar10"
PARTS = ("eval", "calib")


def load_sample(part: str = "eval", limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed float32 inputs `[N, 3, 32, 32]` and int64 labels of the embedded `part`
    ("eval": CIFAR-10 test images, "calib": training images); `limit` of them spread evenly over the
    part if given (the images are stored class by class, so the first few would all be airplanes)."""
    from qv2c.datasets.preprocess import get_preprocess

    if part not in PARTS:
        raise ConfigError(f"the embedded sample has parts {PARTS}, not {part!r}")
    if limit is not None and limit < 1:
        raise ConfigError(f"need a positive number of images, not {limit!r}")
    try:
        with np.load(SAMPLE) as data:
            pixels, labels = data[f"{part}_images"], data[f"{part}_labels"]
    except (OSError, KeyError, ValueError) as e:
        raise ConfigError(f"cannot read the embedded images {SAMPLE}: {e}; reinstall qv2c") from None
    if limit is not None and limit < len(labels):
        pick = np.arange(0, len(labels), len(labels) // limit)[:limit]
        pixels, labels = pixels[pick], labels[pick]
    return get_preprocess(PREPROCESS)(pixels), labels.astype(np.int64)
