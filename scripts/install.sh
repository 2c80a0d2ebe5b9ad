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

# The dashboard's browser test drives Debian's Chromium with Playwright (a test tool's own
# browser download does not work on closed networks).
if [ ! -x /usr/bin/chromium ]; then
  echo "[install] installing chromium from Debian packages (dashboard browser test)" >&2
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null \
    || echo "[install] warning: could not install chromium; the dashboard browser test will fail" >&2
fi
