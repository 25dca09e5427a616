"""Per-model input normalization: uint8 RGB NHWC pixels -> float32 NCHW tensors.

Every model we evaluate expects `(x / divisor - mean) / std` per channel, computed in
float32; only the constants differ. Naming the presets keeps the numbers in one place,
so the ImageNet loader, the CIFAR-10 loader and the model registry cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qv2c.errors import ConfigError


@dataclass(frozen=True)
class Normalization:
    """`(x / divisor - mean[c]) / std[c]` per RGB channel, output NCHW float32."""

    name: str
    divisor: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Normalize uint8 `[N, H, W, 3]` pixels into a C-contiguous float32 `[N, 3, H, W]` array."""
        x = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)).astype(np.float32)
        x /= np.float32(self.divisor)
        x -= np.asarray(self.mean, np.float32).reshape(1, 3, 1, 1)
        x /= np.asarray(self.std, np.float32).reshape(1, 3, 1, 1)
        return x


#: Named presets. "squeezenet": torchvision-style ImageNet normalization (ONNX Model Zoo SqueezeNet 1.1);
#: "mobilenetv2": TensorFlow style x / 127.5 - 1; "cifar10": the cifar10_zoo training normalization.
PRESETS: dict[str, Normalization] = {
    p.name: p
    for p in (
        Normalization("squeezenet", 255.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        Normalization("mobilenetv2", 127.5, (1.0, 1.0, 1.0), (1.0, 1.0, 1.0)),
        Normalization("cifar10", 255.0, (0.4914, 0.4822, 0.4465), (0.247, 0.2435, 0.2616)),
    )
}


def get_preprocess(preprocess: str | Normalization) -> Normalization:
    """The `Normalization` named by `preprocess` (or `preprocess` itself if it already is one)."""
    if isinstance(preprocess, Normalization):
        return preprocess
    try:
        return PRESETS[preprocess]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown preprocess {preprocess!r}; choose one of {sorted(PRESETS)}") from None
