"""Tests of qv2c.datasets: counts, labels, preprocessing numbers, errors, and accuracy parity.

The parity tests run the reference ONNX models with onnxruntime over whole evaluation
sets and must reproduce the top-1 numbers in the data folders' READMEs; that pins the
crop, the channel order, the normalization and the label order exactly.
They need the shared data folder: with QV2C_DATA unset they fail (CI sets it).
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from qv2c.datasets import (
    CIFAR10_CLASSES,
    ENV_VAR,
    MODELS,
    cifar10_labels,
    imagenet_labels,
    iter_eval_batches,
    load_cifar10,
    load_eval_set,
    load_imagenet,
    model_info,
    model_path,
    top1,
)
from qv2c.errors import ConfigError, InputError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.247, 0.2435, 0.2616)


def _root() -> Path:
    """The shared data folder; called in each test body so that an unset QV2C_DATA is a test FAILURE, not an error."""
    value = os.environ.get(ENV_VAR)
    if not value:
        pytest.fail(f"{ENV_VAR} is not set: export {ENV_VAR}=/path/to/shared/data to run the dataset tests")
    return Path(value)


# ---------------------------------------------------------------- counts and labels


def test_imagenet_count_and_labels():
    root = _root()
    labels = imagenet_labels(root)
    assert labels.dtype == np.int64 and labels.shape == (1300,)
    assert labels.min() >= 0 and labels.max() <= 999
    assert len(np.unique(labels)) == 725  # the README: 725 of the 1000 classes appear
    first = (root / "imagenet_val_1300" / "dataset.txt").read_text().splitlines()[0]
    assert labels[0] == int(first.split(",")[1])


def test_cifar10_test_counts():
    root = _root()
    labels = cifar10_labels("test", root)
    assert labels.shape == (10000,) and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [1000] * 10
    assert np.all(np.diff(labels) >= 0)  # sorted file names: class folders in CLASSES order


def test_cifar10_train_slice():
    root = _root()
    x, labels = load_cifar10("train", root, indices=slice(0, None, 5000))
    assert labels.tolist() == list(range(10))  # 5000 images per class, in class order
    assert x.shape == (10, 3, 32, 32) and x.dtype == np.float32 and x.flags.c_contiguous
    assert len(cifar10_labels("train", root)) == 50000
    _, first3 = load_cifar10("train", root, indices=[49999, -50000, 5000], limit=2)
    assert first3.tolist() == [9, 0]


# ---------------------------------------------------------------- preprocessing against hand computation


def _by_hand(pixels: np.ndarray, divisor: float, mean, std) -> np.ndarray:
    """(x / divisor - mean) / std per channel in float64, HWC -> CHW, written out without the library."""
    out = np.empty((3, *pixels.shape[:2]))
    for c in range(3):
        out[c] = (pixels[:, :, c].astype(np.float64) / divisor - mean[c]) / std[c]
    return out


@pytest.mark.parametrize("preprocess", ["squeezenet", "mobilenetv2"])
def test_imagenet_preprocessing_by_hand(preprocess):
    root = _root()
    i = 7
    line = (root / "imagenet_val_1300" / "dataset.txt").read_text().splitlines()[i]
    raw = np.asarray(Image.open(root / "imagenet_val_1300" / line.split(",")[0]).convert("RGB"))
    assert raw.shape == (227, 227, 3)
    x, labels = load_imagenet(root, indices=[i], preprocess=preprocess)
    assert x.shape == (1, 3, 224, 224) and x.dtype == np.float32 and x.flags.c_contiguous
    assert labels.dtype == np.int64 and labels.tolist() == [int(line.split(",")[1])]
    if preprocess == "squeezenet":
        expected = _by_hand(raw[1:225, 1:225], 255.0, IMAGENET_MEAN, IMAGENET_STD)  # crop = pixels 1..224
    else:
        expected = raw[1:225, 1:225].transpose(2, 0, 1) / 127.5 - 1.0
    np.testing.assert_allclose(x[0], expected, rtol=0, atol=2e-6)
    assert x[0, 1, 10, 20] == pytest.approx(expected[1, 10, 20], abs=2e-6)  # channel order R, G, B


def test_cifar10_preprocessing_by_hand():
    root = _root()
    with zipfile.ZipFile(root / "cifar10_jpeg" / "cifar10_test_jpeg.zip") as z:
        raw = np.asarray(Image.open(io.BytesIO(z.read("test/cat/0007.jpg"))).convert("RGB"))
    x, labels = load_cifar10("test", root, indices=[CIFAR10_CLASSES.index("cat") * 1000 + 7])
    assert labels.tolist() == [3] and x.shape == (1, 3, 32, 32) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], _by_hand(raw, 255.0, CIFAR_MEAN, CIFAR_STD), rtol=0, atol=2e-6)


@settings(max_examples=25, deadline=None)
@given(
    st.one_of(
        st.lists(st.integers(-10000, 9999), max_size=6),
        st.builds(
            slice,
            st.integers(-10000, 10000) | st.none(),
            st.integers(-10000, 10000) | st.none(),
            st.integers(1, 3000) | st.integers(-3000, -1) | st.none(),
        ),
    ),
    st.integers(0, 5) | st.none(),
)
def test_indices_follow_numpy_rules(indices, limit):
    root = _root()
    x, labels = load_cifar10("test", root, indices=indices, limit=limit)
    expected = np.arange(10000)[indices if isinstance(indices, slice) else np.asarray(indices, np.int64)]
    expected = expected[:limit]
    assert labels.tolist() == cifar10_labels("test", root)[expected].tolist()
    assert x.shape == (len(expected), 3, 32, 32)


# ---------------------------------------------------------------- errors


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_missing_root_names_the_env_var(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(ConfigError) as e:
        load_imagenet(indices=[0])
    assert "QV2C_DATA=/path/to/shared/data" in _one_line(e)
    with pytest.raises(ConfigError, match="QV2C_DATA"):
        model_path("squeezenet1.1")


def test_nonexistent_root_and_missing_files(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_cifar10("test", tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in _one_line(e)
    (tmp_path / "imagenet_val_1300").mkdir()
    with pytest.raises(ConfigError) as e:
        load_imagenet(tmp_path)
    assert str(tmp_path / "imagenet_val_1300" / "dataset.txt") in _one_line(e)
    with pytest.raises(ConfigError) as e:
        load_cifar10("train", tmp_path)
    assert str(tmp_path / "cifar10_jpeg" / "cifar10_train_jpeg.zip") in _one_line(e)
    with pytest.raises(ConfigError) as e:
        model_path("cifar10_vgg16", tmp_path)
    assert str(tmp_path / "cifar10_zoo" / "vgg16.onnx") in _one_line(e)


def test_missing_image_and_bad_list_line(tmp_path):
    folder = tmp_path / "imagenet_val_1300"
    folder.mkdir()
    (folder / "dataset.txt").write_text("./data/a.JPEG, 3\n")
    labels = imagenet_labels(tmp_path)  # the list alone is fine until an image is decoded
    assert labels.tolist() == [3]
    with pytest.raises(ConfigError) as e:
        load_imagenet(tmp_path)
    assert "a.JPEG" in _one_line(e)
    bad = tmp_path / "bad"
    (bad / "imagenet_val_1300").mkdir(parents=True)
    (bad / "imagenet_val_1300" / "dataset.txt").write_text("./data/a.JPEG, 1000\n")
    with pytest.raises(ConfigError, match=r"dataset.txt:1"):
        imagenet_labels(bad)


def test_bad_arguments():
    root = _root()
    with pytest.raises(ConfigError, match="out of range"):
        load_cifar10("test", root, indices=[10000])
    with pytest.raises(ConfigError, match="split"):
        load_cifar10("valid", root)
    with pytest.raises(ConfigError, match="preprocess"):
        load_imagenet(root, indices=[0], preprocess="resnet")
    with pytest.raises(ConfigError, match="batch_size"):
        iter_eval_batches("cifar10_vgg16", root, batch_size=0)
    with pytest.raises(ConfigError, match="splits"):
        load_eval_set("squeezenet1.1", root, split="test")
    with pytest.raises(ConfigError, match="known models"):
        model_info("resnet18v1")


# ---------------------------------------------------------------- registry and top1


def test_registry_files_exist():
    root = _root()
    assert len(MODELS) == 12
    for name, info in MODELS.items():
        assert info.name == name
        assert model_path(name, root).is_file()
        assert info.dataset in ("imagenet", "cifar10")
    assert MODELS["mobilenetv2"].label_offset == 1 and MODELS["mobilenetv2"].num_classes == 1001
    with pytest.raises(AttributeError):
        MODELS["squeezenet1.1"].label_offset = 1  # frozen


def test_top1():
    logits = np.array([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0], [0.0, 0.0, 5.0], [1.0, 0.0, 0.0]])
    assert top1(logits, np.array([1, 0, 2, 1])) == 75.0
    assert top1(logits, np.array([0, -1, 1, 0]), label_offset=1) == 75.0
    with pytest.raises(InputError):
        top1(logits, np.array([1, 0]))


# ---------------------------------------------------------------- parity with the READMEs (onnxruntime)


def _ort_session(path: Path):
    import onnxruntime as ort  # a test dependency: missing it must fail, not skip

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    # no busy-waiting between ops: the 2 cores are shared, and spinning threads tripled the run time
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _evaluate(name: str, root: Path, per_image: bool) -> tuple[float, int]:
    """Top-1 (percent) and image count of model `name` on its whole evaluation set."""
    session = _ort_session(model_path(name, root))
    logits, labels = [], []
    for x, y in iter_eval_batches(name, root, batch_size=50 if per_image else 1000):
        # the ImageNet ONNX files have a fixed batch of 1
        batches = np.split(x, len(x)) if per_image else [x]
        logits.extend(session.run(None, {"input": b})[0] for b in batches)
        labels.append(y)
    logits, labels = np.concatenate(logits), np.concatenate(labels)
    assert logits.shape[1] == MODELS[name].num_classes
    return top1(logits, labels, MODELS[name].label_offset), len(labels)


@pytest.mark.slow
@pytest.mark.parametrize("name, expected", [("squeezenet1.1", 69.8), ("mobilenetv2", 79.8)])
def test_imagenet_accuracy_matches_readme(name, expected):
    root = _root()
    accuracy, count = _evaluate(name, root, per_image=True)
    assert count == 1300
    assert accuracy == pytest.approx(expected, abs=0.1)


@pytest.mark.slow
def test_cifar10_resnet18_accuracy_matches_readme():
    root = _root()
    accuracy, count = _evaluate("cifar10_resnet18v1", root, per_image=False)
    assert count == 10000
    assert accuracy == pytest.approx(85.23, abs=0.005)  # exactly 8523 of 10000
