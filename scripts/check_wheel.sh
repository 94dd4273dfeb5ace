#!/usr/bin/env bash
# Build the wheel (python -m build) and install it into a throwaway virtualenv, as the runbook's
# installation does: the command runs, the deployment examples (config/) and docs are in
# <venv>/share/orion-etl/, the shipped example configuration is valid and the migrations are
# inside the package. Needs network or a pip cache for the dependencies (like scripts/bootstrap.sh).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
.venv/bin/python -m build --wheel --outdir "$work/dist" . >"$work/build.log" 2>&1 \
  || { tail -20 "$work/build.log" >&2; echo "wheel build failed" >&2; exit 1; }
wheel="$(ls "$work"/dist/orion_etl-*.whl)"
"${PYTHON:-python3}" -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$wheel"
share="$work/venv/share/orion-etl"
for f in config/orion-etl.example.toml config/orion-etl.compose.toml config/crontab \
  config/logrotate/orion-etl config/systemd/orion-etl-stream.service \
  config/systemd/orion-etl-stream@.service config/docker-compose.yml docs/operations.md; do
  [ -f "$share/$f" ] || { echo "missing from the wheel: share/orion-etl/$f" >&2; exit 1; }
done
cd "$work"  # nothing from the checkout on the path
env -u ORION_ETL_CONFIG "$work/venv/bin/orion-etl" --config "$share/config/orion-etl.example.toml" config check
"$work/venv/bin/python" - <<'PY'
import importlib.resources
sql = importlib.resources.files("orion_etl") / "_sql" / "warehouse"
names = [p.name for p in sql.iterdir() if p.name.startswith("V")]
assert names, "migrations missing from the wheel"
print(f"wheel OK: {len(names)} warehouse migrations inside, examples and docs in share/orion-etl/")
PY
