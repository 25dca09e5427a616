"""`model.save` / `qv2c.load`: a saved model runs bit-identically without the ONNX file or calibration data,
and a damaged, foreign or newer-format file is one `SavedModelError` line, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from quant_models import images, small_cnn

import qv2c
from qv2c.datasets import load_eval_set, model_path, spread_indices
from qv2c.errors import SavedModelError
from qv2c.saved import IR_MEMBER, MANIFEST


def _same_bits(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return list(a) == list(b) and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes() for k in a)


def _assert_round_trip(model, loaded, x) -> None:
    assert loaded.ir == model.ir
    assert loaded.precision == model.precision
    assert loaded.scheme == model.scheme and loaded.ranges == model.ranges
    assert (loaded.sensitivity is None) == (model.sensitivity is None)
    if model.sensitivity is not None:
        assert loaded.sensitivity.table() == model.sensitivity.table()
        assert loaded.sensitivity.records == model.sensitivity.records
    assert loaded.input_names == model.input_names
    assert _same_bits(loaded.run(x), model.run(x))


def _data():
    if "QV2C_DATA" not in os.environ:
        pytest.fail("set QV2C_DATA to the shared data folder to run the saved-model tests")


ZOO = ["cifar10_resnet18v1", "cifar10_resnet50v1", "cifar10_squeezenet1_1", "cifar10_vgg16", "cifar10_mobilenetv2"]


@pytest.mark.parametrize("name", ZOO)
def test_zoo_models_round_trip_bit_identically(name, tmp_path):
    """Reference backend, where outputs are the IR's own numbers: fp32, full int8 and mixed (k = 2)."""
    _data()
    calibration, _ = load_eval_set(name, split="train", indices=spread_indices(name, 4, split="train"))
    x, _ = load_eval_set(name, indices=spread_indices(name, 2))
    common = dict(backend="reference", analysis_backend="reference", batch_size=2)
    for precision, extra in [("fp32", {}), ("int8", {}), ("mixed", {"fp32_layers": 2})]:
        model = qv2c.compile(str(model_path(name)), calibration, precision=precision, **common, **extra)
        path = tmp_path / f"{precision}.qv2c"
        model.save(path)
        loaded = qv2c.load(path)
        assert loaded.backend == "reference"
        _assert_round_trip(model, loaded, x)


def test_numba_backend_round_trip_is_bit_identical(tmp_path):
    _data()
    name = "cifar10_mobilenetv2"
    calibration, _ = load_eval_set(name, split="train", indices=spread_indices(name, 8, split="train"))
    model = qv2c.compile(str(model_path(name)), calibration, fp32_layers=2, batch_size=4)
    model.save(tmp_path / "m.qv2c")
    loaded = qv2c.load(tmp_path / "m.qv2c")
    assert loaded.backend == "numba" and loaded.target == model.target
    _assert_round_trip(model, loaded, calibration[:6])  # a full batch and a padded one


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(path of a saved small mixed model, its bytes, inputs, expected outputs)."""
    model = qv2c.compile(small_cnn(), images(8), fp32_layers=1, backend="reference", analysis_backend="reference")
    path = tmp_path_factory.mktemp("saved") / "small.qv2c"
    model.save(path)
    x = images(2, seed=1)
    return path, path.read_bytes(), x, model.run(x)


def _one_line_error(path) -> str:
    with pytest.raises(SavedModelError) as e:
        qv2c.load(path)
    message = str(e.value)
    assert message and "\n" not in message and str(path) in message
    return message


def _rezip(src: bytes, dst, edit) -> None:
    """Write to `dst` the archive `src` with its members passed through `edit(name, bytes) -> bytes`."""
    import io

    with zipfile.ZipFile(io.BytesIO(src)) as z, zipfile.ZipFile(dst, "w") as out:
        for name in z.namelist():
            out.writestr(name, edit(name, z.read(name)))


def _manifest_edit(**changes):
    def edit(name, data):
        if name != MANIFEST:
            return data
        return json.dumps({**json.loads(data), **changes}).encode()
    return edit


def test_small_model_round_trips(saved, tmp_path):
    path, _, x, want = saved
    assert _same_bits(qv2c.load(path).run(x), want)


@pytest.mark.parametrize("keep", [0, 3, 100, 0.5, -1])
def test_truncated_file_is_one_line(saved, tmp_path, keep):
    _, data, _, _ = saved
    n = int(len(data) * keep) if isinstance(keep, float) else (len(data) + keep if keep < 0 else keep)
    bad = tmp_path / "truncated.qv2c"
    bad.write_bytes(data[:n])
    message = _one_line_error(bad)
    assert "corrupt" in message or "truncated" in message or "not a qv2c model file" in message


def test_flipped_bytes_are_caught_or_harmless(saved, tmp_path):
    """A flipped byte anywhere is a one-line error, or (zip timestamps, padding) changes nothing the model
    computes; one in the middle (the deflated IR) is always caught by the CRC-32."""
    _, data, x, want = saved
    bad = tmp_path / "flipped.qv2c"
    errors = 0
    for pos in sorted({*range(0, len(data), max(1, len(data) // 97)), len(data) // 2, len(data) - 1}):
        flipped = bytearray(data)
        flipped[pos] ^= 0xFF
        bad.write_bytes(bytes(flipped))
        try:
            loaded = qv2c.load(bad)
        except SavedModelError as e:
            assert "\n" not in str(e)
            errors += 1
            if pos == len(data) // 2:
                assert "corrupt" in str(e)
            continue
        assert pos != len(data) // 2
        assert _same_bits(loaded.run(x), want)
    assert errors > 90


def test_changed_ir_fails_its_checksum(saved, tmp_path):
    _, data, _, _ = saved
    bad = tmp_path / "edited.qv2c"
    _rezip(data, bad, lambda name, b: b.replace(b"qv.relu", b"qv.sigmoid") if name == IR_MEMBER else b)
    assert "checksum" in _one_line_error(bad)


def test_newer_format_asks_to_upgrade(saved, tmp_path):
    _, data, _, _ = saved
    bad = tmp_path / "newer.qv2c"
    _rezip(data, bad, _manifest_edit(format_version=99, qv2c_version="9.0"))
    message = _one_line_error(bad)
    assert "newer qv2c" in message and "9.0" in message and "upgrade" in message


@pytest.mark.parametrize("what", ["onnx", "text", "empty", "zip without manifest", "other format", "directory",
                                  "missing", "bad manifest"])
def test_not_a_qv2c_file_is_one_line(saved, tmp_path, what):
    _, data, _, _ = saved
    bad = tmp_path / "bad.qv2c"
    if what == "onnx":
        bad.write_bytes(small_cnn().SerializeToString())
    elif what == "text":
        bad.write_text("hello\n")
    elif what == "empty":
        bad.write_bytes(b"")
    elif what == "zip without manifest":
        with zipfile.ZipFile(bad, "w") as z:
            z.writestr("readme.txt", "hi")
    elif what == "other format":
        _rezip(data, bad, _manifest_edit(format="something-else"))
    elif what == "directory":
        bad.mkdir()
    elif what == "bad manifest":
        _rezip(data, bad, _manifest_edit(precision=[1, 2]))
    message = _one_line_error(bad)
    if what == "bad manifest":
        assert "malformed manifest" in message
    elif what in ("directory", "missing"):
        assert "no such file" in message
    else:
        assert "not a" in message or "corrupt" in message


def test_cli_saves_runs_and_rejects_a_corrupt_file(tmp_path):
    """`qv2c-run MODEL --save F --export-onnx G`, then `qv2c-run F` in a fresh process; a corrupt F is exit
    code 2, one line."""
    _data()
    from qv2c.cli import main

    saved = tmp_path / "zoo.qv2c"
    assert main(["cifar10_squeezenet1_1", "--precision", "int8", "--calibration-count", "8", "--eval-count", "0",
                 "--runs", "0", "--backend", "reference", "--analysis-backend", "reference",
                 "--save", str(saved), "--export-onnx", str(tmp_path / "zoo.onnx")]) == 0
    import onnx

    onnx.checker.check_model(onnx.load(str(tmp_path / "zoo.onnx")))
    run = [sys.executable, "-m", "qv2c.cli"]
    out = subprocess.run([*run, str(saved), "--backend", "reference", "--runs", "1"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "loaded" in out.stdout and "int8, 0 fp32" in out.stdout and "latency of one batch of 1" in out.stdout
    bad = tmp_path / "corrupt.qv2c"
    bad.write_bytes(saved.read_bytes()[:-200])
    out = subprocess.run([*run, str(bad)], capture_output=True, text=True, timeout=300)
    err = out.stderr.strip()
    assert out.returncode == 2 and err.startswith("qv2c-run: error:") and "\n" not in err and str(bad) in err
