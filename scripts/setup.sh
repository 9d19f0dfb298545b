#!/usr/bin/env bash
# One-step setup on a fresh Debian machine: system packages (Mesa lavapipe, Chromium), then npm dependencies.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-system.sh
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci
fi
# The packages' compiled output (dist/), which the benchmarks and the CLI import. Incremental: fast when current.
npm run build --silent
