"""The models the project evaluates, and how to get their labelled evaluation inputs.

`MODELS` maps a short name to a `ModelInfo`: where the ONNX file lives under the data
root, which labelled set it is evaluated on, which input normalization it expects and
how its output index relates to the dataset label. Two ImageNet models and the ten
cifar10_zoo files (with and without BatchNormalization nodes); the zoo names carry a
`cifar10_` prefix because the zoo reuses architecture names (`mobilenetv2`).

Labels returned here are always the dataset's own labels (ImageNet 0..999, CIFAR-10
0..9); a model whose output `k + label_offset` means class `k` (TensorFlow's 1001-way
MobileNetV2 with a background class at 0) is scored with `top1(..., info.label_offset)`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qv2c.datasets.cifar10 import cifar10_images
from qv2c.datasets.imagenet import imagenet_images
from qv2c.datasets.paths import data_file
from qv2c.datasets.preprocess import get_preprocess
from qv2c.datasets.store import Indices, LabelledImages
from qv2c.errors import ConfigError, InputError


@dataclass(frozen=True)
class ModelInfo:
    """One evaluated model: ONNX `path` relative to the data root and how to feed and score it."""

    name: str
    path: str
    dataset: str  # "imagenet" or "cifar10"
    preprocess: str  # a key of qv2c.datasets.preprocess.PRESETS
    label_offset: int  # output index = dataset label + label_offset
    num_classes: int  # number of model outputs


def _registry() -> dict[str, ModelInfo]:
    squeezenet = ModelInfo(
        name="squeezenet1.1",
        path="squeezenet1.1_imagenet/squeezenet1.1_fp32.onnx",
        dataset="imagenet",
        preprocess="squeezenet",
        label_offset=0,
        num_classes=1000,
    )
    # TensorFlow MobileNetV2: 1001 outputs, output 0 is "background", so class k is output k + 1.
    mobilenet = ModelInfo(
        name="mobilenetv2",
        path="mobilenetv2_imagenet/mobilenetv2_tf2_ptq_dequant_fp32.onnx",
        dataset="imagenet",
        preprocess="mobilenetv2",
        label_offset=1,
        num_classes=1001,
    )
    zoo = [
        ModelInfo(f"cifar10_{file}", f"cifar10_zoo/{file}.onnx", "cifar10", "cifar10", 0, 10)
        for arch in ("resnet18v1", "resnet50v1", "squeezenet1_1", "vgg16", "mobilenetv2")
        for file in (arch, f"{arch}_folded")
    ]
    return {m.name: m for m in (squeezenet, mobilenet, *zoo)}


#: Short name -> ModelInfo for every model the project evaluates.
MODELS: dict[str, ModelInfo] = _registry()

#: The split each dataset is evaluated on (ImageNet has only the 1300-image validation subset).
_EVAL_SPLITS = {"imagenet": ("val",), "cifar10": ("test", "train")}


def model_info(name: str) -> ModelInfo:
    """The registry entry of `name`; a one-line `ConfigError` listing the known names otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None


def model_path(name: str, root: str | os.PathLike | None = None) -> Path:
    """Absolute path of the ONNX file of model `name` under `root` (default `$QV2C_DATA`); it must exist."""
    return data_file(root, *model_info(name).path.split("/"))


def _images_for(info: ModelInfo, root: str | os.PathLike | None, split: str | None) -> LabelledImages:
    splits = _EVAL_SPLITS[info.dataset]
    split = splits[0] if split is None else split
    if split not in splits:
        raise ConfigError(f"model {info.name} is evaluated on {info.dataset}, which has splits {splits}, not {split!r}")
    if info.dataset == "imagenet":
        return imagenet_images(root)
    return cifar10_images(split, root)


def load_eval_set(
    name: str,
    root: str | os.PathLike | None = None,
    indices: Indices = None,
    limit: int | None = None,
    split: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs preprocessed for model `name` (float32 NCHW) and dataset labels (int64).

    `split` defaults to the model's evaluation split ("val" for ImageNet, "test" for
    CIFAR-10). Score with `top1(logits, labels, MODELS[name].label_offset)`.
    """
    info = model_info(name)
    return _images_for(info, root, split).load(indices, limit, get_preprocess(info.preprocess))


def iter_eval_batches(
    name: str,
    root: str | os.PathLike | None = None,
    indices: Indices = None,
    limit: int | None = None,
    split: str | None = None,
    batch_size: int = 50,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Like `load_eval_set`, but yields `(inputs, labels)` batches of at most `batch_size` images."""
    info = model_info(name)
    return _images_for(info, root, split).iter_batches(indices, limit, get_preprocess(info.preprocess), batch_size)


def spread_indices(name: str, count: int, root: str | os.PathLike | None = None,
                   split: str | None = None) -> range:
    """`count` indices spread evenly over the split (every n-th image).  Use this rather than the
    first `count` images where a split is stored class by class (CIFAR-10: the first 1000 test
    images are all airplanes)."""
    if not isinstance(count, int) or count < 1:
        raise ConfigError(f"need a positive number of images, not {count!r}")
    total = len(_images_for(model_info(name), root, split))
    return range(0, total, max(1, total // max(1, count)))[:count]


def top1(logits: np.ndarray, labels: np.ndarray, label_offset: int = 0) -> float:
    """Top-1 accuracy in percent: how often `argmax(logits) - label_offset == label`."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],) or logits.shape[0] == 0:
        raise InputError(
            f"top1 needs logits [N, classes] and labels [N] with N > 0, got shapes {logits.shape} and {labels.shape}"
        )
    predicted = np.argmax(logits, axis=1) - label_offset
    return float(np.mean(predicted == labels) * 100.0)
