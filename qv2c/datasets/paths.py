"""Where the shared data lives: the data root and the files under it.

The labelled images and the evaluated models sit in one read-only folder (the
"shared data" folder, see its README.md). Code and tests find it through an explicit
`root` argument or the `QV2C_DATA` environment variable, so nothing hard-codes a path.
Every failure is a one-line `ConfigError` that names the path and says what to set.
"""

from __future__ import annotations

import os
from pathlib import Path

from qv2c.errors import ConfigError

#: Environment variable naming the shared data folder.
ENV_VAR = "QV2C_DATA"
_HINT = f"set {ENV_VAR}=/path/to/shared/data"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The absolute data root: `root` if given, else `$QV2C_DATA`; it must be an existing folder."""
    if root is None:
        root = os.environ.get(ENV_VAR) or None
    if root is None:
        raise ConfigError(f"no data root given: pass root=... or {_HINT}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise ConfigError(f"data root {path} is not an existing folder; {_HINT}")
    return path.resolve()


def data_file(root: str | os.PathLike | None, *parts: str) -> Path:
    """`<data root>/<parts...>`, which must exist (file or folder)."""
    path = data_root(root).joinpath(*parts)
    if not path.exists():
        raise ConfigError(f"missing data file {path}; {_HINT} (the folder holding {parts[0]}/)")
    return path
