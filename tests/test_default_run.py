"""`qv2c-run` with no model compares fp32, int8 and mixed on the CNN and images embedded in the
package, with no data folder: the no-argument run as a subprocess, and the embedded sample."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qv2c.default import MODEL, SAMPLE, load_sample
from qv2c.errors import ConfigError


def test_embedded_files_are_small_and_the_sample_is_labelled_cifar10():
    assert MODEL.stat().st_size + SAMPLE.stat().st_size <= 5_000_000
    x, y = load_sample("eval")
    assert x.dtype == np.float32 and x.shape[1:] == (3, 32, 32) and len(x) == len(y) >= 500
    assert set(np.unique(y)) == set(range(10))
    calib, _ = load_sample("calib")
    assert calib.shape[1:] == (3, 32, 32)
    _, few = load_sample("eval", limit=20)  # spread over the class-ordered sample, not 20 airplanes
    assert len(few) == 20 and len(set(few)) == 10


def test_unknown_part_is_a_config_error():
    with pytest.raises(ConfigError, match="parts"):
        load_sample("train")


def test_qv2c_run_without_a_model_prints_the_comparison(tmp_path):
    """The README's main job, from another folder and without QV2C_DATA (kernel caches stay warm)."""
    script = Path(sys.executable).with_name("qv2c-run")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "qv2c"]
    env = {k: v for k, v in os.environ.items() if k != "QV2C_DATA"}
    out = subprocess.run([*command, "--eval-count", "100", "--runs", "2"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for row in ("qv2c fp32", "qv2c int8", "qv2c mixed, 2 fp32", "onnxruntime int8"):
        assert row in text
    assert "100 CIFAR-10 test images" in text
    table = text.split("per-layer sensitivity", 1)[1].splitlines()
    marked = [line for line in table if line.startswith("* ")]
    assert len(marked) == 2 and any(line.startswith("  rank") for line in table)


def test_flags_for_one_compiled_model_need_a_model(capsys):
    from qv2c.cli import main

    assert main(["--save", "out.qv2c", "--show-ir"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("qv2c-run: error: --save, --show-ir need a MODEL") and "\n" not in err
