/**
 * Runs the benchmark scenarios in whatever runtime hosts them (Node on Dawn, or a page in Chromium), each against
 * its baseline in the same run, and returns plain records. Nothing here touches the file system: the host gives
 * the embedded model's files and writes the results.
 */
import * as tf from "@tensorflow/tfjs";
import {
  FullFineTune,
  gpuInfo,
  loadModel,
  rowNlls,
  type ByteSource,
  type ModelSource,
  type TrainBatch,
} from "@webtune/core";
import { randomWeightSource } from "../../test/helpers/random_weights.js";
import { loraStepFlops } from "./flops.js";
import {
  generateWithCache,
  generateWithoutCache,
  sharedPrefix,
} from "./generate.js";
import { hostScenario, type HostSize } from "./host.js";
import { benchKernelShape, kernelShapes } from "./kernels.js";
import { benchLoad } from "./load.js";
import { peakStepBytes } from "./lora_vs_full.js";
import {
  CONFIGS,
  configWithLayers,
  DEFAULT_TARGETS,
  dimsOf,
  randomBatch,
  randomModel,
  withLora,
  type ModelName,
} from "./models.js";
import {
  MEMORY_CASES,
  memoryCase,
  nf4Quality,
  type MemorySize,
  type QualitySize,
} from "./memory.js";
import { buildNaiveLoraModel } from "./naive_lora.js";
import { naiveSteps } from "./naive_step.js";
import { profileStep, type StepProfile } from "./profile.js";
import { measureRoof, type Roof } from "./roof.js";
import { geometricMean, median, timed } from "./stats.js";
import { stepSummary, webtuneSteps } from "./train_step.js";

export const SCENARIOS = [
  "load",
  "kernels",
  "train-step",
  "lora-vs-full",
  "generate",
  "scoring",
  "memory",
  "host",
] as const;
export type Scenario = (typeof SCENARIOS)[number];

/** How big each scenario runs. `full` is the configuration; the others trade size for time. */
export interface BenchSize {
  name: string;
  roof: { n: number; reps: number }[];
  kernelTokens: number;
  kernelReps: number;
  trainModels: ModelName[];
  /** Layers of the train-step models; undefined keeps the real depth. */
  trainLayers?: number;
  batch: number;
  seq: number;
  warmup: number;
  steps: number;
  /** The embedded model's LoRA-vs-full batch. */
  smallBatch: number;
  smallSeq: number;
  smallSteps: number;
  promptTokens: number;
  newTokens: number;
  loadReps: number;
  memory: MemorySize;
  quality: QualitySize;
  /** The host scenario: the train-step models, depth, batch and seq, counted over these steps. */
  host: HostSize;
}

export const SIZES: Record<"full" | "browser" | "smoke", BenchSize> = {
  full: {
    name: "full",
    roof: [
      { n: 1024, reps: 3 },
      { n: 2048, reps: 1 },
    ],
    kernelTokens: 1024,
    kernelReps: 3,
    trainModels: ["smollm2-135m", "gpt2"],
    batch: 4,
    seq: 256,
    warmup: 1,
    steps: 2,
    smallBatch: 8,
    smallSeq: 128,
    smallSteps: 3,
    promptTokens: 16,
    newTokens: 128,
    loadReps: 5,
    memory: { seq: 256, steps: 2, baseline: true },
    quality: { steps: 12, batch: 2, seq: 64 },
    host: { steps: 3, tapeModels: ["gpt2"] },
  },
  // SwiftShader in Chromium runs about 10× slower than lavapipe: the same models at 2 layers and 128 tokens.
  browser: {
    name: "browser",
    roof: [{ n: 512, reps: 2 }],
    kernelTokens: 256,
    kernelReps: 3,
    trainModels: ["smollm2-135m", "gpt2"],
    trainLayers: 2,
    batch: 1,
    seq: 128,
    warmup: 1,
    steps: 2,
    smallBatch: 4,
    smallSeq: 64,
    smallSteps: 2,
    promptTokens: 16,
    newTokens: 128,
    loadReps: 3,
    // The real widths and vocabularies, at 2 layers: the f16/NF4 kernels, chunked loss and checkpointing all run.
    memory: { layers: 2, seq: 128, steps: 1, baseline: false },
    quality: { layers: 2, steps: 4, batch: 1, seq: 32 },
    host: { steps: 2, tapeModels: ["gpt2"] },
  },
  smoke: {
    name: "smoke",
    roof: [{ n: 256, reps: 2 }],
    kernelTokens: 64,
    kernelReps: 1,
    trainModels: ["smollm2-135m", "gpt2"],
    trainLayers: 1,
    batch: 1,
    seq: 16,
    warmup: 1,
    steps: 1,
    smallBatch: 2,
    smallSeq: 16,
    smallSteps: 1,
    promptTokens: 8,
    newTokens: 8,
    loadReps: 1,
    memory: { layers: 1, vocab: 4096, seq: 16, steps: 1, baseline: true },
    quality: { layers: 1, vocab: 4096, steps: 2, batch: 1, seq: 16 },
    host: { steps: 2, tapeModels: ["gpt2"] },
  },
};

/** What the runtime provides. */
export interface BenchHost {
  runtime: "node" | "browser";
  /** The embedded default model, as `loadModel` takes it (a folder in Node, its files in the browser). */
  embeddedModel: ModelSource;
  /** A fresh handle on its model.safetensors: a file source in Node, a Blob in the browser. */
  openEmbeddedWeights(): Promise<ByteSource | Blob>;
  /** Reads the same file whole, without parsing; returns its size. */
  readEmbeddedWeightsRaw(): Promise<number>;
  /** The main thread's CPU time in ms (Node: /proc schedstat); absent where the runtime cannot read it. */
  threadCpuMs?: () => number;
  log(line: string): void;
}

export interface BenchRecord {
  scenario: Scenario;
  case: string;
  config: Record<string, unknown>;
  metrics: Record<string, number | string | boolean | null>;
}

export interface Headline {
  train_step_speedup_vs_naive: number | null;
  mfu: number | null;
  kernel_speedup_fwd_bwd: number | null;
  kv_cache_speedup: number | null;
  /** The host scenario's engine step: gpt2's dispatches and enqueue ms, the most buffers / bind groups created. */
  dispatches_per_step_gpt2: number | null;
  buffers_created_per_step: number | null;
  bind_groups_created_per_step: number | null;
  host_enqueue_ms_gpt2: number | null;
}

export interface RuntimeRun {
  runtime: "node" | "browser";
  device: string;
  adapter: {
    vendor: string;
    architecture: string;
    description: string;
    software: boolean;
    features: string[];
  };
  size: string;
  roof: Roof;
  records: BenchRecord[];
  profiles: Record<string, StepProfile>;
  failures: Record<string, string>;
  headline: Headline;
  seconds: number;
}

export interface RunOptions {
  scenarios: Scenario[];
  size: BenchSize;
  profile: boolean;
}

export async function runBenchmarks(
  host: BenchHost,
  options: RunOptions,
): Promise<RuntimeRun> {
  const start = performance.now();
  const info = gpuInfo();
  const { size } = options;
  const records: BenchRecord[] = [];
  const profiles: Record<string, StepProfile> = {};
  const failures: Record<string, string> = {};
  host.log(`roof: square f32 matmuls ${size.roof.map((r) => r.n).join(", ")}`);
  const roof = await measureRoof(size.roof);
  host.log(`roof: ${roof.gflops.toFixed(2)} GFLOP/s (${roof.best})`);
  const scenarios: Record<Scenario, () => Promise<void>> = {
    load: () => loadScenario(host, size, records),
    kernels: () => kernelScenario(host, size, records),
    "train-step": () =>
      trainScenario(
        host,
        size,
        roof,
        records,
        options.profile ? profiles : undefined,
      ),
    "lora-vs-full": () => loraVsFullScenario(host, size, records),
    generate: () => generateScenario(host, size, records),
    scoring: async () => {
      const model = await loadModel(host.embeddedModel, { cache: false });
      try {
        records.push(await labelScoringCase(host, model, size));
      } finally {
        model.dispose();
      }
    },
    memory: () => memoryScenario(host, size, records),
    host: async () => {
      records.push(...(await hostScenario(host, size)));
    },
  };
  for (const name of options.scenarios) {
    host.log(`scenario ${name}`);
    const before = tf.memory().numTensors;
    try {
      await scenarios[name]();
    } catch (error) {
      failures[name] =
        error instanceof Error
          ? `${error.name}: ${error.message}`
          : String(error);
      host.log(`scenario ${name} FAILED: ${failures[name]}`);
    }
    const leaked = tf.memory().numTensors - before;
    if (leaked !== 0)
      host.log(`scenario ${name}: ${leaked} tensors left behind`);
  }
  return {
    runtime: host.runtime,
    device: `${info.vendor} ${info.architecture} ${info.description}`
      .replace(/\s+/g, " ")
      .trim(),
    adapter: {
      vendor: info.vendor,
      architecture: info.architecture,
      description: info.description,
      software: info.software,
      features: info.features,
    },
    size: size.name,
    roof,
    records,
    profiles,
    failures,
    headline: headlineOf(records),
    seconds: (performance.now() - start) / 1000,
  };
}

export function headlineOf(records: BenchRecord[]): Headline {
  const metric = (scenario: Scenario, name: string, c?: string) =>
    records
      .filter(
        (r) => r.scenario === scenario && (c === undefined || r.case === c),
      )
      .map((r) => r.metrics[name])
      .filter((v): v is number => typeof v === "number");
  const speedups = metric("train-step", "speedup_vs_naive");
  const kernels = metric("kernels", "speedup");
  // The host scenario's engine records (not the tape baseline's), of one model or all.
  const engine = (name: string, model?: string) =>
    records
      .filter(
        (r) =>
          r.scenario === "host" &&
          r.config["executor"] === "compiled" &&
          (model === undefined || r.case === `${model}, engine`),
      )
      .map((r) => r.metrics[name])
      .filter((v): v is number => typeof v === "number");
  const most = (xs: number[]) => (xs.length ? Math.max(...xs) : null);
  return {
    // The smallest over the models: the claim must hold for each.
    train_step_speedup_vs_naive: speedups.length ? Math.min(...speedups) : null,
    mfu: metric("train-step", "mfu", "smollm2-135m")[0] ?? null,
    kernel_speedup_fwd_bwd: kernels.length ? geometricMean(kernels) : null,
    kv_cache_speedup: metric("generate", "speedup")[0] ?? null,
    dispatches_per_step_gpt2: engine("dispatches", "gpt2")[0] ?? null,
    buffers_created_per_step: most(engine("buffers_created")),
    bind_groups_created_per_step: most(engine("bind_groups_created")),
    host_enqueue_ms_gpt2: engine("enqueue_ms", "gpt2")[0] ?? null,
  };
}

async function loadScenario(
  host: BenchHost,
  size: BenchSize,
  records: BenchRecord[],
) {
  const result = await benchLoad(
    () => host.openEmbeddedWeights(),
    () => host.readEmbeddedWeightsRaw(),
    host.embeddedModel,
    size.loadReps,
  );
  records.push({
    scenario: "load",
    case: "embedded model",
    config: {
      source: host.runtime === "node" ? "file" : "Blob",
      reps: size.loadReps,
    },
    metrics: { ...result },
  });
}

async function kernelScenario(
  host: BenchHost,
  size: BenchSize,
  records: BenchRecord[],
) {
  for (const shape of kernelShapes(size.kernelTokens)) {
    const r = await benchKernelShape(shape, size.kernelReps);
    host.log(
      `  ${shape.name}: naive ${r.naive_ms.toFixed(1)} ms, fused ${r.fused_ms.toFixed(1)} ms, ${r.speedup.toFixed(2)}×`,
    );
    records.push({
      scenario: "kernels",
      case: shape.name,
      config: {
        T: shape.T,
        in: shape.IN,
        out: shape.OUT,
        r: shape.R,
        weight: shape.weightLayout,
        bias: shape.bias,
        reps: size.kernelReps,
      },
      metrics: { ...r },
    });
  }
}

async function trainScenario(
  host: BenchHost,
  size: BenchSize,
  roof: Roof,
  records: BenchRecord[],
  profiles: Record<string, StepProfile> | undefined,
) {
  const limit = gpuInfo().limits["maxStorageBufferBindingSize"] ?? 2 ** 31 - 1;
  for (const name of size.trainModels) {
    const config = configWithLayers(name, size.trainLayers);
    const d = dimsOf(config);
    const lora = { r: 8, alpha: 16, targetModules: DEFAULT_TARGETS[name] };
    const batches: TrainBatch[] = [1, 2, 3].map((s) =>
      randomBatch(size.batch, size.seq, d.vocab, s),
    );
    const tokens = size.batch * size.seq;
    const flops = loraStepFlops(d, size, lora);
    const caseConfig = {
      model: `${name} config, random weights`,
      layers: d.layers,
      batch: size.batch,
      seq: size.seq,
      r: lora.r,
      alpha: lora.alpha,
      targets: lora.targetModules.join(","),
      warmup: size.warmup,
      steps: size.steps,
      step_gflop: flops.total / 1e9,
    };

    host.log(
      `  ${name}: webtune (${d.layers} layers, ${size.batch}×${size.seq})`,
    );
    const model = await randomModel(config, limit);
    const peft = withLora(model, lora);
    const ours = await webtuneSteps(peft, batches, size.warmup, size.steps);
    if (profiles) {
      profiles[name] = await profileStep(peft, batches[0]!);
    }
    peft.dispose();
    model.dispose();
    const oursSummary = stepSummary(ours, tokens, flops.total, roof.gflops);
    host.log(
      `  ${name}: webtune ${oursSummary.ms_per_step.toFixed(0)} ms/step; naive next`,
    );

    const naive = await buildNaiveLoraModel(
      config,
      randomWeightSource(config, `${name} config, random weights`),
      { ...lora, maxBindingBytes: limit },
    );
    const theirs = await naiveSteps(naive, batches, size.warmup, size.steps);
    naive.dispose();
    const naiveSummary = stepSummary(theirs, tokens, flops.total, roof.gflops);
    host.log(`  ${name}: naive ${naiveSummary.ms_per_step.toFixed(0)} ms/step`);
    records.push({
      scenario: "train-step",
      case: name,
      config: caseConfig,
      metrics: {
        ...oursSummary,
        naive_ms_per_step: naiveSummary.ms_per_step,
        naive_tokens_per_s: naiveSummary.tokens_per_s,
        naive_mfu: naiveSummary.mfu,
        naive_first_loss: naiveSummary.first_loss,
        speedup_vs_naive: naiveSummary.ms_per_step / oursSummary.ms_per_step,
        step_ms_all: ours.stepMs.map((ms) => Math.round(ms)).join(" "),
        naive_step_ms_all: theirs.stepMs.map((ms) => Math.round(ms)).join(" "),
      },
    });
  }
}

async function loraVsFullScenario(
  host: BenchHost,
  size: BenchSize,
  records: BenchRecord[],
) {
  const vocab = 2048; // the embedded model's; checked below
  const batches = [1, 2, 3].map((s) =>
    randomBatch(size.smallBatch, size.smallSeq, vocab, s),
  );
  const results: Record<
    string,
    { ms: number; peak: number; trainable: number; loss: number }
  > = {};
  for (const mode of ["lora", "full"] as const) {
    const model = await loadModel(host.embeddedModel, {
      cache: false,
      trainable: mode === "full",
    });
    if (model.lm.dims.vocabSize !== vocab)
      throw new Error(
        `the embedded model's vocabulary is ${model.lm.dims.vocabSize}, not ${vocab}`,
      );
    const trainable =
      mode === "lora"
        ? withLora(model, {
            r: 8,
            alpha: 16,
            targetModules: ["q_proj", "v_proj"],
          })
        : new FullFineTune(model);
    const times = await webtuneSteps(trainable, batches, 1, size.smallSteps);
    const peak = await peakStepBytes(trainable, batches[0]!);
    const count = trainable
      .namedTrainableVariables()
      .reduce((n, v) => n + v.variable.size, 0);
    results[mode] = {
      ms: median(times.stepMs),
      peak,
      trainable: count,
      loss: times.losses.at(-1)!,
    };
    if (mode === "lora") (trainable as { dispose(): void }).dispose();
    model.dispose();
    host.log(
      `  ${mode}: ${results[mode]!.ms.toFixed(0)} ms/step, peak ${(peak / 2 ** 20).toFixed(1)} MiB`,
    );
  }
  const { lora, full } = results as Record<
    "lora" | "full",
    (typeof results)[string]
  >;
  records.push({
    scenario: "lora-vs-full",
    case: "embedded model",
    config: {
      batch: size.smallBatch,
      seq: size.smallSeq,
      r: 8,
      targets: "q_proj,v_proj",
      steps: size.smallSteps,
    },
    metrics: {
      lora_ms_per_step: lora.ms,
      full_ms_per_step: full.ms,
      full_vs_lora_time: full.ms / lora.ms,
      lora_peak_bytes: lora.peak,
      full_peak_bytes: full.peak,
      full_vs_lora_peak_bytes: full.peak / lora.peak,
      lora_trainable: lora.trainable,
      full_trainable: full.trainable,
    },
  });
}

async function generateScenario(
  host: BenchHost,
  size: BenchSize,
  records: BenchRecord[],
) {
  const model = await loadModel(host.embeddedModel, { cache: false });
  try {
    const prompt = Array.from(
      { length: size.promptTokens },
      (_, i) => (i * 37 + 11) % model.lm.dims.vocabSize,
    );
    await generateWithCache(model, prompt, 4); // compiles the pipelines of every path
    await generateWithCache(model, prompt, 4, "tape");
    await generateWithoutCache(model, prompt, 4);
    const cached = await timed(() =>
      generateWithCache(model, prompt, size.newTokens),
    );
    const tape = await timed(() =>
      generateWithCache(model, prompt, size.newTokens, "tape"),
    );
    const uncached = await timed(() =>
      generateWithoutCache(model, prompt, size.newTokens),
    );
    const cachedRate = size.newTokens / (cached.ms / 1000);
    const uncachedRate = size.newTokens / (uncached.ms / 1000);
    const tapeRate = size.newTokens / (tape.ms / 1000);
    host.log(
      `  KV cache ${cachedRate.toFixed(1)} tokens/s (tape path ${tapeRate.toFixed(1)}), no cache ${uncachedRate.toFixed(1)} tokens/s`,
    );
    records.push({
      scenario: "generate",
      case: "embedded model, greedy",
      config: { prompt_tokens: size.promptTokens, new_tokens: size.newTokens },
      metrics: {
        cached_tokens_per_s: cachedRate,
        uncached_tokens_per_s: uncachedRate,
        speedup: cachedRate / uncachedRate,
        same_tokens: sharedPrefix(cached.value, uncached.value),
        tape_cached_tokens_per_s: tapeRate,
        engine_vs_tape: cachedRate / tapeRate,
        tape_same_tokens: sharedPrefix(cached.value, tape.value),
      },
    });
    records.push(await greedyBatchCase(host, model, size));
  } finally {
    model.dispose();
  }
}

/**
 * Evaluation's exact match: batched greedy decoding of many prompts (rows of one length share a batch), the
 * engine path (argmax on the GPU) against the tape path, same rows, same run.
 */
async function greedyBatchCase(
  host: BenchHost,
  model: Awaited<ReturnType<typeof loadModel>>,
  size: BenchSize,
): Promise<BenchRecord> {
  const rows = size.name === "smoke" ? 4 : 32;
  const V = model.lm.dims.vocabSize;
  const prompts = Array.from({ length: rows }, (_, r) =>
    Array.from(
      { length: size.promptTokens },
      (_, i) => (r * 101 + i * 37 + 11) % V,
    ),
  );
  const budgets = prompts.map(() => size.newTokens);
  const run = (decodePath: "engine" | "tape") =>
    model.greedyBatch(prompts, budgets, { decodePath });
  await run("engine");
  await run("tape");
  const engine = await timed(() => run("engine"));
  const tape = await timed(() => run("tape"));
  const count = (out: { ids: number[] }[]) =>
    out.reduce((n, r) => n + r.ids.length, 0);
  const engineRate = count(engine.value) / (engine.ms / 1000);
  const tapeRate = count(tape.value) / (tape.ms / 1000);
  host.log(
    `  greedy batch of ${rows}: ${engineRate.toFixed(1)} tokens/s (tape path ${tapeRate.toFixed(1)})`,
  );
  return {
    scenario: "generate",
    case: `embedded model, greedy batch of ${rows}`,
    config: {
      prompt_tokens: size.promptTokens,
      new_tokens: size.newTokens,
      rows,
    },
    metrics: {
      cached_tokens_per_s: engineRate,
      tape_cached_tokens_per_s: tapeRate,
      engine_vs_tape: engineRate / tapeRate,
      tape_same_rows: engine.value.filter(
        (r, i) => JSON.stringify(r.ids) === JSON.stringify(tape.value[i]!.ids),
      ).length,
    },
  };
}

/**
 * Classification by label likelihood: k labels scored after each prompt, the prompt run once and the labels as
 * continuations of its KV cache (`labelNlls`), against each prompt + label as a whole row through tfjs
 * (`rowNlls`, how evaluation scored before). Synthetic prompts of a few lengths, 6 labels of 1 to 3 tokens (+ EOS).
 */
async function labelScoringCase(
  host: BenchHost,
  model: Awaited<ReturnType<typeof loadModel>>,
  size: BenchSize,
): Promise<BenchRecord> {
  const examples = size.name === "smoke" ? 6 : 48;
  const V = model.lm.dims.vocabSize;
  const eos = model.lm.dims.eosTokenIds[0] ?? 0;
  const prompts = Array.from({ length: examples }, (_, e) =>
    Array.from(
      { length: 24 + 8 * (e % 4) },
      (_, i) => (e * 53 + i * 31 + 7) % V,
    ),
  );
  const labels = Array.from({ length: 6 }, (_, j) => [
    ...Array.from({ length: 1 + (j % 3) }, (_, t) => (j * 97 + t * 13 + 5) % V),
    eos,
  ]);
  const rows = prompts.flatMap((p) =>
    labels.map((l) => ({
      inputIds: [...p, ...l],
      labels: [...p.map(() => -100), ...l],
    })),
  );
  const shared = () => model.labelNlls(prompts, labels);
  const whole = () => rowNlls(model, rows);
  await shared();
  await whole();
  const a = await timed(shared);
  const b = await timed(whole);
  const argmin = (xs: number[]) => xs.indexOf(Math.min(...xs));
  const picks = a.value!.nll.map(argmin);
  const same = picks.filter(
    (j, e) =>
      j === argmin(labels.map((_, l) => b.value[e * labels.length + l]!.nll)),
  ).length;
  const wholeTokens = rows.reduce((n, r) => n + r.inputIds.length, 0);
  host.log(
    `  label scoring, ${examples} prompts × ${labels.length} labels: ${a.ms.toFixed(0)} ms (${a.value!.tokens} tokens) against ${b.ms.toFixed(0)} ms (${wholeTokens} tokens) as whole rows`,
  );
  return {
    scenario: "scoring",
    case: `embedded model, ${examples} prompts × ${labels.length} labels`,
    config: { prompt_tokens: "24–48", new_tokens: "1–3 + EOS", rows: examples },
    metrics: {
      scoring_ms: a.ms,
      whole_rows_ms: b.ms,
      scoring_speedup: b.ms / a.ms,
      scoring_tokens: a.value!.tokens,
      whole_rows_tokens: wholeTokens,
      same_labels: same,
    },
  };
}

export { CONFIGS };

async function memoryScenario(
  host: BenchHost,
  size: BenchSize,
  records: BenchRecord[],
) {
  const m = size.memory;
  for (const c of MEMORY_CASES) {
    const metrics = await memoryCase(c, m, (line) => host.log(line));
    records.push({
      scenario: "memory",
      case: c.name,
      config: {
        model: c.model,
        layers: m.layers ?? "all",
        vocab: m.vocab ?? "real",
        batch: 1,
        seq: m.seq,
        r: 8,
        weights: JSON.stringify(c.weights),
        checkpointing: c.gradientCheckpointing,
      },
      metrics,
    });
  }
  const q = size.quality;
  records.push({
    scenario: "memory",
    case: "SmolLM2-135M: NF4 base against f32, validation loss",
    config: {
      model: "smollm2-135m",
      layers: q.layers ?? "all",
      vocab: q.vocab ?? "real",
      batch: q.batch,
      seq: q.seq,
      r: 8,
      steps: q.steps,
    },
    metrics: await nf4Quality(q, (line) => host.log(line)),
  });
}
