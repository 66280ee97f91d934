"""Where the shared benchmark data lives.

nasforge never bundles the tabulated benchmarks. They are looked up, in order, in:

1. the folder named by the environment variable ``NASFORGE_DATA`` (if it is set, nothing else is
   tried, so a wrong value is reported rather than silently bypassed);
2. ``../shared/data`` and ``shared/data`` next to the repository root (found from this file);
3. ``../shared/data`` and ``shared/data`` relative to the current directory.

`data_dir()` returns the first folder that exists, or None; `require_data(...)` returns a path
inside it or raises a `DatasetError` that names what was searched and ``NASFORGE_DATA``.
"""

from __future__ import annotations

import os
from pathlib import Path

from nasforge.errors import DatasetError

ENV_VAR = "NASFORGE_DATA"


def _repo_root() -> Path:
    # src/nasforge/data/paths.py -> the repository root is three folders above the package.
    return Path(__file__).resolve().parents[3]


def candidate_dirs() -> list[Path]:
    """Folders that may hold the shared data, most preferred first."""
    env = os.environ.get(ENV_VAR)
    if env:
        return [Path(env).expanduser()]
    out: list[Path] = []
    for base in (_repo_root(), Path.cwd()):
        for rel in ("../shared/data", "shared/data"):
            p = (base / rel).resolve()
            if p not in out:
                out.append(p)
    return out


def data_dir() -> Path | None:
    """The shared data folder, or None when there is none."""
    for p in candidate_dirs():
        if p.is_dir():
            return p
    return None


def data_path(*parts: str) -> Path | None:
    """`data_dir() / parts` if that exists, else None."""
    root = data_dir()
    if root is None:
        return None
    p = root.joinpath(*parts)
    return p if p.exists() else None


def require_data(*parts: str) -> Path:
    """Like `data_path`, but a missing file or folder raises a one-line `DatasetError`."""
    root = data_dir()
    rel = "/".join(parts)
    if root is None:
        env = os.environ.get(ENV_VAR)
        if env:
            raise DatasetError(
                rel or "data", f"{ENV_VAR}={env} is not a folder; point {ENV_VAR} at the shared data folder"
            )
        searched = ", ".join(str(p) for p in candidate_dirs())
        raise DatasetError(
            rel or "data",
            f"no shared data folder found (looked in {searched}); set {ENV_VAR} to the folder that holds it",
        )
    p = root.joinpath(*parts)
    if not p.exists():
        raise DatasetError(
            str(p), f"not found in the shared data folder {root}; set {ENV_VAR} to the folder that holds {rel}"
        )
    return p


__all__ = ["ENV_VAR", "candidate_dirs", "data_dir", "data_path", "require_data"]
