#!/usr/bin/env bash
# Builds .gpucarry/: everything the GPU machine needs to run benchmarks/gpu/run.sh without node or npm there.
#   node.xz        this machine's node binary, stripped and xz-compressed
#   app.tar.xz     node_modules/webgpu with only its linux-x64 dawn.node;
#                  bench.mjs: benchmarks/gpu/bench.ts (and its parts beside it) bundled with @webtune/core, tfjs and
#                  benchmarks/lib (esbuild, ESM, Node 20); kernels.mjs: benchmarks/kernels.ts bundled likewise;
#                  demo-model/: the embedded demo model's config and weights (decode part);
#                  manifest.json: commit, date, sizes
#                  (archived, so the repo's eslint and prettier never see loose .mjs or .json files here)
#   *.deb          Debian's Vulkan loader and the GL vendor-neutral dispatch libraries (amd64), unpacked to / on
#                  the GPU machine: NVIDIA's Vulkan driver lives in libGLX_nvidia and needs glvnd to start
#
# By default @webtune/core, benchmarks/kernels.ts, test/helpers (random weights) and the demo model are bundled
# from the committed HEAD (git archive), so the run measures the commit it is recorded under;
# PACK_SOURCES=worktree bundles the working tree instead. The benchmark's own code, benchmarks/gpu/*.ts and
# benchmarks/lib, always comes from the working tree (the manifest's bench_ts says whether it differs from HEAD).
# PACK_KEEP_NODE=1 keeps an existing .gpucarry/node.xz of the same node version (xz of node is most of the time).
# Usage, from anywhere: bash benchmarks/gpu/pack.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CARRY="$ROOT/.gpucarry"
SOURCES=${PACK_SOURCES:-head}
MAX_BYTES=$((60 * 1024 * 1024))
cd "$ROOT"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [ "${PACK_KEEP_NODE:-0}" = 1 ] && [ -f "$CARRY/node.xz" ] && [ "$(cat "$CARRY/node.version" 2>/dev/null)" = "$(node --version)" ]; then
  mv "$CARRY/node.xz" "$WORK/node.xz.kept"
fi
rm -rf "$CARRY"
mkdir -p "$CARRY"

echo "== sources ($SOURCES)"
SRC="$WORK/src"
mkdir -p "$SRC/benchmarks/gpu"
DEMO=demo/public/models/webtune-demo-base
LIBRARY=(packages/core/src benchmarks/kernels.ts test/helpers "$DEMO")
if [ "$SOURCES" = head ]; then
  git archive HEAD "${LIBRARY[@]}" | tar -x -C "$SRC"
  dirty=$(git status --porcelain -- "${LIBRARY[@]}" | wc -l)
  [ "$dirty" -gt 0 ] &&
    echo "note: $dirty changed file(s) under ${LIBRARY[*]} are NOT in the bundle (HEAD is)"
else
  for path in "${LIBRARY[@]}"; do
    mkdir -p "$SRC/$(dirname "$path")"
    cp -r "$path" "$SRC/$path"
  done
fi
# The benchmark's own code always comes from the working tree; the manifest says whether it differs from HEAD.
mkdir -p "$SRC/benchmarks/lib"
cp benchmarks/gpu/*.ts "$SRC/benchmarks/gpu/"
cp -r benchmarks/lib/. "$SRC/benchmarks/lib/"
BENCH_TS=$([ -n "$(git status --porcelain -- benchmarks/gpu benchmarks/lib)" ] && echo "worktree, modified" || echo "as HEAD")
echo "benchmarks/gpu, benchmarks/lib: $BENCH_TS"
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

echo "== demo model"
mkdir -p "$APP/demo-model"
for f in config.json generation_config.json model.safetensors; do
  cp "$SRC/$DEMO/$f" "$APP/demo-model/"
done

echo "== webgpu (dawn.node, linux-x64)"
W="$APP/node_modules/webgpu"
mkdir -p "$W/dist/linux-x64"
cp node_modules/webgpu/index.js node_modules/webgpu/package.json node_modules/webgpu/LICENSE.md "$W/"
cp node_modules/webgpu/dist/linux-x64/dawn.node "$W/dist/linux-x64/"

echo "== node ($(node --version))"
if [ -f "$WORK/node.xz.kept" ]; then
  echo "kept the existing node.xz (PACK_KEEP_NODE=1)"
  mv "$WORK/node.xz.kept" "$CARRY/node.xz"
else
  cp "$(command -v node)" "$WORK/node"
  strip "$WORK/node" 2>/dev/null || echo "strip unavailable: packing node unstripped"
  xz -9 -T2 -c "$WORK/node" >"$CARRY/node.xz"
fi
node --version >"$CARRY/node.version"

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
