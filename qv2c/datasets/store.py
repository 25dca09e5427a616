"""A labelled image set that decodes each image once, on first request, and keeps the pixels.

Evaluation loops touch the same images many times (fp32 run, int8 run, every
mixed-precision candidate). Decoding JPEGs is the slow part, so a `LabelledImages`
decodes an image the first time it is asked for and keeps its uint8 pixels for the
life of the process; asking for a slice decodes only that slice. The loaders keep one
instance per (data root, split) with `functools.cache`.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from qv2c.errors import ConfigError

#: What callers may pass to pick images: None (all), a slice, an int, or a sequence/array of ints.
Indices = slice | int | Sequence[int] | np.ndarray | None


class LabelledImages:
    """`len(labels)` images of one `shape` (H, W, 3), decoded lazily by `decode(i)` and then cached."""

    def __init__(self, what: str, labels: np.ndarray, shape: tuple[int, int, int], decode: Callable[[int], np.ndarray]):
        self.what = what
        self.labels = np.asarray(labels, dtype=np.int64)
        self.labels.setflags(write=False)
        self._decode = decode
        self._pixels = np.empty((len(self.labels), *shape), np.uint8)
        self._decoded = np.zeros(len(self.labels), bool)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, indices: Indices = None, limit: int | None = None) -> np.ndarray:
        """Resolve `indices` (NumPy indexing rules, negatives allowed), then keep the first `limit`."""
        n = len(self)
        if indices is None:
            indices = slice(None)
        elif not isinstance(indices, slice):
            indices = np.asarray(indices)
            if indices.size == 0:
                indices = indices.astype(np.int64)
            if indices.dtype.kind not in "iu":
                raise ConfigError(f"indices into {self.what} must be integers or a slice, got dtype {indices.dtype}")
        try:
            idx = np.atleast_1d(np.arange(n, dtype=np.int64)[indices])
        except IndexError:
            raise ConfigError(f"index out of range for {self.what}, which has {n} images (0..{n - 1})") from None
        if limit is not None:
            if limit < 0:
                raise ConfigError(f"limit must be >= 0, got {limit}")
            idx = idx[:limit]
        return idx

    def pixels(self, idx: np.ndarray) -> np.ndarray:
        """uint8 `[len(idx), H, W, 3]` pixels of the images `idx` (a resolved index array), decoding missing ones."""
        with self._lock:
            for i in np.unique(idx[~self._decoded[idx]]):
                self._pixels[i] = self._decode(int(i))
                self._decoded[i] = True
        return self._pixels[idx]

    def load(
        self, indices: Indices, limit: int | None, normalize: Callable[[np.ndarray], np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """`(normalize(pixels), labels)` of the chosen images, all at once."""
        idx = self.select(indices, limit)
        return normalize(self.pixels(idx)), self.labels[idx]

    def iter_batches(
        self, indices: Indices, limit: int | None, normalize: Callable[[np.ndarray], np.ndarray], batch_size: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """`(normalize(pixels), labels)` of the chosen images in chunks of at most `batch_size`.

        Arguments are checked now; images are decoded only as the batches are consumed.
        """
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        idx = self.select(indices, limit)
        chunks = [idx[start : start + batch_size] for start in range(0, len(idx), batch_size)]
        return ((normalize(self.pixels(chunk)), self.labels[chunk]) for chunk in chunks)


def decode_rgb(data: bytes, name: str) -> np.ndarray:
    """Decode one image file's bytes into uint8 `[H, W, 3]` RGB; `name` is used in the error message."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise ConfigError(f"cannot decode image {name}: {e}; the data folder may be damaged") from None
