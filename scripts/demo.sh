#!/usr/bin/env bash
# The full demo on the local stack, from a fresh clone:
#   stack up -> migrate -> CDC prepare + Debezium connector -> synthetic activity (source DB + Kafka)
#   -> stream until caught up -> dims sync -> aggregate -> DQ audit -> reconciled summary.
# Options are passed to `orion-etl demo generate` (e.g. scripts/demo.sh --orders 5000).
#
#   scripts/demo.sh --external [generate options]     (or ORION_DEMO_EXTERNAL=1)
# runs against an already-running stack instead of starting the local Java one: Docker Compose
# (ORION_ETL_CONFIG=config/orion-etl.compose.toml) or any remote PostgreSQL/Kafka/Connect named by
# the configuration ($ORION_ETL_CONFIG, ./orion-etl.toml or ORION_ETL_* variables). The source and
# warehouse databases must exist (the compose file creates orion_source and orion_warehouse).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
external="${ORION_DEMO_EXTERNAL:-0}"
args=()
for arg in "$@"; do
  if [ "$arg" = "--external" ]; then external=1; else args+=("$arg"); fi
done
set -- ${args[@]+"${args[@]}"}
scripts/bootstrap.sh
if [ "$external" = "1" ]; then
  echo "demo against an external stack (configuration: ${ORION_ETL_CONFIG:-./orion-etl.toml or defaults}); the local stack is not started"
else
  scripts/stack.sh up
  eval "$(scripts/stack.sh env)"  # point orion-etl at this stack (ports may be overridden)
fi
OE=(.venv/bin/orion-etl --log-format plain)
export ORION_ETL_LOGGING__LEVEL="${ORION_ETL_LOGGING__LEVEL:-WARNING}"
ok_or_warn() { local rc=0; "$@" || rc=$?; [ "$rc" -le 1 ] || exit "$rc"; }
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "configuration and schema"
"${OE[@]}" config check
if [ "$external" = "1" ]; then
  # one clear line per unreachable service before anything is written
  ok_or_warn "${OE[@]}" db status --target all >/dev/null  # 1: migrations pending (applied next)
  "${OE[@]}" connectors list >/dev/null
fi
"${OE[@]}" db migrate --target all

step "CDC: prepare the source and register the Debezium connector"
ok_or_warn "${OE[@]}" cdc prepare
"${OE[@]}" connectors register
ok_or_warn "${OE[@]}" connectors status

step "synthetic trading activity"
"${OE[@]}" demo generate "$@"

step "stream until the warehouse has everything Debezium captured"
deadline=$((SECONDS + 180))
until "${OE[@]}" demo verify --stage facts --format json >/dev/null 2>&1; do
  [ "$SECONDS" -lt "$deadline" ] || { "${OE[@]}" demo verify --stage facts; exit 4; }
  ok_or_warn "${OE[@]}" stream --until-caught-up --format json >/dev/null
done
echo "facts loaded"

step "dimensions (SCD2/SCD1): completes the members the loader inferred"
ok_or_warn "${OE[@]}" dims sync --dimension all
"${OE[@]}" dims check

step "aggregate the demo's trading day"
day="$(python3 -c 'import json;print(json.load(open(".orion-demo/manifest.json"))["day"])')"
"${OE[@]}" aggregate --period daily --date "$day"

step "data-quality audit"
ok_or_warn "${OE[@]}" dq audit

step "summary"
"${OE[@]}" jobs list --limit 8
"${OE[@]}" demo verify
