"""`qv2c-run`: the README's command works end to end, and bad input is one line on stderr with exit code 2."""

from __future__ import annotations

import os

import numpy as np
import pytest

from qv2c.cli import main


@pytest.fixture(autouse=True)
def _data(monkeypatch, tmp_path):
    if "QV2C_DATA" not in os.environ:
        pytest.fail("set QV2C_DATA to the shared data folder to run the CLI tests")
    monkeypatch.setenv("QV2C_CACHE_DIR", str(tmp_path / "cache"))


def test_named_model_compiles_runs_and_reports(capsys):
    code = main(["cifar10_resnet18v1", "--fp32-layers", "2", "--calibration-count", "16", "--eval-count", "50",
                 "--runs", "3", "--profile", "--show-source"])
    out = capsys.readouterr().out
    assert code == 0
    assert "21 layers: 19 int8, 2 fp32" in out
    assert "def run(b, c):" in out and "conv2d_i8" in out  # the generated program
    assert "latency of one batch of 1: median" in out and "slowest kernels of one run" in out
    assert "top-1 on 50 evaluation images: fp32" in out


@pytest.mark.parametrize("argv, message", [
    (["cifar10_resnet18v1", "--backend", "reference", "--show-source", "--eval-count", "0", "--runs", "0",
      "--precision", "fp32"], "--show-source needs --backend numba"),
    (["no_such_model.onnx", "--precision", "fp32"], "no_such_model.onnx"),
    (["cifar10_resnet18v1", "--keep-fp32", "nope", "--calibration-count", "4", "--eval-count", "0"], "nope"),
])
def test_bad_input_is_one_line_and_exit_code_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("qv2c-run: error:") and message in err and "\n" not in err


def test_onnx_path_needs_calibration_samples(capsys, tmp_path):
    from qv2c.datasets import model_path

    assert main([str(model_path("cifar10_vgg16")), "--precision", "int8"]) == 2
    assert "--calibration" in capsys.readouterr().err
    samples = tmp_path / "calib.npy"
    np.save(samples, np.random.default_rng(0).random((4, 3, 32, 32), dtype=np.float32))
    assert main([str(model_path("cifar10_vgg16")), "--calibration", str(samples), "--precision", "int8",
                 "--runs", "2"]) == 0
    assert "latency of one batch of 1" in capsys.readouterr().out


def test_negative_image_counts_are_one_line_errors(capsys):
    assert main(["cifar10_resnet18v1", "--calibration-count", "-3", "--eval-count", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("qv2c-run: error:") and "positive number of images" in err and "\n" not in err
