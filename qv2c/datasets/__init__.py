"""Labelled evaluation sets and the registry of evaluated models.

The data root comes from a `root=` argument or the `QV2C_DATA` environment variable
(the shared data folder). Images are decoded once per process and kept as uint8;
each call normalizes the requested images for the requested model.

    from qv2c.datasets import MODELS, iter_eval_batches, model_path, top1
    info = MODELS["squeezenet1.1"]
    for x, labels in iter_eval_batches(info.name):      # x float32 [<=50, 3, 224, 224]
        ...
"""

from qv2c.datasets.cifar10 import (
    CLASSES as CIFAR10_CLASSES,
)
from qv2c.datasets.cifar10 import (
    cifar10_images,
    cifar10_labels,
    cifar10_pixels,
    iter_cifar10_batches,
    load_cifar10,
)
from qv2c.datasets.imagenet import (
    imagenet_images,
    imagenet_labels,
    imagenet_pixels,
    iter_imagenet_batches,
    load_imagenet,
)
from qv2c.datasets.models import (
    MODELS,
    ModelInfo,
    iter_eval_batches,
    load_eval_set,
    model_info,
    model_path,
    spread_indices,
    top1,
)
from qv2c.datasets.paths import ENV_VAR, data_file, data_root
from qv2c.datasets.preprocess import PRESETS, Normalization, get_preprocess
from qv2c.datasets.store import LabelledImages

__all__ = [
    "CIFAR10_CLASSES",
    "ENV_VAR",
    "MODELS",
    "PRESETS",
    "LabelledImages",
    "ModelInfo",
    "Normalization",
    "cifar10_images",
    "cifar10_labels",
    "cifar10_pixels",
    "data_file",
    "data_root",
    "get_preprocess",
    "imagenet_images",
    "imagenet_labels",
    "imagenet_pixels",
    "iter_cifar10_batches",
    "iter_eval_batches",
    "iter_imagenet_batches",
    "load_cifar10",
    "load_eval_set",
    "load_imagenet",
    "model_info",
    "model_path",
    "spread_indices",
    "top1",
]
