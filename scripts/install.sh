#!/usr/bin/env bash
# Create a virtualenv and install shopstream (editable) into it.
#
#   scripts/install.sh VENV run   what running needs (make demo, make worker): no dev tools
#   scripts/install.sh VENV unit  + the test tools (pytest, ruff, mypy, ...): the unit suite
#                                 (scripts/test_versions.sh)
#   scripts/install.sh VENV dev   + Debian's chromium (dashboard browser test) and promtool
#                                 (alert rules): everything `make test` runs
#
# Packages are not byte-compiled at install (--no-compile): Python compiles the modules it
# imports on first use. `pip install -e .[dev]` into a new 3.13 venv from pip's cache took
# 35 s of CPU without compiling, 56 s with (numpy, scipy, river, ... compiled up front).
#
# Python 3.11, 3.12 or 3.13: $PYTHON if set, else the first of python3.11, python3.12,
# python3.13, python3 found on PATH.
set -euo pipefail
VENV="${1:-.venv}"
KIND="${2:-dev}"
if [ -z "${PYTHON:-}" ]; then
  for candidate in python3.11 python3.12 python3.13 python3; do  # one that runs (pyenv shims)
    if "$candidate" -c 'import sys' >/dev/null 2>&1; then PYTHON="$candidate"; break; fi
  done
fi
"$PYTHON" -c 'import sys; assert (3, 11) <= sys.version_info[:2] <= (3, 13)' 2>/dev/null \
  || { echo "[install] error: Python 3.11, 3.12 or 3.13 is required (set PYTHON=...)" >&2; exit 1; }
if [ ! -x "$VENV/bin/python" ]; then
  echo "[install] creating $VENV ($("$PYTHON" --version))" >&2
  "$PYTHON" -m venv "$VENV"
fi
# The pip a venv brings (23.x with 3.11, 24.x with 3.13) installs editable pyproject
# projects: upgrade only an older one (an upgrade is a network round trip, ~10 s).
"$VENV/bin/python" -c 'import pip, sys; sys.exit(int(pip.__version__.split(".")[0]) < 23)' \
  || "$VENV/bin/python" -m pip install -q --upgrade pip
case "$KIND" in
  run)
    echo "[install] installing shopstream and what it needs to run into $VENV" >&2
    "$VENV/bin/python" -m pip install -q --no-compile -e .
    exit 0 ;;
  unit|dev)
    echo "[install] installing shopstream with its test and lint tools into $VENV" >&2
    "$VENV/bin/python" -m pip install -q --no-compile -e ".[dev]"
    [ "$KIND" = dev ] || exit 0 ;;
  *) echo "[install] error: unknown kind '$KIND' (run, unit or dev)" >&2; exit 2 ;;
esac

apt_install() {  # apt_install PACKAGE WHY
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "[install] installing $1 from Debian packages ($2)" >&2
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$1" >/dev/null
}
# The dashboard's browser test drives Debian's Chromium with Playwright (a test tool's own
# browser download does not work on closed networks).
if [ ! -x /usr/bin/chromium ]; then
  apt_install chromium "dashboard browser test" \
    || echo "[install] warning: could not install chromium; the dashboard browser test will fail" >&2
fi
# promtool (Debian's prometheus package) checks deploy/prometheus/alerts.yml in a test.
if ! command -v promtool >/dev/null; then
  apt_install prometheus "promtool checks the alert rules" \
    || echo "[install] warning: could not install prometheus; the alert-rules test will fail" >&2
fi
