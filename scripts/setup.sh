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
# `scripts/setup.sh test`: the report's browser test (tests/test_report_html.py) opens the HTML in a
# headless Chromium, and the diagram tests use Graphviz's `dot` where it exists. Install Debian's
# packages when we can (apt-get, root); quietly, and a failed install never fails the set-up: those
# tests then skip with their reason (diagrams fall back to matplotlib).
case ",$extras," in
  *,test,*)
    if ! { command -v chromium && command -v dot; } >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
        && [ "$(id -u)" = "0" ]; then
      { timeout 900 apt-get update -qq \
          && DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq chromium graphviz; } >/dev/null 2>&1 \
        || echo "setup: could not install chromium/graphviz; the report's browser test will be skipped" >&2
    fi
    ;;
esac
