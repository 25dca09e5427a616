"""The 1300-image ImageNet validation subset (`imagenet_val_1300/` under the data root).

`dataset.txt` lists `./data/<file>, <label>` with labels 0..999 (sorted WordNet IDs).
The JPEGs are already 227x227; like the folder's README measurements we take the
center 224x224 crop (pixels 1..224 on both axes) and then the model's normalization.
Models with a background class (TensorFlow MobileNetV2, 1001 outputs) keep these
labels and say `label_offset=1` in the model registry instead.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from qv2c.datasets.paths import data_file, data_root
from qv2c.datasets.preprocess import Normalization, get_preprocess
from qv2c.datasets.store import Indices, LabelledImages, decode_rgb
from qv2c.errors import ConfigError

FOLDER = "imagenet_val_1300"
LIST_FILE = "dataset.txt"
NUM_CLASSES = 1000
CROP = 224


def _parse_list(path: Path) -> tuple[list[str], np.ndarray]:
    """(relative file names, labels) from a `dataset.txt` whose lines read `./data/<file>, <label>`."""
    files, labels = [], []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        name, _, label = line.rpartition(",")
        try:
            value = int(label)
        except ValueError:
            value = -1
        if not name.strip() or not 0 <= value < NUM_CLASSES:
            raise ConfigError(f"{path}:{lineno}: expected './data/<file>, <label 0..{NUM_CLASSES - 1}>', got {line!r}")
        files.append(name.strip())
        labels.append(value)
    if not files:
        raise ConfigError(f"{path} lists no images")
    return files, np.asarray(labels, np.int64)


def _center_crop(pixels: np.ndarray, name: str) -> np.ndarray:
    """The central CROP x CROP window; for 227x227 inputs that is pixels 1..224 on both axes."""
    h, w = pixels.shape[:2]
    if h < CROP or w < CROP:
        raise ConfigError(f"image {name} is {w}x{h}, smaller than the {CROP}x{CROP} crop")
    top, left = (h - CROP) // 2, (w - CROP) // 2
    return pixels[top : top + CROP, left : left + CROP]


@functools.cache
def _images(root: Path) -> LabelledImages:
    folder = data_file(root, FOLDER)
    files, labels = _parse_list(data_file(root, FOLDER, LIST_FILE))

    def decode(i: int) -> np.ndarray:
        path = folder / files[i]
        if not path.is_file():
            raise ConfigError(f"missing data file {path} (listed in {folder / LIST_FILE})")
        return _center_crop(decode_rgb(path.read_bytes(), str(path)), str(path))

    return LabelledImages(f"{folder}", labels, (CROP, CROP, 3), decode)


def imagenet_images(root: str | os.PathLike | None = None) -> LabelledImages:
    """The process-wide lazily decoded image set of `root` (default `$QV2C_DATA`)."""
    return _images(data_root(root))


def imagenet_labels(root: str | os.PathLike | None = None) -> np.ndarray:
    """All labels (int64, 0..999) in `dataset.txt` order, without decoding any image."""
    return imagenet_images(root).labels


def imagenet_pixels(
    root: str | os.PathLike | None = None, indices: Indices = None, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Cropped uint8 RGB pixels `[N, 224, 224, 3]` and int64 labels `[N]`, before any normalization."""
    return imagenet_images(root).load(indices, limit, lambda pixels: pixels)


def load_imagenet(
    root: str | os.PathLike | None = None,
    indices: Indices = None,
    preprocess: str | Normalization = "squeezenet",
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed float32 inputs `[N, 3, 224, 224]` and int64 labels `[N]` (0..999).

    `indices` picks images (None = all 1300, a slice, or integers); `limit` keeps the first
    `limit` of those. `preprocess` is "squeezenet" or "mobilenetv2" (see `PRESETS`).
    All 1300 images as float32 take 780 MB: prefer `iter_imagenet_batches` for full runs.
    """
    return imagenet_images(root).load(indices, limit, get_preprocess(preprocess))


def iter_imagenet_batches(
    root: str | os.PathLike | None = None,
    indices: Indices = None,
    preprocess: str | Normalization = "squeezenet",
    batch_size: int = 50,
    limit: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Like `load_imagenet`, but yields `(inputs, labels)` batches of at most `batch_size` images."""
    return imagenet_images(root).iter_batches(indices, limit, get_preprocess(preprocess), batch_size)
