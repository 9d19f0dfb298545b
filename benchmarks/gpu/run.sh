#!/usr/bin/env bash
# Runs the GPU benchmark on the GPU machine, from the repo root, with .gpucarry/ (made by pack.sh) beside it:
#   setup (node, dawn.node, the Vulkan loader) -> nvidia-smi -> stages, each with its own time limit:
#     bench    bench.mjs verify,roof,variants,train,engine: adapter, kernel self-test, matmul roof, per-variant
#              LoRA-shape matmul TFLOP/s, gpt2 LoRA steps through the Trainer (compiled step), host enqueue
#              against GPU-busy time per compiled step                                   170 s  webtune_bench.log
#     checks   bench.mjs packed,adamw: packed f16/int8/NF4 matmuls and AdamW against CPU refs  60 s  webtune_checks.log
#     decode   bench.mjs decode: greedy decoding, compiled decoder against the tape       70 s  webtune_decode.log
#     peft     PyTorch+PEFT baseline of the gpt2 LoRA step                                120 s  peft_baseline.log
#     kernels  kernels.mjs --variant shared, --variant direct                          2 × 30 s  kernels.log
#     profile  (not in the default) bench.mjs --profile: the tape step's profile     200 s  webtune_profile.log
#   The default stages' limits add up to 480 s; setup takes about 30 s more.
# A failing stage is reported and the next one still runs. Logs and results.json go to $OUT (default
# /tmp/webtune-gpu-out).
#   RUN_STAGES="bench checks decode peft kernels"  the stages to run (the default); also given as arguments:
#                                    bash run.sh profile
#   WEBTUNE_GPU_BENCH_SMOKE=1        tiny sizes everywhere, for checking the recipe on lavapipe
#   STAGE_LIMIT_SCALE=N              multiplies every stage's time limit (default 1; 4 with SMOKE, since lavapipe
#                                    compiles each pipeline in seconds)
#   DEBS_ROOT=DIR                    unpack the carried .debs there, not to / (for a local check as root)
# Usage: bash benchmarks/gpu/run.sh
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CARRY=${GPUCARRY:-$ROOT/.gpucarry}
OUTDIR=${OUT:-/tmp/webtune-gpu-out}
W=${WEBTUNE_GPU_DIR:-/tmp/webtune-gpu}
STAGES=${RUN_STAGES:-${*:-bench checks decode peft kernels}}
SMOKE=${WEBTUNE_GPU_BENCH_SMOKE:-0}
SCALE=${STAGE_LIMIT_SCALE:-$([ "$SMOKE" = 1 ] && echo 4 || echo 1)}
mkdir -p "$OUTDIR" "$W"
LOG="$OUTDIR/run.log"
exec > >(tee -a "$LOG") 2>&1
declare -A STATUS

stage() { echo; echo "######## $1 ($(date -u +%T))"; }
unxz_to() { # file.xz -> stdout, with xz or Python's lzma
  if command -v xz >/dev/null; then xz -dc "$1"; else python3 -c 'import lzma,sys,shutil; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"; fi
}

stage setup
setup_ok=1
{ unxz_to "$CARRY/node.xz" >"$W/node" && chmod +x "$W/node"; } || setup_ok=0
# bench.mjs, kernels.mjs, manifest.json, demo-model/ and node_modules/webgpu (dawn.node)
unxz_to "$CARRY/app.tar.xz" | tar -x -C "$W" || setup_ok=0
cat "$W/manifest.json"
NODE="$W/node"
"$NODE" --version || setup_ok=0
# The device README's recipe: the Vulkan loader and glvnd from Debian, unpacked to / on every run (as root;
# DEBS_ROOT=/some/dir unpacks there instead and puts its libraries on LD_LIBRARY_PATH, for a local check).
DEBS_ROOT=${DEBS_ROOT:-$([ "$(id -u)" = 0 ] && echo / || echo "$W/debs")}
for deb in "$CARRY"/*.deb; do
  dpkg -x "$deb" "$DEBS_ROOT" || setup_ok=0
done
if [ "$DEBS_ROOT" = / ]; then
  ldconfig
else
  export LD_LIBRARY_PATH="$DEBS_ROOT/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
ldconfig -p | grep -E 'libvulkan\.so|libGLX_nvidia|libGLdispatch' || echo "libvulkan.so.1 is not in the ldconfig cache"
glx=$(ldconfig -p | grep -m1 'libGLX_nvidia\.so\.0' | sed 's/.*=> //')
[ -n "$glx" ] && { echo "ldd $glx:"; ldd "$glx" | grep -E 'not found|GLdispatch|nvidia' || true; }
ls /dev/nvidia* 2>/dev/null | tr '\n' ' '; echo
ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -f "$ICD" ] && [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]; then
  export VK_DRIVER_FILES=$ICD VK_ICD_FILENAMES=$ICD
  echo "VK_DRIVER_FILES=$ICD:"; cat "$ICD"
fi
for d in /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d; do
  [ -d "$d" ] && echo "ICDs in $d: $(ls "$d" | tr '\n' ' ')"
done
STATUS[setup]=$([ $setup_ok = 1 ] && echo ok || echo failed)

stage nvidia-smi
if command -v nvidia-smi >/dev/null; then
  nvidia-smi 2>&1 | tee "$OUTDIR/nvidia-smi.txt"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader |
    tee -a "$OUTDIR/nvidia-smi.txt"
  STATUS[nvidia_smi]=ok
else
  echo "no nvidia-smi here"
  STATUS[nvidia_smi]=absent
fi

run_stage() { # name, timeout seconds (× SCALE), log file, command...
  local name=$1 limit=$(($2 * SCALE)) file=$3
  shift 3
  stage "$name"
  timeout -k 10 "$limit" "$@" 2>&1 | tee "$file"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" = 0 ]; then STATUS[$name]=ok
  elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then STATUS[$name]="timed out after ${limit}s"
  else STATUS[$name]="exit $rc"; fi
  echo "--- $name: ${STATUS[$name]}"
}

export WEBTUNE_GPU_BENCH_SMOKE=$SMOKE FORCE_COLOR=0
if [[ " $STAGES " == *" bench "* ]]; then
  BENCH_PARTS=verify,roof,variants,train,engine \
    run_stage webtune_bench 170 "$OUTDIR/webtune_bench.log" "$NODE" "$W/bench.mjs"
fi
if [[ " $STAGES " == *" checks "* ]]; then
  BENCH_PARTS=packed,adamw run_stage webtune_checks 60 "$OUTDIR/webtune_checks.log" "$NODE" "$W/bench.mjs"
fi
if [[ " $STAGES " == *" decode "* ]]; then
  BENCH_PARTS=decode run_stage webtune_decode 70 "$OUTDIR/webtune_decode.log" "$NODE" "$W/bench.mjs"
fi
if [[ " $STAGES " == *" profile "* ]]; then
  run_stage webtune_profile 200 "$OUTDIR/webtune_profile.log" "$NODE" "$W/bench.mjs" --profile
fi
if [[ " $STAGES " == *" peft "* ]]; then
  smoke_flag=()
  [ "$SMOKE" = 1 ] && smoke_flag=(--smoke)
  export PYTHONUNBUFFERED=1
  run_stage peft_baseline 120 "$OUTDIR/peft_baseline.log" \
    "${PYTHON:-python3}" "$ROOT/benchmarks/gpu/peft_baseline.py" "${smoke_flag[@]}"
fi
if [[ " $STAGES " == *" kernels "* ]]; then
  kernel_args=(--reps 5)
  [ "$SMOKE" = 1 ] && kernel_args=(--reps 1 --tokens 64)
  : >"$OUTDIR/kernels.log"
  for variant in shared direct; do
    run_stage "kernels_$variant" 30 "$OUTDIR/kernels_$variant.tmp" \
      "$NODE" "$W/kernels.mjs" "${kernel_args[@]}" --variant "$variant"
    cat "$OUTDIR/kernels_$variant.tmp" >>"$OUTDIR/kernels.log"
  done
fi

stage summary
status_json=$(for k in "${!STATUS[@]}"; do printf '%s\t%s\n' "$k" "${STATUS[$k]}"; done)
# Each benchmark's last line is its JSON; results.json gathers them with the stages' statuses.
STATUS_TSV="$status_json" OUTDIR="$OUTDIR" W="$W" python3 - <<'EOF'
import json, os
out = os.environ["OUTDIR"]
def last_json(name):
    try:
        lines = [l for l in open(os.path.join(out, name)).read().splitlines() if l.startswith("{")]
        return json.loads(lines[-1]) if lines else None
    except (OSError, ValueError) as e:
        return {"error": str(e)}
res = {"stages": dict(l.split("\t", 1) for l in os.environ["STATUS_TSV"].splitlines() if l)}
try:
    res["manifest"] = json.load(open(os.path.join(os.environ["W"], "manifest.json")))
except (OSError, ValueError):
    pass
try:
    res["nvidia_smi"] = open(os.path.join(out, "nvidia-smi.txt")).read().strip().splitlines()[-1]
except (OSError, IndexError):
    pass
for key, name in (("webtune", "webtune_bench.log"), ("checks", "webtune_checks.log"),
                  ("decode", "webtune_decode.log"), ("peft", "peft_baseline.log"),
                  ("profile", "webtune_profile.log")):
    if os.path.exists(os.path.join(out, name)):
        res[key] = last_json(name)
res["kernels"] = {v: last_json(f"kernels_{v}.tmp") for v in ("shared", "direct")}
def get(*path):
    x = res
    for k in path:
        x = x.get(k) if isinstance(x, dict) else None
    return x
w = get("webtune", "train", "tokens_per_sec")
p = get("peft", "train", "tokens_per_sec")
if w and p:
    res["webtune_over_peft_tokens_per_sec"] = round(w / p, 4)
e = get("webtune", "engine_step", "tokens_per_sec")
if e and p:
    res["engine_step_over_peft_tokens_per_sec"] = round(e / p, 4)
# The numbers issue 22 section 3 asks for, in one place (null where a stage did not give them).
res["headline"] = {
    "adapter": get("webtune", "adapter", "description"),
    "software_adapter": get("webtune", "adapter_is_software"),
    "train_executor": get("webtune", "train", "executor"),
    "webtune_tokens_per_sec": w,
    "peft_tokens_per_sec": p,
    "webtune_over_peft": res.get("webtune_over_peft_tokens_per_sec"),
    "tf_matmul_roof_gflops": get("webtune", "roof_gflops"),
    "torch_mm_roof_gflops": get("peft", "roof_gflops"),
    # Per matmul shape of the variants part: the autotuner's pick and the fastest variant, in TFLOP/s.
    "variants": {
        shape: {
            "chosen": v.get("chosen"),
            "chosen_tflops": (v["variants"].get(v.get("chosen")) or {}).get("tflops"),
            "best": max(v["variants"], key=lambda n: v["variants"][n].get("tflops") or 0),
            "best_tflops": max((x.get("tflops") or 0) for x in v["variants"].values()),
        }
        for shape, v in (get("webtune", "variants") or {}).items()
        if isinstance(v, dict) and isinstance(v.get("variants"), dict) and v["variants"]
    },
    "engine_step_wall_ms": get("webtune", "engine_step", "pipelined", "wall_ms"),
    "engine_step_host_enqueue_ms": get("webtune", "engine_step", "pipelined", "enqueue_ms"),
    "engine_step_gpu_ms_timestamp": get("webtune", "engine_step", "pipelined", "gpu_ms_timestamp"),
    "engine_step_gpu_ms_submit_to_done": get("webtune", "engine_step", "pipelined", "gpu_ms_submit_to_done"),
    "packed_max_relative_error": {k: v.get("max_relative_error") for k, v in (get("checks", "packed", "formats") or {}).items()},
    "adamw_fused_max_relative_error": get("checks", "adamw", "fused", "max_relative_error"),
    "adamw_engine_max_relative_error": {k: v.get("max_relative_error") for k, v in (get("checks", "adamw", "engine") or {}).items()},
    "decode_tokens_per_sec": {m: {"engine": get("decode", "decode", m, "single", "engine_tokens_per_sec"),
                                  "tape": get("decode", "decode", m, "single", "tape_tokens_per_sec"),
                                  "batch_engine": get("decode", "decode", m, "batch", "engine", "tokens_per_sec"),
                                  "batch_tape": get("decode", "decode", m, "batch", "tape", "tokens_per_sec")}
                              for m in ("gpt2", "demo")},
    "failures": {k: get(k, "failures") for k in ("webtune", "checks", "decode") if get(k, "failures")},
}
json.dump(res, open(os.path.join(out, "results.json"), "w"), indent=2)
print(json.dumps(res, indent=2))
print("HEADLINE " + json.dumps(res["headline"]))
EOF
rm -f "$OUTDIR"/kernels_*.tmp
echo "stages: $(for k in "${!STATUS[@]}"; do printf '%s=%s; ' "$k" "${STATUS[$k]}"; done)"
sleep 1 # let tee flush run.log
