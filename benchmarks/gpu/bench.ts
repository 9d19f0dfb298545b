/**
 * webtune's side of the GPU benchmark (see README.md beside this file): on whatever WebGPU adapter Dawn finds,
 *   1. the adapter, and a loud warning if it runs shaders on the CPU;
 *   2. verifyLoraKernels() for each kernel variant, on the default cases plus GPT-2-sized ones;
 *   3. the best square f32 tf.matMul GFLOP/s (the in-run roof);
 *   4. LoRA training steps of the gpt2 config with random weights (the Trainer, AdamW, the loss read back
 *      every step), as ms/step, tokens/s, model GFLOP/s and MFU against the roof.
 * Each part's failure is recorded and the next part still runs. The last line printed is one JSON object.
 *
 * Usage (bundled by pack.sh; from the sources: node --import tsx benchmarks/gpu/bench.ts)
 *   WEBTUNE_GPU_BENCH_SMOKE=1  a tiny, fast run (2 layers, batch 1, seq 32) to check the recipe on lavapipe
 *   BENCH_STEPS, BENCH_WARMUP   timed and warm-up training steps (default 10 and 3)
 *   BENCH_LAYERS, BENCH_BATCH, BENCH_SEQ  override the training shape (default 12, 4, 256)
 *   BENCH_PARTS                 comma-separated subset of verify,roof,train (default all)
 */
import * as tf from "@tensorflow/tfjs";
import {
  DEFAULT_CHECK_CASES,
  disposeRuntime,
  gpuDevice,
  gpuInfo,
  initRuntime,
  LoraModel,
  PretrainedModel,
  resolveConfig,
  setLoraKernelVariant,
  Trainer,
  verifyLoraKernels,
  type KernelKind,
  type LoraCheckCase,
  type StepEvent,
  type TrainBatch,
  type WeightSource,
} from "@webtune/core";

const env = process.env;
const SMOKE = env["WEBTUNE_GPU_BENCH_SMOKE"] === "1";
const STEPS = Number(env["BENCH_STEPS"] ?? (SMOKE ? 2 : 10));
const WARMUP = Number(env["BENCH_WARMUP"] ?? (SMOKE ? 1 : 3));
const PARTS = (env["BENCH_PARTS"] ?? "verify,roof,train").split(",");
/** Largest relative error (see relativeError in self_test.ts) that counts as a pass: the tests' tolerance. */
const TOLERANCE = 1e-4;

/** The gpt2 config (transformers' GPT2Config defaults); SMOKE keeps the widths and cuts depth. */
const GPT2 = {
  model_type: "gpt2",
  vocab_size: 50257,
  n_positions: 1024,
  n_embd: 768,
  n_layer: Number(env["BENCH_LAYERS"] ?? (SMOKE ? 2 : 12)),
  n_head: 12,
  activation_function: "gelu_new",
  layer_norm_epsilon: 1e-5,
  bos_token_id: 50256,
  eos_token_id: 50256,
};
const TRAIN = {
  batch: Number(env["BENCH_BATCH"] ?? (SMOKE ? 1 : 4)),
  seq: Number(env["BENCH_SEQ"] ?? (SMOKE ? 32 : 256)),
  r: 8,
  alpha: 16,
  dropout: 0,
  lr: 1e-4,
  targetModules: ["c_attn"],
};

const result: Record<string, unknown> = { smoke: SMOKE };
const failures: Record<string, string> = {};
result["failures"] = failures;
/** WebGPU validation and out-of-memory errors, which tfjs never sees: the failed work reads as zeros. */
const gpuErrors = { count: 0, first: [] as string[] };
result["webgpu_errors"] = gpuErrors;
let currentPart = "";
let partFirstError: string | undefined;

function log(line: string): void {
  console.log(line);
}

function errorText(error: unknown): string {
  if (error instanceof Error)
    return `${error.name}: ${error.message}${error.cause ? ` (cause: ${String(error.cause)})` : ""}`;
  return String(error);
}

/** Runs one part; a throw is logged and recorded, and the benchmark goes on. */
async function part(name: string, fn: () => Promise<void>): Promise<void> {
  log(`\n=== ${name} ===`);
  const start = performance.now();
  const errorsBefore = gpuErrors.count;
  currentPart = name;
  partFirstError = undefined;
  try {
    await fn();
  } catch (error) {
    failures[name] = errorText(error);
    log(`!!! ${name} FAILED: ${failures[name]}`);
    if (error instanceof Error && error.stack) log(error.stack);
  }
  const errors = gpuErrors.count - errorsBefore;
  if (errors > 0 && failures[name] === undefined) {
    failures[name] =
      `${errors} WebGPU error(s): its numbers are invalid. First: ${partFirstError}`;
    log(`!!! ${name} INVALID: ${failures[name]}`);
  }
  log(`(${name}: ${((performance.now() - start) / 1000).toFixed(1)} s)`);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function round(x: number, digits = 3): number {
  return Number(x.toPrecision(digits + 3));
}

/** Deterministic uniform values in [-1, 1) (xorshift32), fast enough for 124M weights. */
function uniform(n: number, seed: number, offset: number, scale: number) {
  const out = new Float32Array(n);
  let s = (seed * 0x9e3779b1) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = offset + scale * ((s >>> 0) / 2147483648 - 1);
  }
  return out;
}

/** GPT-2 checkpoint names and shapes (Conv1D weights are [in, out]), with random values made on read. */
function gpt2RandomWeights(c: typeof GPT2): WeightSource {
  const C = c.n_embd;
  const shapes: Record<string, number[]> = {
    "transformer.wte.weight": [c.vocab_size, C],
    "transformer.wpe.weight": [c.n_positions, C],
    "transformer.ln_f.weight": [C],
    "transformer.ln_f.bias": [C],
  };
  for (let i = 0; i < c.n_layer; i++) {
    const p = `transformer.h.${i}`;
    for (const ln of ["ln_1", "ln_2"]) {
      shapes[`${p}.${ln}.weight`] = [C];
      shapes[`${p}.${ln}.bias`] = [C];
    }
    const conv: [string, number, number][] = [
      ["attn.c_attn", C, 3 * C],
      ["attn.c_proj", C, C],
      ["mlp.c_fc", C, 4 * C],
      ["mlp.c_proj", 4 * C, C],
    ];
    for (const [m, inF, outF] of conv) {
      shapes[`${p}.${m}.weight`] = [inF, outF];
      shapes[`${p}.${m}.bias`] = [outF];
    }
  }
  const names = Object.keys(shapes);
  return {
    description: "gpt2 config, random weights",
    names: () => names,
    shape: async (name) => shapes[name],
    read: async (name) => {
      const shape = shapes[name]!;
      const n = shape.reduce((a, b) => a * b, 1);
      const seed = names.indexOf(name) + 1;
      if (name.endsWith(".bias")) return uniform(n, seed, 0, 0.02);
      if (/ln_(1|2|f)\.weight$/.test(name)) return uniform(n, seed, 1, 0.1);
      return uniform(n, seed, 0, 0.04);
    },
  };
}

/**
 * FLOPs of one LoRA training step with a frozen base (multiply-add = 2 FLOPs), per token:
 *   linear:    2·N forward + 2·N for the input gradients backward (frozen weights get no weight gradient),
 *              N = L·(C·3C + C·C + C·4C + 4C·C) + V·C (the four projections per block and the tied LM head);
 *   attention: forward QKᵀ and P·V, 2·T·C each per layer; backward dP, dV, dQ, dK, 2·T·C each: 12·T·C·L
 *              (full T×T, no causal halving);
 *   LoRA:      forward 2·r·(in + out), backward 4·r·(in + out) (dA, dB and the low-rank part of dx), per target.
 * Norms, GELU, softmax and the optimizer are left out. The same formula is used for the PyTorch baseline.
 */
function loraStepFlops(
  c: { n_layer: number; n_embd: number; vocab_size: number },
  batch: number,
  seq: number,
  r: number,
): { linear: number; attention: number; lora: number; total: number } {
  const C = c.n_embd;
  const L = c.n_layer;
  const tokens = batch * seq;
  const N = L * (3 * C * C + C * C + 4 * C * C + 4 * C * C) + c.vocab_size * C;
  const linear = 4 * N * tokens;
  const attention = 12 * seq * C * L * tokens;
  const lora = 6 * r * (C + 3 * C) * L * tokens;
  return { linear, attention, lora, total: linear + attention + lora };
}

async function adapterPart(): Promise<void> {
  const info = await initRuntime();
  gpuDevice().addEventListener("uncapturederror", (event) => {
    const error = (event as GPUUncapturedErrorEvent).error;
    const text = `${error.constructor.name}: ${error.message.split("\n")[0]}`;
    gpuErrors.count++;
    partFirstError ??= text;
    if (gpuErrors.first.length < 5)
      gpuErrors.first.push(`[${currentPart}] ${text}`);
  });
  const { limits, features, ...rest } = info;
  result["adapter"] = {
    ...rest,
    features,
    maxStorageBufferBindingSize: limits["maxStorageBufferBindingSize"],
    maxBufferSize: limits["maxBufferSize"],
  };
  log(`backend: ${info.backend}`);
  log(`adapter vendor:       ${info.vendor}`);
  log(`adapter architecture: ${info.architecture}`);
  log(`adapter description:  ${info.description}`);
  log(`adapter device:       ${info.device}`);
  log(`features: ${features.join(", ") || "none"}`);
  log(
    `maxStorageBufferBindingSize ${limits["maxStorageBufferBindingSize"]}, maxBufferSize ${limits["maxBufferSize"]}`,
  );
  const text =
    `${info.vendor} ${info.architecture} ${info.description}`.toLowerCase();
  const onNvidia = /nvidia/.test(text);
  result["adapter_is_nvidia"] = onNvidia;
  result["adapter_is_software"] = info.software;
  if (info.software || info.backend !== "webgpu") {
    log(
      "\n" +
        "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n" +
        "!!! SOFTWARE ADAPTER: shaders run on the CPU (lavapipe / SwiftShader). !!!\n" +
        "!!! These numbers are NOT GPU numbers.                                 !!!\n" +
        "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
    );
  } else if (!onNvidia) {
    log("!!! The adapter does not name NVIDIA: check which GPU Dawn picked.");
  }
}

/** The default self-test cases plus GPT-2-sized ones (c_attn at seq 256; an out_in projection with dropout). */
function checkCases(): LoraCheckCase[] {
  if (SMOKE) return DEFAULT_CHECK_CASES;
  return [
    ...DEFAULT_CHECK_CASES,
    {
      T: 256,
      IN: 768,
      OUT: 2304,
      R: 8,
      weightLayout: "in_out",
      bias: true,
      lead: [2, 128],
    },
    {
      T: 130,
      IN: 576,
      OUT: 576,
      R: 16,
      weightLayout: "out_in",
      dropout: 0.1,
      seed: 11,
    },
  ];
}

async function verifyPart(): Promise<void> {
  const out: Record<string, unknown> = {};
  result["verify"] = out;
  for (const variant of ["shared", "direct"] as KernelKind[]) {
    setLoraKernelVariant(variant);
    try {
      const results = await verifyLoraKernels(checkCases());
      let worst = 0;
      const cases = results.map((r) => {
        const errors = Object.fromEntries(
          Object.entries(r.errors).map(([k, v]) => [
            k,
            Number(v.toExponential(2)),
          ]),
        );
        const max = Math.max(...Object.values(r.errors));
        // NaN fails: Math.max gives NaN, and !(NaN <= tol).
        if (!(max <= worst)) worst = max;
        const c = r.case;
        const label = `T${c.T} ${c.IN}→${c.OUT} r${c.R} ${c.weightLayout}${c.bias ? " bias" : ""}${c.dropout ? ` drop${c.dropout}` : ""}`;
        log(
          `${variant.padEnd(6)} ${label.padEnd(40)} ${!(max <= TOLERANCE) ? "FAIL" : "ok  "} ` +
            Object.entries(errors)
              .map(([k, v]) => `${k} ${v}`)
              .join("  "),
        );
        return { case: label, errors, pass: max <= TOLERANCE };
      });
      const pass = cases.every((c) => c.pass);
      out[variant] = { pass, worst: Number(worst.toExponential(2)), cases };
      log(
        `${variant}: ${pass ? "PASS" : "FAIL"} (worst relative error ${worst.toExponential(2)}, tolerance ${TOLERANCE})`,
      );
    } catch (error) {
      out[variant] = { pass: false, error: errorText(error) };
      failures[`verify_${variant}`] = errorText(error);
      log(`${variant}: ERROR ${errorText(error)}`);
    }
  }
  setLoraKernelVariant(undefined);
  const verify = out as Record<string, { pass: boolean }>;
  result["verify_pass"] = Object.values(verify).every((v) => v.pass);
}

/** GFLOP/s of n×n·n×n f32 tf.matMul: `reps` products queued, one 1-element readback at the end; best of 3. */
async function matmulGflops(n: number, reps: number): Promise<number> {
  const a = tf.randomNormal([n, n]);
  const b = tf.randomNormal([n, n]);
  const sync = async (t: tf.Tensor) => {
    const one = t.slice([0, 0], [1, 1]);
    await one.data();
    one.dispose();
  };
  const warm = tf.matMul(a, b);
  await sync(warm);
  warm.dispose();
  let best = 0;
  for (let trial = 0; trial < 3; trial++) {
    const start = performance.now();
    let last: tf.Tensor | undefined;
    for (let i = 0; i < reps; i++) {
      last?.dispose();
      last = tf.matMul(a, b);
    }
    await sync(last!);
    const ms = performance.now() - start;
    last!.dispose();
    best = Math.max(best, (2 * n ** 3 * reps) / (ms / 1000) / 1e9);
  }
  tf.dispose([a, b]);
  return best;
}

async function roofPart(): Promise<void> {
  const sizes: [number, number][] = SMOKE
    ? [
        [256, 4],
        [512, 2],
      ]
    : [
        [1024, 50],
        [2048, 20],
        [4096, 10],
      ];
  const bySize: Record<string, number> = {};
  result["matmul_gflops"] = bySize;
  for (const [n, reps] of sizes) {
    bySize[String(n)] = round(await matmulGflops(n, reps));
    log(`tf.matMul f32 ${n}×${n}×${n}: ${bySize[String(n)]} GFLOP/s`);
  }
  result["roof_gflops"] = Math.max(...Object.values(bySize));
}

function randomBatch(seed: number): TrainBatch {
  let s = seed >>> 0 || 1;
  const inputIds = Array.from({ length: TRAIN.batch }, () =>
    Array.from({ length: TRAIN.seq }, () => {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      return s % GPT2.vocab_size;
    }),
  );
  return { inputIds, labels: inputIds.map((row) => [...row]) };
}

async function trainPart(): Promise<void> {
  const t0 = performance.now();
  const limit = gpuInfo().limits["maxStorageBufferBindingSize"] ?? 1 << 27;
  const lm = await resolveConfig(GPT2, "gpt2/config.json").load(
    gpt2RandomWeights(GPT2),
    limit,
  );
  const model = new PretrainedModel(lm, undefined, GPT2, {}, "gpt2 (random)");
  const peft = new LoraModel(model);
  peft.addAdapter("default", {
    r: TRAIN.r,
    loraAlpha: TRAIN.alpha,
    loraDropout: TRAIN.dropout,
    targetModules: TRAIN.targetModules,
  });
  const params = peft.parameterCounts();
  log(peft.printTrainableParameters());
  log(`model built in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const batches = Array.from({ length: 8 }, (_, i) => randomBatch(i + 1));
  const run = async (steps: number) => {
    const events: StepEvent[] = [];
    const trainer = new Trainer(peft, {
      learningRate: TRAIN.lr,
      schedule: "constant",
      maxSteps: steps,
      logEvery: 1, // the loss is read back (awaited) every step, so each step's time is real
      onEvent: (e) => {
        if (e.type === "step") events.push(e);
      },
    });
    const start = performance.now();
    await trainer.train({ train: batches });
    return { ms: performance.now() - start, events };
  };
  const warm = await run(WARMUP);
  log(
    `warm-up: ${WARMUP} steps in ${(warm.ms / 1000).toFixed(2)} s, losses ${warm.events.map((e) => e.loss.toFixed(4)).join(" ")}`,
  );
  const timed = await run(STEPS);
  const stepMs = timed.ms / STEPS;
  const deltas = timed.events.map(
    (e, i) => e.elapsedMs - (i > 0 ? timed.events[i - 1]!.elapsedMs : 0),
  );
  const tokens = TRAIN.batch * TRAIN.seq;
  const tokensPerSec = (tokens * STEPS) / (timed.ms / 1000);
  const flops = loraStepFlops(GPT2, TRAIN.batch, TRAIN.seq, TRAIN.r);
  const gflops = flops.total / (stepMs / 1000) / 1e9;
  const roof = result["roof_gflops"] as number | undefined;
  log(`losses: ${timed.events.map((e) => e.loss.toFixed(4)).join(" ")}`);
  log(
    `per-step ms: ${deltas.map((d) => d.toFixed(1)).join(" ")} (median ${median(deltas).toFixed(1)})`,
  );
  log(
    `train step: ${stepMs.toFixed(1)} ms/step, ${tokensPerSec.toFixed(0)} tokens/s, ` +
      `${(flops.total / 1e9).toFixed(1)} GFLOP/step -> ${gflops.toFixed(0)} model GFLOP/s` +
      (roof
        ? `, MFU vs tf.matMul roof ${((100 * gflops) / roof).toFixed(1)}%`
        : ""),
  );
  const mem = tf.memory() as { numBytesInGPU?: number };
  result["train"] = {
    config: { ...TRAIN, n_layer: GPT2.n_layer, dtype: "float32" },
    params_total: params.total,
    params_trainable: params.trainable,
    warmup_steps: WARMUP,
    steps: STEPS,
    ms_per_step: round(stepMs),
    ms_per_step_median: round(median(deltas)),
    tokens_per_sec: round(tokensPerSec),
    step_gflop: round(flops.total / 1e9),
    flops_breakdown_gflop: {
      linear: round(flops.linear / 1e9),
      attention: round(flops.attention / 1e9),
      lora: round(flops.lora / 1e9),
    },
    model_gflops: round(gflops),
    mfu_vs_matmul_roof: roof ? round(gflops / roof) : null,
    first_loss: timed.events[0]?.loss,
    last_loss: timed.events.at(-1)?.loss,
    gpu_bytes: mem.numBytesInGPU ?? null,
  };
  peft.dispose();
  model.dispose();
}

await part("adapter", adapterPart);
if (!result["adapter"]) {
  log("No WebGPU adapter: the GPU parts are skipped.");
} else {
  if (PARTS.includes("verify")) await part("verify", verifyPart);
  if (PARTS.includes("roof")) await part("roof", roofPart);
  if (PARTS.includes("train")) await part("train", trainPart);
}
try {
  disposeRuntime();
} catch (error) {
  log(`disposeRuntime: ${errorText(error)}`);
}
console.log(JSON.stringify(result));
process.exit(Object.keys(failures).length === 0 ? 0 : 1);
