#!/usr/bin/env bash
# Create .venv (if missing) and install orion-etl with its development extras into it.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "orion-etl needs Python >= 3.11")'
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
# promtool checks the shipped Prometheus alert rules in the tests (tests/unit/test_monitoring.py).
scripts/promtool.sh || echo "warning: no promtool; tests/unit/test_monitoring.py will fail" >&2
