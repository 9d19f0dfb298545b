/**
 * The `memory` scenario: peak GPU bytes of LoRA training steps on 0.5B-class configs with compact bases (f16,
 * NF4, activation checkpointing), each against the same model with an f32 base in the same run; and whether an
 * NF4 base trains as well as an f32 one (validation loss after the same steps on the same data).
 *
 * Peaks are `gpuMemory()`'s: the most bytes of GPU buffers tfjs-backend-webgpu had in use at once during a
 * step (buffers whose release waits for submission included; the pool of released buffers not).
 */
import {
  gpuInfo,
  gpuMemory,
  Trainer,
  type StepEvent,
  type TrainBatch,
  type WeightOptions,
} from "@webtune/core";
import {
  configWithLayers,
  DEFAULT_TARGETS,
  dimsOf,
  randomBatch,
  randomModel,
  withLora,
  type ModelName,
} from "./models.js";

export interface MemoryCase {
  name: string;
  model: ModelName;
  weights: WeightOptions;
  gradientCheckpointing: boolean;
  /** The target for the peak, in bytes (1 GB = 10⁹ bytes). */
  targetBytes: number;
}

/** The three targets, at seq 256, batch 1, r 8 on PEFT's default targets. */
export const MEMORY_CASES: MemoryCase[] = [
  {
    name: "SmolLM2-360M, f16 base",
    model: "smollm2-360m",
    weights: { dtype: "float16" },
    gradientCheckpointing: false,
    targetBytes: 1.2e9,
  },
  {
    name: "Qwen2.5-0.5B, NF4 base (double quant, f16 embeddings), checkpointing",
    model: "qwen2.5-0.5b",
    weights: { dtype: "float16", quantize: "nf4", doubleQuant: true },
    gradientCheckpointing: true,
    targetBytes: 1.0e9,
  },
  {
    name: "gemma-3-270m, f16 base, chunked CE",
    model: "gemma-3-270m",
    weights: { dtype: "float16" },
    gradientCheckpointing: false,
    targetBytes: 1.0e9,
  },
];

export interface MemorySize {
  /** Layers of each model; undefined keeps the real depth. */
  layers?: number;
  /** Vocabulary of each model; undefined keeps the real one (the smoke size cuts it to stay fast). */
  vocab?: number;
  seq: number;
  steps: number;
  /** Also measure each model with an f32 base and no checkpointing. */
  baseline: boolean;
}

export interface StepMemory {
  peak_bytes: number;
  base_weight_bytes: number;
  adapter_bytes: number;
  optimizer_bytes: number;
  activation_bytes: number;
  estimated_peak_bytes: number;
  ms_per_step: number;
  last_loss: number;
}

/** The model's config at the size's depth and vocabulary. */
function sized(
  model: ModelName,
  size: { layers?: number; vocab?: number },
): Record<string, unknown> {
  const config = configWithLayers(model, size.layers);
  if (size.vocab !== undefined) config["vocab_size"] = size.vocab;
  return config;
}

function bindingLimit(): number {
  return gpuInfo().limits["maxStorageBufferBindingSize"] ?? 2 ** 31 - 1;
}

/** Trains `steps` LoRA steps on one random batch and reports the largest step peak and the categories. */
export async function measureSteps(
  model: ModelName,
  weights: WeightOptions,
  gradientCheckpointing: boolean,
  size: MemorySize,
): Promise<StepMemory> {
  const config = sized(model, size);
  const base = await randomModel(config, bindingLimit(), weights);
  const peft = withLora(base, {
    r: 8,
    alpha: 16,
    targetModules: DEFAULT_TARGETS[model],
  });
  try {
    const batch = randomBatch(1, size.seq, dimsOf(config).vocab, 11);
    const plan = peft.memoryPlan({
      batch: 1,
      tokens: size.seq,
      gradientCheckpointing,
    });
    const events: StepEvent[] = [];
    const trainer = new Trainer(peft, {
      learningRate: 1e-4,
      schedule: "constant",
      maxSteps: size.steps,
      gradientCheckpointing,
      onEvent: (e) => {
        if (e.type === "step") events.push(e);
      },
    });
    await trainer.train({ train: [batch] });
    const m = gpuMemory();
    const peak = Math.max(...events.map((e) => e.peakGpuBytes));
    const kept = m.baseWeights + m.adapters + m.optimizer;
    const last = events.at(-1)!;
    return {
      peak_bytes: peak,
      base_weight_bytes: m.baseWeights,
      adapter_bytes: m.adapters,
      optimizer_bytes: m.optimizer,
      activation_bytes: Math.max(0, peak - kept),
      estimated_peak_bytes: plan.footprint.peak,
      ms_per_step: last.elapsedMs / events.length,
      last_loss: last.loss,
    };
  } finally {
    peft.dispose();
    base.dispose();
  }
}

/** One target case, and its f32 baseline when the size asks for it. */
export async function memoryCase(
  c: MemoryCase,
  size: MemorySize,
  log: (line: string) => void,
): Promise<Record<string, number | boolean | null>> {
  const compact = await measureSteps(
    c.model,
    c.weights,
    c.gradientCheckpointing,
    size,
  );
  log(
    `  ${c.name}: peak ${(compact.peak_bytes / 1e9).toFixed(3)} GB (weights ${(compact.base_weight_bytes / 1e9).toFixed(3)} GB)`,
  );
  const f32 = size.baseline
    ? await measureSteps(c.model, {}, false, size)
    : undefined;
  if (f32)
    log(`  ${c.name}, f32 base: peak ${(f32.peak_bytes / 1e9).toFixed(3)} GB`);
  return {
    ...compact,
    target_bytes: c.targetBytes,
    met: compact.peak_bytes <= c.targetBytes,
    f32_peak_bytes: f32?.peak_bytes ?? null,
    f32_base_weight_bytes: f32?.base_weight_bytes ?? null,
    f32_vs_compact_peak: f32 ? f32.peak_bytes / compact.peak_bytes : null,
  };
}

/**
 * Sequences from a fixed random bigram chain over a small sub-vocabulary: each token has two likely successors.
 * A LoRA on q/v can learn it, so validation loss falls within a few steps; train and validation rows come from
 * different seeds of the same chain.
 */
export function bigramBatches(
  count: number,
  batch: number,
  seq: number,
  seed: number,
): TrainBatch[] {
  const alphabet = 64;
  let s = seed >>> 0 || 1;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
  // The chain itself is fixed (seed 1234) whatever the row seed.
  const successors = Array.from({ length: alphabet }, (_, i) => [
    (i * 7 + 3) % alphabet,
    (i * 13 + 5) % alphabet,
  ]);
  // Token ids spread over the vocabulary's first thousand, away from special ids.
  const id = (t: number) => 100 + t * 13;
  return Array.from({ length: count }, () => {
    const inputIds = Array.from({ length: batch }, () => {
      let t = next() % alphabet;
      return Array.from({ length: seq }, () => {
        const out = id(t);
        const pick = next() % 10;
        t =
          pick < 7
            ? successors[t]![0]!
            : pick < 9
              ? successors[t]![1]!
              : next() % alphabet;
        return out;
      });
    });
    return { inputIds, labels: inputIds.map((r) => [...r]) };
  });
}

export interface QualitySize {
  layers?: number;
  vocab?: number;
  steps: number;
  batch: number;
  seq: number;
}

/** Validation loss after the same LoRA steps on the same data, with the base in f32 and in NF4. */
export async function nf4Quality(
  size: QualitySize,
  log: (line: string) => void,
): Promise<Record<string, number | boolean>> {
  const train = bigramBatches(size.steps, size.batch, size.seq, 1);
  const val = bigramBatches(2, size.batch, size.seq, 2);
  const run = async (weights: WeightOptions) => {
    const config = sized("smollm2-135m", size);
    const base = await randomModel(config, bindingLimit(), weights);
    const peft = withLora(base, {
      r: 8,
      alpha: 16,
      targetModules: DEFAULT_TARGETS["smollm2-135m"],
    });
    try {
      const trainer = new Trainer(peft, {
        learningRate: 3e-3,
        schedule: "constant",
        maxSteps: size.steps,
      });
      const before = await trainer.evaluate(val, 0);
      const result = await trainer.train({ train, val });
      const after = result.history.filter((e) => e.type === "eval").at(-1)!;
      return { before: before.loss, after: after.loss };
    } finally {
      peft.dispose();
      base.dispose();
    }
  };
  const f32 = await run({});
  log(
    `  f32 base: val loss ${f32.before.toFixed(4)} → ${f32.after.toFixed(4)}`,
  );
  const nf4 = await run({ quantize: "nf4" });
  log(
    `  NF4 base: val loss ${nf4.before.toFixed(4)} → ${nf4.after.toFixed(4)}`,
  );
  const relative = Math.abs(nf4.after - f32.after) / f32.after;
  return {
    f32_val_loss_before: f32.before,
    f32_val_loss_after: f32.after,
    nf4_val_loss_before: nf4.before,
    nf4_val_loss_after: nf4.after,
    relative_difference: relative,
    within_5_percent: relative <= 0.05,
  };
}
