#!/usr/bin/env bash
# Creates .venv and installs nasforge into it. torch==2.13.0 goes in first: on this kind of machine
# pip finds that CPU build on local disk, whereas a bare `torch` requirement would pull a multi-GB
# CUDA build. The package itself only asks for torch>=2.2, which the pinned build satisfies.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install --quiet "torch==2.13.0"
if [ -n "$extras" ]; then
  .venv/bin/python -m pip install --quiet -e ".[$extras]"
else
  .venv/bin/python -m pip install --quiet -e .
fi
