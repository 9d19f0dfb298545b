/**
 * webtune's side of the GPU benchmark (see README.md beside this file): on whatever WebGPU adapter Dawn finds,
 *   1. the adapter, and a loud warning if it runs shaders on the CPU;
 *   2. verifyLoraKernels() for each kernel variant, on the default cases plus GPT-2-sized ones;
 *   3. the best square f32 tf.matMul GFLOP/s (the in-run roof);
 *   4. LoRA training steps of the gpt2 config with random weights (the Trainer, AdamW, the loss read back
 *      every step), as ms/step, tokens/s, model GFLOP/s and MFU against the roof;
 *   5. only when asked (BENCH_PARTS=profile or --profile): a profile of that training step. Phases timed apart
 *      (forward, forward+backward, clip+AdamW, the full step, an idle readback), each split into the JS enqueue
 *      and the wait for the GPU, with dispatch, submit and buffer-creation counts; then one or two steps under
 *      tf.profile, which gives every dispatch its own timestamped compute pass, for the top kernels by GPU time
 *      and the step's wall time split into GPU-busy time and the rest. This is the tape's step (tfjs ops);
 *   6. engine (engine_step.ts): host enqueue time against GPU-busy time per step of the compiled step, the
 *      Trainer's default, timed with timestamp queries on its compute pass;
 *   7. packed, adamw (checks.ts): the packed f16/int8/NF4 matmuls and the AdamW kernels against their CPU
 *      references, max relative error per format / kernel;
 *   8. decode (decode.ts): greedy decoding tokens/s, compiled decoder against the tape, one sequence and 64 rows
 *      batched, on gpt2 and the embedded demo model.
 * Each part's failure is recorded and the next part still runs. The last line printed is one JSON object.
 *
 * Usage (bundled by pack.sh; from the sources: node --import tsx benchmarks/gpu/bench.ts)
 *   WEBTUNE_GPU_BENCH_SMOKE=1  a tiny, fast run (2 layers, batch 1, seq 32) to check the recipe on lavapipe
 *   BENCH_STEPS, BENCH_WARMUP   timed and warm-up training steps (default 10 and 3)
 *   BENCH_LAYERS, BENCH_BATCH, BENCH_SEQ  override the training shape (default 12, 4, 256)
 *   BENCH_PARTS                 comma-separated subset of verify,roof,train,profile,variants (default: below);
 *                               variants: each tiled-matmul variant's TFLOP/s on LoRA shapes (variants.ts)
 *                               Also engine, packed, adamw, decode; with no BENCH_PARTS and no --profile, every
 *                               part but profile runs (run.sh runs them in three processes). A name that no part
 *                               here answers to is reported at the end.
 *   BENCH_ENGINE_STEPS, BENCH_ENGINE_ISOLATED  the engine part's pipelined and idle-GPU steps (default 10 and 3)
 *   BENCH_DECODE_PROMPT, BENCH_DECODE_NEW, BENCH_DECODE_ROWS, BENCH_DECODE_ROW_TOKENS, BENCH_DEMO_MODEL  decode's
 *                               sizes (32, 128, 64, 32) and the demo model's folder (default: beside the bundle)
 *   BENCH_PACKED_VARIANTS       the kernel variants the packed part forces (default every base variant, shared
 *                               first); BENCH_PACKED_BUDGET_S stops it starting new cases after that long (35)
 *   --profile                   the same as BENCH_PARTS=profile
 *   BENCH_PROFILE_REPS          steps averaged per timed phase (default 3), also the Trainer steps compared
 *   BENCH_PROFILE_STEPS         steps run under tf.profile (default 2)
 *   BENCH_DAWN_FLAGS            flags for Dawn's create(), space-separated; the profile's default,
 *                               disable-dawn-features=timestamp_quantization, keeps timestamps at full resolution
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
  setLoraKernelVariant,
  trimBufferPool,
  Trainer,
  AdamW,
  clipGradNorm,
  verifyLoraKernels,
  type KernelKind,
  type LoraCheckCase,
  type StepEvent,
  type TrainBatch,
} from "@webtune/core";
import { watchEngine } from "../lib/count_steps.js";
import { loraStepFlops } from "../lib/flops.js";
import {
  configWithLayers,
  dimsOf,
  randomModel,
  withLora,
} from "../lib/models.js";
import { measureRoof } from "../lib/roof.js";
import { adamwPart, packedPart } from "./checks.js";
import { decodePart } from "./decode.js";
import { engineStepPart } from "./engine_step.js";
import type { PartContext } from "./part.js";
import { variantsPart } from "./variants.js";

const env = process.env;
const SMOKE = env["WEBTUNE_GPU_BENCH_SMOKE"] === "1";
const STEPS = Number(env["BENCH_STEPS"] ?? (SMOKE ? 2 : 10));
const WARMUP = Number(env["BENCH_WARMUP"] ?? (SMOKE ? 1 : 3));
const PARTS = (
  env["BENCH_PARTS"] ??
  (process.argv.includes("--profile")
    ? "profile"
    : "verify,roof,variants,train,engine,packed,adamw,decode")
).split(",");
/**
 * Flags for Dawn's `create()` (npm `webgpu`), space-separated. The profile turns Dawn's timestamp quantization
 * off: by default Dawn rounds every timestamp down to a multiple of 65536 ns, coarser than most kernels here.
 */
const DAWN_FLAGS = (
  env["BENCH_DAWN_FLAGS"] ??
  (["profile", "engine", "decode"].some((p) => PARTS.includes(p))
    ? "disable-dawn-features=timestamp_quantization"
    : "")
)
  .split(" ")
  .filter(Boolean);
/** Largest relative error (see relativeError in self_test.ts) that counts as a pass: the tests' tolerance. */
const TOLERANCE = 1e-4;

/** The gpt2 config (benchmarks/lib/models.ts); SMOKE keeps the widths and cuts depth. */
const GPT2 = configWithLayers(
  "gpt2",
  Number(env["BENCH_LAYERS"] ?? (SMOKE ? 2 : 12)),
);
const GPT2_DIMS = dimsOf(GPT2);
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
/** Parts that ran (or failed): a name in BENCH_PARTS that is not here had no part to answer it. */
const partsRun = new Set<string>();

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
  partsRun.add(name);
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

/** Puts a Dawn instance made with DAWN_FLAGS on navigator.gpu, where initRuntime() then finds it. */
async function dawnWithFlags(flags: string[]): Promise<void> {
  const specifier = "webgpu"; // computed: left to Node, as @webtune/core does
  const mod = (await import(specifier)) as {
    create: (flags: string[]) => GPU;
    globals: Record<string, unknown>;
  };
  const g = globalThis as Record<string, unknown> & {
    navigator?: { gpu?: GPU };
  };
  for (const [name, value] of Object.entries(mod.globals))
    if (!(name in g)) g[name] = value;
  const gpu = mod.create(flags);
  if (g.navigator === undefined) g.navigator = { gpu };
  else
    Object.defineProperty(g.navigator, "gpu", {
      value: gpu,
      configurable: true,
    });
  log(`Dawn flags: ${flags.join(" ")}`);
}

async function adapterPart(): Promise<void> {
  if (DAWN_FLAGS.length > 0) await dawnWithFlags(DAWN_FLAGS);
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
async function roofPart(): Promise<void> {
  const sizes = SMOKE
    ? [
        { n: 256, reps: 4 },
        { n: 512, reps: 2 },
      ]
    : [
        { n: 1024, reps: 50 },
        { n: 2048, reps: 20 },
        { n: 4096, reps: 10 },
      ];
  const roof = await measureRoof(sizes, 3);
  for (const [who, bySize] of Object.entries(roof.bySize))
    for (const [n, g] of Object.entries(bySize))
      log(`${who} f32 ${n}×${n}×${n}: ${round(g)} GFLOP/s`);
  result["matmul_gflops"] = roof.bySize;
  // The PyTorch side compares torch.mm against tf.matMul, so MFU here stays against tf.matMul.
  result["roof_gflops"] = Math.max(...Object.values(roof.bySize["tf.matMul"]!));
}

function randomBatch(seed: number): TrainBatch {
  let s = seed >>> 0 || 1;
  const inputIds = Array.from({ length: TRAIN.batch }, () =>
    Array.from({ length: TRAIN.seq }, () => {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      return s % GPT2_DIMS.vocab;
    }),
  );
  return { inputIds, labels: inputIds.map((row) => [...row]) };
}

/** The gpt2 config with random weights and a LoRA adapter on TRAIN.targetModules. */
async function buildModel(): Promise<{
  model: PretrainedModel;
  peft: LoraModel;
}> {
  const t0 = performance.now();
  const limit = gpuInfo().limits["maxStorageBufferBindingSize"] ?? 1 << 27;
  const model = await randomModel(GPT2, limit);
  const peft = withLora(model, {
    r: TRAIN.r,
    alpha: TRAIN.alpha,
    targetModules: TRAIN.targetModules,
  });
  log(peft.printTrainableParameters());
  log(`model built in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return { model, peft };
}

/** `steps` steps of webtune's Trainer over `batches` (the loss read back every step); wall ms and step events. */
async function trainerRun(
  peft: LoraModel,
  batches: TrainBatch[],
  steps: number,
): Promise<{ ms: number; events: StepEvent[] }> {
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
}

async function trainPart(): Promise<void> {
  const { model, peft } = await buildModel();
  const compiled = watchEngine(peft, () => undefined); // the Trainer's default executor: the compiled step
  const params = peft.parameterCounts();
  const batches = Array.from({ length: 8 }, (_, i) => randomBatch(i + 1));
  const run = (steps: number) => trainerRun(peft, batches, steps);
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
  const flops = loraStepFlops(GPT2_DIMS, TRAIN, TRAIN);
  const gflops = flops.total / (stepMs / 1000) / 1e9;
  const roof = result["roof_gflops"] as number | undefined;
  const executor = compiled() ? "compiled" : "tape";
  log(
    `executor: ${executor}${compiled() ? " (a training session was compiled)" : " (NO training session: the tape ran)"}`,
  );
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
    config: { ...TRAIN, n_layer: GPT2_DIMS.layers, dtype: "float32" },
    executor,
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

/* ------------------------------------------------------------------------------------------------------------
 * Profile of one gpt2 LoRA training step (BENCH_PARTS=profile, or --profile): where the step's wall time goes.
 * ------------------------------------------------------------------------------------------------------------ */

/** The parts of tfjs-backend-webgpu 4.22's WebGPUBackend that the profile hooks (not its public surface). */
interface WebGPUBackendInternals {
  recordAndSubmit(
    program: { constructor: { name: string } },
    output: { shape: number[] },
    inputs: unknown[],
    uniforms?: unknown,
  ): void;
  submitQueue(): void;
  getBufferData(buffer: GPUBuffer): Promise<ArrayBuffer>;
  /** Set by backend.time() (tf.profile times every kernel with it): each timed dispatch pushes its query. */
  activeTimers?: { name?: string; query?: Promise<number> }[];
  pipelineCache: Record<string, unknown>;
  supportTimestampQuery: boolean;
}

/** One dispatch recorded while profiling: its WGSL program, the step phase, output shape and GPU time. */
interface DispatchRecord {
  program: string;
  phase: string;
  shape: string;
  query?: Promise<number>;
}

/** Counters of what the backend and the device do, and the per-dispatch records while `records` is set. */
interface Hooks {
  dispatches: number;
  submits: number;
  readbacks: number;
  buffersCreated: number;
  bufferBytesCreated: number;
  bindGroups: number;
  phase: string;
  records: DispatchRecord[] | undefined;
  pipelines(): number;
}

/** Wraps the backend's dispatch, submit and readback and the device's createBuffer / createBindGroup. */
function installHooks(): Hooks {
  const b = tf.backend() as unknown as WebGPUBackendInternals;
  if (typeof b.recordAndSubmit !== "function")
    throw new Error(
      "tf.backend() has no recordAndSubmit: not tfjs-backend-webgpu 4.x",
    );
  const device = gpuDevice();
  const hooks: Hooks = {
    dispatches: 0,
    submits: 0,
    readbacks: 0,
    buffersCreated: 0,
    bufferBytesCreated: 0,
    bindGroups: 0,
    phase: "",
    records: undefined,
    pipelines: () => Object.keys(b.pipelineCache).length,
  };
  const record = b.recordAndSubmit.bind(b);
  b.recordAndSubmit = (program, output, inputs, uniforms) => {
    hooks.dispatches++;
    record(program, output, inputs, uniforms);
    if (hooks.records) {
      // While tf.profile times a kernel, each dispatch gets its own pass with timestamps and pushes its query.
      const timer = b.activeTimers?.at(-1);
      hooks.records.push({
        // esbuild may suffix a bundled class name with a digit (MatMulPackedProgram2): drop it.
        program: program.constructor.name.replace(/(Program)\d+$/, "$1"),
        phase: hooks.phase,
        shape:
          (inputs as { shape?: number[] }[])
            .map((t) => (t.shape ?? []).join("×"))
            .join(", ") +
          " → " +
          output.shape.join("×"),
        query: timer && "query" in timer ? timer.query : undefined,
      });
    }
  };
  const submit = b.submitQueue.bind(b);
  b.submitQueue = () => {
    hooks.submits++;
    submit();
  };
  const getBufferData = b.getBufferData.bind(b);
  b.getBufferData = (buffer) => {
    hooks.readbacks++;
    return getBufferData(buffer);
  };
  const createBuffer = device.createBuffer.bind(device);
  device.createBuffer = (descriptor) => {
    hooks.buffersCreated++;
    hooks.bufferBytesCreated += descriptor.size;
    return createBuffer(descriptor);
  };
  const createBindGroup = device.createBindGroup.bind(device);
  device.createBindGroup = (descriptor) => {
    hooks.bindGroups++;
    return createBindGroup(descriptor);
  };
  return hooks;
}

const PROFILE_REPS = Number(env["BENCH_PROFILE_REPS"] ?? (SMOKE ? 1 : 3));
const PROFILE_STEPS = Number(env["BENCH_PROFILE_STEPS"] ?? (SMOKE ? 1 : 2));

/** Per phase: wall ms from the first op to the data being back, split into enqueue (JS) and waiting. */
interface PhaseTiming {
  wall_ms: number;
  enqueue_ms: number;
  wait_ms: number;
  dispatches: number;
  submits: number;
  buffers_created: number;
  buffer_mib_created: number;
  pipelines_compiled: number;
  trimmed_mib?: number;
}

function pad(s: string | number, n: number, right = false): string {
  const t = String(s);
  return right ? t.padStart(n) : t.padEnd(n);
}

async function profilePart(): Promise<void> {
  const hooks = installHooks();
  const backend = tf.backend() as unknown as WebGPUBackendInternals;
  const { model, peft } = await buildModel();
  const out: Record<string, unknown> = {
    config: { ...TRAIN, n_layer: GPT2_DIMS.layers, dtype: "float32" },
    timestamp_query: backend.supportTimestampQuery,
    dawn_flags: DAWN_FLAGS,
    deferred_submit_batch: tf.env().get("WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE"),
  };
  result["profile"] = out;
  const batches = Array.from({ length: 8 }, (_, i) => randomBatch(i + 1));
  const vars = peft.namedTrainableVariables().map((t) => t.variable);

  // The Trainer's step (optimizerStep with one micro-batch, clipping at 1.0, AdamW), phase by phase.
  const optimizer = new AdamW([{ variables: vars }], { weightDecay: 0 });
  peft.state.training = true;
  const forward = (b: TrainBatch) =>
    tf.tidy(() => peft.loss(b.inputIds, b.labels));
  const forwardBackward = (b: TrainBatch) => {
    const { value, grads } = tf.variableGrads(() => {
      hooks.phase = "forward";
      const loss = peft.loss(b.inputIds, b.labels).mul(1) as tf.Scalar;
      hooks.phase = "backward";
      return loss;
    }, vars);
    const zero = tf.scalar(0);
    const loss = zero.add(value) as tf.Scalar; // as the Trainer sums micro-batch losses
    tf.dispose([zero, value]);
    return { loss, grads };
  };
  const update = (grads: tf.NamedTensorMap) => {
    hooks.phase = "optimizer";
    const clipped = clipGradNorm(grads, 1.0);
    optimizer.step(clipped.grads, TRAIN.lr);
    tf.dispose([...Object.values(grads), ...Object.values(clipped.grads)]);
    return clipped.totalNorm;
  };
  const stepSync = (b: TrainBatch) => {
    const { loss, grads } = forwardBackward(b);
    const gradNorm = update(grads);
    hooks.phase = "readback";
    return { loss, gradNorm };
  };
  const losses: number[] = [];
  const fullStep = async (b: TrainBatch, trim: boolean) => {
    const { loss, gradNorm } = stepSync(b);
    const [l] = await Promise.all([loss.data(), gradNorm.data()]);
    losses.push(l![0]!);
    tf.dispose([loss, gradNorm]);
    return trim ? trimBufferPool() : 0;
  };

  // Warm-up: pipelines compile and the buffer pool fills.
  const tw = performance.now();
  for (let i = 0; i < WARMUP; i++) await fullStep(batches[i % 8]!, true);
  log(
    `warm-up: ${WARMUP} steps in ${((performance.now() - tw) / 1000).toFixed(2)} s`,
  );

  /** Runs `body` PROFILE_REPS times; body returns the time its JS enqueue ended and, optionally, bytes trimmed. */
  const phase = async (
    name: string,
    body: (
      i: number,
      begin: () => number,
    ) => Promise<{ enqueued: number; trimmed?: number }>,
  ): Promise<PhaseTiming> => {
    const acc = {
      wall: 0,
      enq: 0,
      d: 0,
      s: 0,
      bc: 0,
      bb: 0,
      p: 0,
      trimmed: 0,
    };
    for (let i = 0; i < PROFILE_REPS; i++) {
      let start = 0;
      let c0 = [0, 0, 0, 0, 0];
      // The body calls begin() where the timed part starts; the counters count from there too.
      const begin = () => {
        c0 = [
          hooks.dispatches,
          hooks.submits,
          hooks.buffersCreated,
          hooks.bufferBytesCreated,
          hooks.pipelines(),
        ];
        start = performance.now();
        return start;
      };
      const { enqueued, trimmed } = await body(i, begin);
      const end = performance.now();
      acc.wall += end - start;
      acc.enq += enqueued - start;
      acc.d += hooks.dispatches - c0[0]!;
      acc.s += hooks.submits - c0[1]!;
      acc.bc += hooks.buffersCreated - c0[2]!;
      acc.bb += hooks.bufferBytesCreated - c0[3]!;
      acc.p += hooks.pipelines() - c0[4]!;
      acc.trimmed += trimmed ?? 0;
    }
    const n = PROFILE_REPS;
    const t: PhaseTiming = {
      wall_ms: round(acc.wall / n),
      enqueue_ms: round(acc.enq / n),
      wait_ms: round((acc.wall - acc.enq) / n),
      dispatches: round(acc.d / n),
      submits: round(acc.s / n),
      buffers_created: round(acc.bc / n),
      buffer_mib_created: round(acc.bb / n / 2 ** 20),
      pipelines_compiled: round(acc.p / n),
    };
    if (acc.trimmed > 0) t.trimmed_mib = round(acc.trimmed / n / 2 ** 20);
    log(
      `${pad(name, 38)} wall ${pad(t.wall_ms.toFixed(1), 8, true)} ms = enqueue (JS) ${pad(t.enqueue_ms.toFixed(1), 8, true)} + wait ${pad(t.wait_ms.toFixed(1), 8, true)};` +
        ` ${t.dispatches} dispatches, ${t.submits} submits, ${t.buffers_created} buffers created (${t.buffer_mib_created} MiB),` +
        ` ${t.pipelines_compiled} pipelines compiled${t.trimmed_mib ? `, ${t.trimmed_mib} MiB trimmed` : ""}`,
    );
    return t;
  };

  const phases: Record<string, PhaseTiming> = {};
  out["phases"] = phases;
  log(`\nphases (mean of ${PROFILE_REPS}, each ending in a readback):`);
  // A fresh 1-element result read back on an idle GPU: one tiny dispatch plus the mapAsync round trip.
  const one = tf.scalar(1);
  phases["readback_idle"] = await phase(
    "readback, idle GPU (1-element add)",
    async (_i, begin) => {
      const settle = tf.ones([1]); // a readback first, so the GPU is idle
      await settle.data();
      settle.dispose();
      begin();
      const y = one.add(1);
      const enqueued = performance.now();
      await y.data();
      y.dispose();
      return { enqueued };
    },
  );
  phases["forward"] = await phase(
    "forward only (loss, no tape)",
    async (i, begin) => {
      begin();
      const loss = forward(batches[i % 8]!);
      const enqueued = performance.now();
      await loss.data();
      loss.dispose();
      return { enqueued };
    },
  );
  phases["forward_backward"] = await phase(
    "forward+backward (variableGrads)",
    async (i, begin) => {
      begin();
      const { loss, grads } = forwardBackward(batches[i % 8]!);
      const enqueued = performance.now();
      await loss.data();
      tf.dispose([loss, ...Object.values(grads)]);
      return { enqueued };
    },
  );
  phases["optimizer"] = await phase(
    "clip + AdamW (grads ready)",
    async (i, begin) => {
      const { loss, grads } = forwardBackward(batches[i % 8]!);
      await loss.data();
      loss.dispose();
      begin();
      const norm = update(grads);
      const enqueued = performance.now();
      await norm.data();
      norm.dispose();
      return { enqueued };
    },
  );
  /** The full step as the Trainer takes it, with or without its buffer-pool trim afterwards. */
  const timedStep = (trim: boolean) => async (i: number, begin: () => void) => {
    begin();
    const { loss, gradNorm } = stepSync(batches[i % 8]!);
    const enqueued = performance.now();
    await Promise.all([loss.data(), gradNorm.data()]);
    tf.dispose([loss, gradNorm]);
    return trim ? { enqueued, trimmed: trimBufferPool() } : { enqueued };
  };
  phases["step"] = await phase(
    "full step as Trainer (+ pool trim)",
    timedStep(true),
  );
  phases["step_no_trim"] = await phase(
    "full step, no pool trim",
    timedStep(false),
  );
  one.dispose();

  // Per-kernel GPU time: tf.profile times every tfjs kernel with backend.time(), which gives each dispatch its
  // own compute pass with timestamp writes (timestamp-query) and a submit; the hooks record each dispatch's query.
  const gpuByStep: number[] = [];
  const profWall: number[] = [];
  const byKernel = new Map<string, { count: number; ms: number }>();
  const byProgram = new Map<string, { count: number; ms: number }>();
  const byPhase = new Map<string, { count: number; ms: number }>();
  const byShape = new Map<string, { count: number; ms: number }>();
  let engineKernels = 0;
  let kernelSum = 0;
  const add = (
    m: Map<string, { count: number; ms: number }>,
    k: string,
    ms: number,
  ) => {
    const e = m.get(k) ?? { count: 0, ms: 0 };
    e.count++;
    e.ms += ms;
    m.set(k, e);
  };
  const times: number[] = [];
  for (let s = 0; s < PROFILE_STEPS; s++) {
    const records: DispatchRecord[] = [];
    hooks.records = records;
    const t0 = performance.now();
    const info = await tf.profile(async () => {
      const { loss, gradNorm } = stepSync(batches[s % 8]!);
      await Promise.all([loss.data(), gradNorm.data()]);
      tf.dispose([loss, gradNorm]);
      return [];
    });
    hooks.records = undefined;
    const ms = await Promise.all(records.map((r) => r.query ?? 0));
    profWall.push(performance.now() - t0);
    trimBufferPool();
    let sum = 0;
    records.forEach((r, i) => {
      const t = ms[i]!;
      sum += t;
      times.push(t);
      add(byProgram, r.program, t);
      add(byPhase, r.phase, t);
      add(byShape, `${r.phase} ${r.program} ${r.shape}`, t);
    });
    gpuByStep.push(sum);
    for (const k of info.kernels) {
      engineKernels++;
      const t = Number(k.kernelTimeMs) || 0;
      kernelSum += t;
      add(byKernel, k.name, t);
    }
    log(
      `profiled step ${s + 1}: ${records.length} dispatches (${records.filter((r) => r.query).length} timed), ` +
        `${info.kernels.length} tfjs kernels, GPU time ${sum.toFixed(2)} ms (sum of tfjs kernels ${(kernelSum / (s + 1)).toFixed(2)} ms avg), ` +
        `wall while profiling ${profWall.at(-1)!.toFixed(0)} ms`,
    );
  }
  const nSteps = PROFILE_STEPS;
  const gpuMs = gpuByStep.reduce((a, b) => a + b, 0) / nSteps;
  const stepWall = phases["step"]!.wall_ms;
  const nonzero = times.filter((t) => t > 0);
  // Dawn quantizes timestamps to 65536 ns unless started with disable-dawn-features=timestamp_quantization.
  const quantized =
    nonzero.length > 0 &&
    nonzero.every(
      (t) => Math.abs(t * 1e6 - Math.round((t * 1e6) / 65536) * 65536) < 2,
    );
  const table = (
    title: string,
    m: Map<string, { count: number; ms: number }>,
    n: number,
    width: number,
  ) => {
    const rows = [...m.entries()]
      .map(([name, v]) => ({
        name,
        count: round(v.count / nSteps),
        total_ms: round(v.ms / nSteps),
        pct_of_step: round((100 * v.ms) / nSteps / stepWall),
        pct_of_gpu: round((100 * v.ms) / nSteps / gpuMs),
      }))
      .sort((a, b) => b.total_ms - a.total_ms);
    log(
      `\n${title} (per step; % of the ${stepWall.toFixed(1)} ms step wall, % of GPU time)`,
    );
    log(
      `${pad("name", width)} ${pad("count", 6, true)} ${pad("GPU ms", 9, true)} ${pad("% step", 7, true)} ${pad("% GPU", 6, true)}`,
    );
    for (const r of rows.slice(0, n))
      log(
        `${pad(r.name.slice(0, width), width)} ${pad(r.count, 6, true)} ${pad(r.total_ms.toFixed(2), 9, true)} ` +
          `${pad(r.pct_of_step.toFixed(1), 7, true)} ${pad(r.pct_of_gpu.toFixed(1), 6, true)}`,
      );
    return rows;
  };
  const kernels = table("top 15 tfjs kernels by GPU time", byKernel, 15, 28);
  const programs = table("top 15 WGSL programs by GPU time", byProgram, 15, 36);
  const phaseRows = table("GPU time by step phase", byPhase, 10, 12);
  const shapes = table(
    "top 15 (phase, program, input shapes → output shape) by GPU time",
    byShape,
    15,
    90,
  );
  const rest = stepWall - gpuMs;
  const step = phases["step"]!;
  log(
    `\nstep wall ${stepWall.toFixed(1)} ms (mean of ${PROFILE_REPS}, as Trainer) = GPU busy ${gpuMs.toFixed(1)} ms ` +
      `(${((100 * gpuMs) / stepWall).toFixed(1)}%, sum of per-dispatch GPU times) + rest ${rest.toFixed(1)} ms ` +
      `(${((100 * rest) / stepWall).toFixed(1)}%: CPU/JS/tfjs overhead, submits, gaps, readback)`,
  );
  log(
    `JS enqueue of the step ${step.enqueue_ms.toFixed(1)} ms for ${step.dispatches} dispatches ` +
      `(${((1000 * step.enqueue_ms) / Math.max(1, step.dispatches)).toFixed(1)} µs each), then waiting ${step.wait_ms.toFixed(1)} ms; ` +
      `tfjs kernels per step ${round(engineKernels / nSteps)}; timestamps ${quantized ? "QUANTIZED to 65.5 µs" : "not quantized"}`,
  );
  // The Trainer itself, for comparison with the replica above.
  const trainer = await trainerRun(peft, batches, PROFILE_REPS);
  log(
    `Trainer: ${(trainer.ms / PROFILE_REPS).toFixed(1)} ms/step over ${PROFILE_REPS} steps`,
  );
  Object.assign(out, {
    profiled_steps: nSteps,
    reps: PROFILE_REPS,
    step_wall_ms: stepWall,
    gpu_busy_ms: round(gpuMs),
    rest_ms: round(rest),
    gpu_busy_pct: round((100 * gpuMs) / stepWall),
    dispatches_per_step: step.dispatches,
    tfjs_kernels_per_step: round(engineKernels / nSteps),
    tfjs_kernel_gpu_ms_sum: round(kernelSum / nSteps),
    enqueue_us_per_dispatch: round(
      (1000 * step.enqueue_ms) / Math.max(1, step.dispatches),
    ),
    timestamps_quantized: quantized,
    wall_while_profiling_ms: profWall.map((x) => round(x)),
    trainer_ms_per_step: round(trainer.ms / PROFILE_REPS),
    losses: losses.map((x) => round(x, 4)),
    top_kernels: kernels.slice(0, 15),
    top_programs: programs.slice(0, 15),
    gpu_by_phase: phaseRows,
    top_shapes: shapes.slice(0, 15),
  });
  optimizer.dispose();
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
  const ctx: PartContext = { smoke: SMOKE, log, result };
  if (PARTS.includes("engine"))
    await part("engine", () =>
      engineStepPart(ctx, {
        build: buildModel,
        batches: Array.from({ length: 8 }, (_, i) => randomBatch(i + 1)),
        trainer: {
          learningRate: TRAIN.lr,
          schedule: "constant",
          logEvery: 1,
        },
        tokensPerStep: TRAIN.batch * TRAIN.seq,
        warmup: WARMUP,
        steps: Number(env["BENCH_ENGINE_STEPS"] ?? (SMOKE ? 2 : 10)),
        isolated: Number(env["BENCH_ENGINE_ISOLATED"] ?? (SMOKE ? 1 : 3)),
        config: { ...TRAIN, n_layer: GPT2_DIMS.layers, dtype: "float32" },
      }),
    );
  if (PARTS.includes("profile")) await part("profile", profilePart);
  if (PARTS.includes("variants"))
    await part("variants", () => variantsPart({ smoke: SMOKE, log, result }));
  if (PARTS.includes("adamw")) await part("adamw", () => adamwPart(ctx));
  if (PARTS.includes("packed")) await part("packed", () => packedPart(ctx));
  if (PARTS.includes("decode"))
    await part("decode", () =>
      decodePart(ctx, () =>
        randomModel(
          GPT2,
          gpuInfo().limits["maxStorageBufferBindingSize"] ?? 1 << 27,
        ),
      ),
    );
  const unanswered = PARTS.filter((p) => p && !partsRun.has(p));
  if (unanswered.length > 0) {
    result["parts_not_here"] = unanswered;
    log(
      `\nBENCH_PARTS named ${unanswered.join(", ")}: no such part in this bench.ts (skipped)`,
    );
  }
}
try {
  disposeRuntime();
} catch (error) {
  log(`disposeRuntime: ${errorText(error)}`);
}
console.log(JSON.stringify(result));
process.exit(Object.keys(failures).length === 0 ? 0 : 1);
