#!/usr/bin/env bash
# The main job on the local stack: bring the stack up, migrate both databases, show their status.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
scripts/bootstrap.sh
scripts/stack.sh up
OE=.venv/bin/orion-etl
$OE config check
$OE db migrate --target all
$OE db status --target all
