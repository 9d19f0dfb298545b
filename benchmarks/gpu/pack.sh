#!/usr/bin/env bash
# Builds .gpucarry/: everything the GPU machine needs to run benchmarks/gpu/run.sh without node or npm there.
#   node.xz        this machine's node binary, stripped and xz-compressed
#   app.tar.xz     node_modules/webgpu with only its linux-x64 dawn.node;
#                  bench.mjs: benchmarks/gpu/bench.ts bundled with @webtune/core and tfjs (esbuild, ESM, Node 20);
#                  kernels.mjs: benchmarks/kernels.ts bundled likewise; manifest.json: commit, date, sizes
#                  (archived, so the repo's eslint and prettier never see loose .mjs or .json files here)
#   *.deb          Debian's Vulkan loader and the GL vendor-neutral dispatch libraries (amd64), unpacked to / on
#                  the GPU machine: NVIDIA's Vulkan driver lives in libGLX_nvidia and needs glvnd to start
#
# By default @webtune/core and benchmarks/kernels.ts are bundled from the committed HEAD (git archive), so the
# run measures the commit it is recorded under; PACK_SOURCES=worktree bundles the working tree instead.
# Usage, from anywhere: bash benchmarks/gpu/pack.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CARRY="$ROOT/.gpucarry"
SOURCES=${PACK_SOURCES:-head}
MAX_BYTES=$((60 * 1024 * 1024))
cd "$ROOT"

rm -rf "$CARRY"
mkdir -p "$CARRY"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

echo "== sources ($SOURCES)"
SRC="$WORK/src"
mkdir -p "$SRC/benchmarks/gpu"
if [ "$SOURCES" = head ]; then
  git archive HEAD packages/core/src benchmarks/kernels.ts | tar -x -C "$SRC"
  dirty=$(git status --porcelain -- packages/core/src benchmarks/kernels.ts | wc -l)
  [ "$dirty" -gt 0 ] &&
    echo "note: $dirty changed file(s) under packages/core/src or benchmarks/kernels.ts are NOT in the bundle (HEAD is)"
else
  mkdir -p "$SRC/packages/core" "$SRC/benchmarks"
  cp -r packages/core/src "$SRC/packages/core/src"
  cp benchmarks/kernels.ts "$SRC/benchmarks/kernels.ts"
fi
# bench.ts itself always comes from the working tree; the manifest says whether it differs from HEAD.
cp benchmarks/gpu/bench.ts "$SRC/benchmarks/gpu/bench.ts"
BENCH_TS=$([ -n "$(git status --porcelain -- benchmarks/gpu/bench.ts)" ] && echo "worktree, modified" || echo "as HEAD")
echo "benchmarks/gpu/bench.ts: $BENCH_TS"
# The snapshot resolves tfjs, cli-table3 and friends from the repo's node_modules.
ln -s "$ROOT/node_modules" "$SRC/node_modules"

echo "== bundles"
APP="$WORK/app"
mkdir -p "$APP"
ESBUILD="$ROOT/node_modules/.bin/esbuild"
# CommonJS dependencies (tfjs's node platform code) call require(); give the ESM bundle one.
BANNER='import { createRequire as __wtCreateRequire } from "node:module"; const require = __wtCreateRequire(import.meta.url);'
for entry in benchmarks/gpu/bench.ts:bench.mjs benchmarks/kernels.ts:kernels.mjs; do
  "$ESBUILD" "$SRC/${entry%%:*}" \
    --bundle --platform=node --format=esm --target=node20 \
    --alias:@webtune/core="$SRC/packages/core/src/index.ts" \
    --external:webgpu --external:@xenova/transformers \
    --banner:js="$BANNER" \
    --log-level=warning \
    --outfile="$APP/${entry##*:}"
done

echo "== webgpu (dawn.node, linux-x64)"
W="$APP/node_modules/webgpu"
mkdir -p "$W/dist/linux-x64"
cp node_modules/webgpu/index.js node_modules/webgpu/package.json node_modules/webgpu/LICENSE.md "$W/"
cp node_modules/webgpu/dist/linux-x64/dawn.node "$W/dist/linux-x64/"

echo "== node ($(node --version))"
cp "$(command -v node)" "$WORK/node"
strip "$WORK/node" 2>/dev/null || echo "strip unavailable: packing node unstripped"
xz -9 -T2 -c "$WORK/node" >"$CARRY/node.xz"

DEBS=(libvulkan1 libglvnd0 libglx0 libgl1 libegl1 libgles2 libopengl0)
echo "== ${DEBS[*]} (amd64)"
mkdir -p "$WORK/apt/partial"
apt_opts=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$WORK/apt")
apt-get "${apt_opts[@]}" update >/dev/null
(cd "$CARRY" && apt-get "${apt_opts[@]}" download "${DEBS[@]}" 2>&1 | grep -v "unsandboxed" || true)
for deb in "${DEBS[@]}"; do ls "$CARRY/${deb}"_*_amd64.deb >/dev/null; done

node -e '
const fs = require("node:fs");
const [commit, sources, date, dir, benchTs] = process.argv.slice(1);
const sizes = {};
const walk = (d, rel) => {
  for (const f of fs.readdirSync(d)) {
    const p = d + "/" + f;
    if (fs.statSync(p).isDirectory()) walk(p, rel + f + "/");
    else sizes[rel + f] = fs.statSync(p).size;
  }
};
walk(dir, "");
fs.writeFileSync(dir + "/manifest.json", JSON.stringify({ commit, sources, bench_ts: benchTs, node: process.version, packed: date, sizes }, null, 2) + "\n");
' "$(git rev-parse --short HEAD)" "$SOURCES" "$(date -u +%FT%TZ)" "$APP" "$BENCH_TS"
tar -C "$APP" -cf - . | xz -9 -T2 >"$CARRY/app.tar.xz"

total=$(du -cb "$CARRY"/* | tail -1 | cut -f1)
ls -la "$CARRY"
echo "total: $((total / 1024 / 1024)) MiB"
if [ "$total" -gt "$MAX_BYTES" ]; then
  echo "ERROR: .gpucarry is over 60 MiB; the device tool carries at most 64 MiB of working tree" >&2
  exit 1
fi
