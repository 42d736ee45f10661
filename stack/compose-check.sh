#!/usr/bin/env bash
# Load compose.yaml with Docker Compose's own loader (compose-go, via ../shared/tools/composecheck)
# so a file `docker compose up` would refuse never lands, on a machine with no Docker engine.
# The checker is built with the machine's Go into the git-ignored .stack/bin. Where the checker's
# source or Go is missing (a user's clone), the check is skipped with a message, except in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
src=../shared/tools/composecheck
bin=.stack/bin/composecheck
if [ ! -x "$bin" ] || [ "$src/main.go" -nt "$bin" ]; then
  if [ ! -f "$src/main.go" ] || ! command -v go >/dev/null 2>&1; then
    msg="compose check skipped: needs Go and $src (Compose's own loader)"
    if [ -n "${CI:-}" ]; then echo "$msg" >&2; exit 1; fi
    echo "$msg"; exit 0
  fi
  mkdir -p .stack/bin
  GOTOOLCHAIN=local go build -C "$src" -trimpath -o "$PWD/$bin" .
fi
out=$("$bin" compose.yaml) || { echo "$out"; exit 1; }
echo "$out" | head -n 1
echo "$out" | grep '^warnings' || true
if ! echo "$out" | grep -q '^warnings: none'; then echo "$out"; exit 1; fi
