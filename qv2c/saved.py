"""`model.save(path)` and `qv2c.load(path)`: keep a compiled model in one file.

A saved model is a zip archive of two members, nothing executable and nothing pickled:

    qv2c.json    the manifest: format name and version, the qv2c version that wrote it,
                 input/output names, precision plan, quantization scheme, sensitivity
                 ranking, calibration ranges, backend and kernel target, SHA-256 of the IR
    model.qvir   the final IR in its text form (`qv2c.ir.printer`), constants included
                 (base64 of their little-endian bytes, exact)

Why the IR text and not the generated program: the text form already round-trips
exactly (`print(parse(print(m))) == print(m)`, constants bit for bit), the parser is
safe on hostile input (it builds only IR objects, and the verifier runs after it), and
the kernels are regenerated for whichever CPU loads the file. So `load` needs neither
the ONNX file nor calibration data, and its outputs are bit-identical to the original's
on the same backend and target.

What can go wrong reading a file (missing, not a zip, truncated, a flipped byte caught
by the zip CRC-32 or the IR checksum, an unknown or newer format, a manifest that does
not fit) is one `SavedModelError` line saying what and what to do.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qv2c.errors import QV2CError, SavedModelError

if TYPE_CHECKING:
    from qv2c.api import CompiledModel

FORMAT = "qv2c-compiled-model"
#: bump when a reader of the previous version could misread a new file
FORMAT_VERSION = 1
MANIFEST = "qv2c.json"
IR_MEMBER = "model.qvir"
#: refuse archives whose members claim more than this (a zip bomb is not a model)
MAX_BYTES = 4 << 30


def save(model: CompiledModel, path: str | Path) -> Path:
    """Write `model` to `path` (one zip file; see the module docstring); returns the path."""
    from qv2c import __version__
    from qv2c.ir.printer import print_module

    ir = print_module(model.module)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "qv2c_version": __version__,
        "ir_sha256": hashlib.sha256(ir.encode()).hexdigest(),
        # the printer may rename a value whose name another value shares; feeds and outputs keep theirs
        "inputs": [v.name for v in model.module.inputs],
        "outputs": [v.name for v in model.module.outputs],
        "precision": model.precision,
        "scheme": _scheme_dict(model.scheme),
        "ranking": _ranking_dict(model.sensitivity),
        "ranges": {k: list(v) for k, v in model.ranges.items()} if model.ranges is not None else None,
        "backend": model.backend,
        "target": model.target.name if model.target is not None else None,
    }
    path = Path(path)
    try:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
            z.writestr(IR_MEMBER, ir)
    except OSError as e:
        raise SavedModelError(f"cannot write {path}: {_one_line(e)}") from None
    return path


def load(path: str | Path, backend: str | None = None) -> CompiledModel:
    """The `CompiledModel` saved at `path`, on `backend` ("numba", "reference"; default: the saved one)."""
    from qv2c.api import BACKENDS, CompiledModel
    from qv2c.ir.parser import parse_module

    manifest, ir = _read(Path(path))
    where = f"{path}"
    try:
        module = parse_module(ir)
        module.verify()
    except QV2CError as e:
        raise SavedModelError(f"{where}: the IR inside does not load ({_one_line(e)}); save the model again") from None
    try:
        for v, name in [*zip(module.inputs, manifest["inputs"], strict=True),
                        *zip(module.outputs, manifest["outputs"], strict=True)]:
            v.name = str(name)
        backend = backend or manifest["backend"]
        if backend not in BACKENDS:
            raise SavedModelError(f"backend must be one of {BACKENDS}, not {backend!r}")
        return CompiledModel(
            module, {str(k): str(v) for k, v in manifest["precision"].items()}, _ranking(manifest["ranking"]),
            {str(k): (float(lo), float(hi)) for k, (lo, hi) in manifest["ranges"].items()}
            if manifest["ranges"] is not None else None,
            backend, _target(manifest["target"]), scheme=_scheme(manifest["scheme"]))
    except SavedModelError:
        raise
    except (QV2CError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise SavedModelError(f"{where}: malformed manifest {MANIFEST} ({type(e).__name__}: {_one_line(e)}); "
                              "save the model again") from None


def _read(path: Path) -> tuple[dict[str, Any], str]:
    """(manifest, IR text) of the archive at `path`, checked; `SavedModelError` otherwise."""
    again = "save the model again with model.save(path)"
    if not path.is_file():
        raise SavedModelError(f"{path}: no such file; give the path of a file written by model.save()")
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            if MANIFEST not in names:
                raise SavedModelError(f"{path} is not a qv2c model file (a zip without {MANIFEST}); "
                                      "load a file written by model.save()")
            if sum(i.file_size for i in z.infolist()) > MAX_BYTES:
                raise SavedModelError(f"{path}: members claim more than {MAX_BYTES >> 30} GiB; not a qv2c model file")
            manifest = json.loads(z.read(MANIFEST).decode("utf-8"))
            _check_format(manifest, path)
            if IR_MEMBER not in names:
                raise SavedModelError(f"{path}: the archive lacks {IR_MEMBER}; {again}")
            ir = z.read(IR_MEMBER).decode("utf-8")
    except SavedModelError:
        raise
    except zipfile.BadZipFile as e:
        raise SavedModelError(f"{path} is not a readable qv2c model file (corrupt, truncated or not a zip archive: "
                              f"{_one_line(e)}); {again}") from None
    except (zlib.error, EOFError, UnicodeDecodeError, json.JSONDecodeError, ValueError, KeyError,
            NotImplementedError, OSError) as e:
        raise SavedModelError(f"{path} is corrupt or truncated ({type(e).__name__}: {_one_line(e)}); {again}") from None
    if hashlib.sha256(ir.encode()).hexdigest() != manifest.get("ir_sha256"):
        raise SavedModelError(f"{path} is corrupt: the IR does not match its checksum; {again}")
    return manifest, ir


def _check_format(manifest: Any, path: Path) -> None:
    from qv2c import __version__

    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SavedModelError(f"{path} is not a qv2c model file (its {MANIFEST} names no {FORMAT!r} format); "
                              "load a file written by model.save()")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise SavedModelError(f"{path}: format version {version!r} is not valid; save the model again")
    if version > FORMAT_VERSION:
        raise SavedModelError(f"{path} was written by a newer qv2c ({manifest.get('qv2c_version')}, file format "
                              f"{version}); this qv2c {__version__} reads format {FORMAT_VERSION}: upgrade qv2c")


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _scheme_dict(scheme) -> dict | None:
    if scheme is None:
        return None
    return {"weight_granularity": scheme.weight_granularity, "scale_kind": scheme.scale_kind,
            "activation_dtype": scheme.activation_dtype}


def _scheme(d: dict | None):
    from qv2c.passes.realize_quant import QuantScheme

    return None if d is None else QuantScheme(**d)


def _ranking_dict(ranking) -> dict | None:
    if ranking is None:
        return None
    return {"method": ranking.method, "inferences": ranking.inferences, "seconds": ranking.seconds,
            "records": [{"name": r.name, "op": r.op, "macs": r.macs, "score": r.score, "metrics": r.metrics}
                        for r in ranking.records]}


def _ranking(d: dict | None):
    from qv2c.passes.sensitivity.ranking import LayerRecord, Ranking

    if d is None:
        return None
    records = [LayerRecord(str(r["name"]), str(r["op"]), int(r["macs"]), float(r["score"]),
                           {str(k): float(v) for k, v in r["metrics"].items()}) for r in d["records"]]
    return Ranking(str(d["method"]), records, int(d["inferences"]), float(d["seconds"]))


def _target(name: str | None):
    from qv2c.runtime.kernels.target import host_features, runnable

    return None if name is None else runnable(name, host_features(), "the saved target")
