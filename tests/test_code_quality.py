"""src/ passes ruff's lint and format checks and mypy's type checks, as configured in pyproject.toml.

The tools come with the `test` extra; a missing one fails here rather than skipping, since the
project's own set-up installs it.
"""

from __future__ import annotations

import ast
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


#: nasforge's parts from the bottom up: a module may import only parts of a lower rank (its own part too).
#: Architectures are values below the networks, networks below the spaces that build them, spaces below
#: the strategies and evaluators that use them, and so on up to the CLI.
LAYERS = {
    "errors": 0, "__init__": 1, "registry": 1, "nn": 1, "arch": 1, "data": 1,
    "models": 2,
    "deploy": 3, "spaces": 3,
    "profile": 4, "strategies": 4,
    "evaluators": 5,
    "experiment": 6,
    "benchmarking": 7, "export": 7, "scaling": 7, "report": 7,
    "train": 8,
    "pipeline": 9,
    "cli": 10,
}


def _imports() -> list[tuple[str, str, str]]:
    """(importing part, imported part, where) for every nasforge import in src/, function-level ones too."""
    found = []
    for path in sorted((ROOT / "src" / "nasforge").rglob("*.py")):
        parts = path.relative_to(ROOT / "src").with_suffix("").parts
        source = parts[1] if len(parts) > 1 else "__init__"
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                if name.split(".")[0] == "nasforge":
                    target = name.split(".")[1] if "." in name else "__init__"
                    found.append((source.removesuffix(".py"), target, f"{path.relative_to(ROOT)}:{node.lineno}"))
    return found


def test_imports_point_down_the_layers():
    imports = _imports()
    assert len(imports) > 100  # the walk found the package
    unknown = sorted({part for s, t, _ in imports for part in (s, t)} - set(LAYERS))
    assert not unknown, f"parts without a layer: {unknown}"
    upward = [f"{where}: {s} imports {t}" for s, t, where in imports if s != t and LAYERS[t] >= LAYERS[s]]
    assert not upward, "imports against the layering:\n" + "\n".join(upward)
