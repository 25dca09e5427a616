"""The pass registry and `PassManager`: verification after every pass names the
pass that broke the IR, `dump_dir` writes one file per pass, unknown names fail
early with the list of known passes, options reach the pass."""

from __future__ import annotations

import pytest

from qv2c.errors import ConfigError, VerificationError
from qv2c.ir import TensorType, parse
from qv2c.passes import PASSES, PassManager, register_pass, run_pipeline

SMALL = """\
module @small {
  input %x : f32[1,2]
  const %k : f32[2] = [1.0, 2.0]
  const %unused : f32[2] = [3.0, 4.0]
  %kk = qv.mul(%k, %k) : f32[2]
  %y = qv.add(%x, %kk) : f32[1,2]
  %z = qv.reshape(%y) {shape = [1, 2]} : f32[1,2]
  output %z
}
"""


@pytest.fixture
def register():
    """`register_pass` for test-only passes, unregistered again after the test."""
    names: list[str] = []

    def reg(name: str):
        names.append(name)
        return register_pass(name)

    yield reg
    for name in names:
        PASSES.pop(name, None)


def test_verification_names_the_pass_that_broke_the_ir(register):
    @register("test-break-types")
    def run(module):
        """Gives the first op's result a wrong shape."""
        r = module.ops[0].results[0]
        r.type = TensorType((3,), r.type.dtype)

    with pytest.raises(VerificationError, match=r"after pass 'test-break-types' \(pipeline step 2\)"):
        run_pipeline(parse(SMALL), ["dce", "test-break-types", "dce"])
    # without verification the broken IR goes through unnoticed
    PassManager(["test-break-types"], verify_each=False).run(parse(SMALL))


def test_broken_input_is_not_blamed_on_a_pass():
    module = parse(SMALL)
    module.ops[0].results[0].type = TensorType((3,), "f32")
    with pytest.raises(VerificationError, match="before any pass ran"):
        run_pipeline(module, ["dce"])


def test_dump_dir_writes_the_ir_after_each_pass(tmp_path):
    module = parse(SMALL)
    passes = ["fold-constants", "drop-identity", "dce"]
    run_pipeline(module, passes, dump_dir=tmp_path / "dump")
    files = sorted(p.name for p in (tmp_path / "dump").iterdir())
    assert files == ["01-fold-constants.qvir", "02-drop-identity.qvir", "03-dce.qvir"]
    texts = [(tmp_path / "dump" / f).read_text() for f in files]
    assert "const %kk" in texts[0] and "qv.reshape" in texts[0]
    assert "qv.reshape" not in texts[1] and "const %unused" in texts[1]
    assert texts[2] == str(module) and "%unused" not in texts[2]
    for text in texts:
        assert str(parse(text)) == text


def test_unknown_pass_fails_before_any_work_and_lists_known_passes():
    with pytest.raises(ConfigError) as e:
        PassManager(["dce", "fold-batchnrom"])
    message = str(e.value)
    assert "'fold-batchnrom'" in message
    for known in ("canonicalize", "dce", "drop-identity", "fold-batchnorm", "fold-constants"):
        assert known in message


def test_bad_pipeline_entry_is_a_config_error():
    with pytest.raises(ConfigError, match="pass name or"):
        PassManager([("dce", "not a dict")])


def test_options_reach_the_pass_and_class_passes_register(register):
    seen = []

    @register("test-options")
    class Recorder:
        """Records the options it was run with."""

        def __call__(self, module, factor=1):
            seen.append(factor)

    pm = PassManager([("test-options", {"factor": 3}), "test-options"])
    assert pm.names == ["test-options", "test-options"]
    pm.run(parse(SMALL))
    assert seen == [3, 1]
    assert PASSES["test-options"].name == "test-options"


def test_a_name_registers_once(register):
    register("test-twice")(lambda module: None)
    with pytest.raises(ValueError, match="registered twice"):
        register_pass("test-twice")(lambda module: None)
