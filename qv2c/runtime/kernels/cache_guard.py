"""Keep Numba's on-disk kernel cache consistent across the modules of this package.

Numba (`cache=True`) keys a cached function on its own source file only, but the
machine code it stores also contains every njit callee and intrinsic it inlined from
*other* files.  Editing `epilogue.py` or `microkernel.py` would therefore leave
`conv_f32.py`'s cache silently running the old epilogue or micro-kernel.

`invalidate_stale_caches()` (run by `kernels.prepare()` before the first kernel runs) hashes all source files
of the package; when the hash differs from the one recorded next to the cache, it
deletes the package's cache files (`<module>.*.nbi` / `.nbc`), so the next call
recompiles everything consistently.  It looks in every place Numba may put them: the
package's `__pycache__`, `NUMBA_CACHE_DIR` and the user-wide cache directory.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_STAMP_NAME = "qv2c_kernels_sources.sha256"


def sources_digest() -> str:
    """sha256 over the names and contents of the package's .py files."""
    h = hashlib.sha256()
    for path in sorted(_PACKAGE_DIR.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _cache_dirs() -> list[Path]:
    """Directories where Numba may cache functions defined in this package (see numba.core.caching)."""
    from numba.core import config
    from numba.core.caching import _CacheLocator
    from numba.misc.appdirs import AppDirs

    subpath = _CacheLocator.get_suitable_cache_subpath(str(_PACKAGE_DIR / "__init__.py"))
    dirs = [_PACKAGE_DIR / "__pycache__", Path(AppDirs(appname="numba", appauthor=False).user_cache_dir) / subpath]
    if config.CACHE_DIR:
        dirs.append(Path(config.CACHE_DIR) / subpath)
    return dirs


def invalidate_stale_caches() -> None:
    """Delete this package's Numba cache files wherever they were built from other sources."""
    digest = sources_digest()
    modules = {p.stem for p in _PACKAGE_DIR.glob("*.py")}
    for d in _cache_dirs():
        try:
            if (d / _STAMP_NAME).read_text() == digest:
                continue
        except OSError:
            pass
        if d.is_dir():
            _delete_cache_files(d, modules)
        _write_stamp(d, digest)


def _delete_cache_files(d: Path, modules: set[str]) -> None:
    """Remove the .nbi/.nbc files of this package's modules from `d`."""
    for f in d.iterdir():
        if f.suffix in (".nbi", ".nbc") and f.name.split(".", 1)[0] in modules:
            try:
                f.unlink()
            except OSError:
                pass  # another process removed it first


def _write_stamp(d: Path, digest: str) -> None:
    """Record that the cache files in `d` (none yet, or just cleaned) belong to `digest`.  Written also
    when `d` does not exist yet: otherwise the files Numba is about to put there would carry no stamp,
    and the next process would delete them as stale and compile every kernel again."""
    try:
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f"{_STAMP_NAME}.{os.getpid()}"
        tmp.write_text(digest)
        os.replace(tmp, d / _STAMP_NAME)
    except OSError:
        pass  # read-only location: Numba will not cache there either
