#!/usr/bin/env bash
# The unit suite on other Python versions, each in its own virtualenv (.venv-3.12, ...).
#
#   scripts/test_versions.sh 3.12 3.13
#
# The interpreter is python3.X on PATH, else pyenv's newest 3.X. A version that cannot be
# found fails the run under CI (CI=true) and is skipped with a warning elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
find_python() {  # find_python 3.X: an interpreter that runs (a pyenv shim may not)
  local candidate
  for candidate in "python$1" \
      $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$1".*/bin/python 2>/dev/null | sort -rV); do
    if "$candidate" -c 'import sys' >/dev/null 2>&1; then command -v "$candidate"; return 0; fi
  done
  return 1
}
rc=0
for version in "$@"; do
  venv=".venv-$version"
  python="$(find_python "$version" || true)"
  if [ -z "$python" ]; then
    if [ "${CI:-}" = true ]; then echo "[versions] error: no Python $version found" >&2; rc=1
    else echo "[versions] warning: no Python $version found; skipped" >&2; fi
    continue
  fi
  if [ ! -f "$venv/.installed" ] || [ pyproject.toml -nt "$venv/.installed" ]; then
    PYTHON="$python" scripts/install.sh "$venv" unit  # one pip run: shopstream + test tools
    touch "$venv/.installed"
  fi
  echo "[versions] unit suite on $("$venv/bin/python" --version)" >&2
  "$venv/bin/python" -m pytest -q -p no:cacheprovider -m "not integration and not chaos" \
    -n "${SHOPSTREAM_TEST_CPUS:-auto}" \
    tests/unit streams models examples || rc=1
done
exit $rc
