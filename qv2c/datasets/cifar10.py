"""CIFAR-10 from the JPEG zips in `cifar10_jpeg/` under the data root.

`cifar10_{train,test}_jpeg.zip` hold `<split>/<class>/NNNN.jpg` (32x32 RGB, JPEG q75).
Entries are taken in sorted file-name order and the label is the index of `<class>`
in `CLASSES`, exactly as the cifar10_zoo accuracies were measured, so index i means
the same image everywhere in the project. Images are decoded straight from the zip
bytes (the zips are stored, not compressed), once per process.
"""

from __future__ import annotations

import functools
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from qv2c.datasets.paths import data_file, data_root
from qv2c.datasets.preprocess import Normalization, get_preprocess
from qv2c.datasets.store import Indices, LabelledImages, decode_rgb
from qv2c.errors import ConfigError

FOLDER = "cifar10_jpeg"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SPLITS = ("train", "test")
SIZE = 32


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ConfigError(f"unknown CIFAR-10 split {split!r}; choose one of {SPLITS}")
    return split


@functools.cache
def _images(root: Path, split: str) -> LabelledImages:
    path = data_file(root, FOLDER, f"cifar10_{split}_jpeg.zip")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ConfigError(f"cannot open {path}: {e}; the data folder may be damaged") from None
    names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))
    labels = []
    for name in names:
        parts = name.split("/")
        if len(parts) != 3 or parts[0] != split or parts[1] not in CLASSES:
            raise ConfigError(f"{path}: unexpected entry {name!r}, expected '{split}/<class>/NNNN.jpg'")
        labels.append(CLASSES.index(parts[1]))
    if not names:
        raise ConfigError(f"{path} holds no .jpg entries")

    def decode(i: int) -> np.ndarray:
        where = f"{path}:{names[i]}"
        pixels = decode_rgb(archive.read(names[i]), where)
        if pixels.shape != (SIZE, SIZE, 3):
            raise ConfigError(f"image {where} is {pixels.shape[1]}x{pixels.shape[0]}, expected {SIZE}x{SIZE}")
        return pixels

    return LabelledImages(str(path), np.asarray(labels, np.int64), (SIZE, SIZE, 3), decode)


def cifar10_images(split: str = "test", root: str | os.PathLike | None = None) -> LabelledImages:
    """The process-wide lazily decoded image set of one split under `root` (default `$QV2C_DATA`)."""
    return _images(data_root(root), _check_split(split))


def cifar10_labels(split: str = "test", root: str | os.PathLike | None = None) -> np.ndarray:
    """All labels (int64, 0..9) of a split in sorted file-name order, without decoding any image."""
    return cifar10_images(split, root).labels


def cifar10_pixels(
    split: str = "test", root: str | os.PathLike | None = None, indices: Indices = None, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB pixels `[N, 32, 32, 3]` and int64 labels `[N]`, before any normalization."""
    return cifar10_images(split, root).load(indices, limit, lambda pixels: pixels)


def load_cifar10(
    split: str = "test",
    root: str | os.PathLike | None = None,
    indices: Indices = None,
    limit: int | None = None,
    preprocess: str | Normalization = "cifar10",
) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed float32 inputs `[N, 3, 32, 32]` and int64 labels `[N]` (0..9, `CLASSES` order).

    `indices` picks images (None = the whole split, a slice, or integers); `limit` keeps
    the first `limit` of those. Only the chosen images are decoded.
    """
    return cifar10_images(split, root).load(indices, limit, get_preprocess(preprocess))


def iter_cifar10_batches(
    split: str = "test",
    root: str | os.PathLike | None = None,
    indices: Indices = None,
    limit: int | None = None,
    preprocess: str | Normalization = "cifar10",
    batch_size: int = 500,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Like `load_cifar10`, but yields `(inputs, labels)` batches of at most `batch_size` images."""
    return cifar10_images(split, root).iter_batches(indices, limit, get_preprocess(preprocess), batch_size)
