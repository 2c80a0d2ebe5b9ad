#!/usr/bin/env bash
# Create the virtualenv and install shopstream (editable) with its dev tools.
set -euo pipefail
VENV="${1:-.venv}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "shopstream needs Python 3.11"' \
  || { echo "[install] error: Python 3.11 is required (set PYTHON=...)" >&2; exit 1; }
if [ ! -x "$VENV/bin/python" ]; then
  echo "[install] creating $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
echo "[install] installing shopstream and its dependencies into $VENV" >&2
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[dev]"
