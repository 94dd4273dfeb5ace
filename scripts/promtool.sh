#!/usr/bin/env bash
# Make Prometheus' promtool available as .venv/bin/promtool (the tests check the shipped alert rules
# with it). Uses a promtool on PATH if there is one; otherwise extracts it from Debian's
# `prometheus` package (apt-get download + dpkg-deb: no root, no daemon installed or started).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="$REPO/.venv/bin/promtool"
if [ -x "$TARGET" ]; then
  exit 0
fi
if command -v promtool >/dev/null 2>&1; then
  ln -sf "$(command -v promtool)" "$TARGET"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
  echo "promtool not found: install Prometheus' promtool (e.g. apt-get install prometheus)" >&2
  exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if ! (cd "$work" && apt-get download prometheus >/dev/null 2>&1); then
  (apt-get update -qq >/dev/null 2>&1 || true)
  (cd "$work" && apt-get download prometheus >/dev/null 2>&1) || {
    echo "could not download Debian's prometheus package for promtool" >&2
    exit 1
  }
fi
dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
install -m 0755 "$work/root/usr/bin/promtool" "$TARGET"
"$TARGET" --version | head -1
