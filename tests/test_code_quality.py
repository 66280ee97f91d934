"""src/ passes ruff's lint and format checks and mypy's type checks, as configured in pyproject.toml.

The tools come with the `test` extra; a missing one fails here rather than skipping, since the
project's own set-up installs it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("command", [("ruff", "check", "src"), ("ruff", "format", "--check", "src"), ("mypy",)],
                         ids=["ruff-lint", "ruff-format", "mypy"])
def test_src_is_clean(command):
    proc = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(command)} found problems:\n{proc.stdout}{proc.stderr}"
