/**
 * GPU memory by category. The loader tags the base weights, LoRA its adapters and the optimizer its moments;
 * what the device holds beyond them during a step is activations (and gradients), and at rest anything else
 * (KV caches, tensors the caller keeps) is "other". Totals come from tfjs-backend-webgpu's buffer manager.
 */
import * as tf from "@tensorflow/tfjs";
import { bufferBytes, resetPeakBufferBytes } from "../backend/buffers.js";

export type MemoryCategory = "baseWeights" | "adapters" | "optimizer";

/** Bytes on the GPU, by category. */
export interface GpuMemory {
  /** The frozen (or, in full fine-tuning, trained) weights of the base model, packed forms at their packed size. */
  baseWeights: number;
  /** LoRA/DoRA adapter tensors. */
  adapters: number;
  /** Optimizer state (AdamW's two moments per trained tensor). */
  optimizer: number;
  /**
   * The most bytes held beyond weights, adapters and optimizer at any moment since `resetPeakMemory` (or since
   * the runtime started): activations kept for the backward pass, gradients, and transient buffers.
   */
  activations: number;
  /** In use now beyond the three categories: KV caches, tensors the caller holds, buffers awaiting release. */
  other: number;
  /** Buffers in use now. */
  total: number;
  /** The peak of `total` since `resetPeakMemory`. */
  peak: number;
  /** Buffers allocated from the device, including tfjs's pool of released buffers kept for reuse. */
  allocated: number;
}

const tagged: Record<MemoryCategory, Set<tf.Tensor>> = {
  baseWeights: new Set(),
  adapters: new Set(),
  optimizer: new Set(),
};

/** Buffers the compiled training step owns (arenas, training state), outside tfjs's buffer manager. */
const engineBuffers = new Map<GPUBuffer, MemoryCategory | undefined>();
let enginePeak = 0;

/** Counts a buffer the engine created, under `category` (default: activations and other). */
export function trackEngineBuffer(
  buffer: GPUBuffer,
  category?: MemoryCategory,
): void {
  engineBuffers.set(buffer, category);
  enginePeak = Math.max(enginePeak, engineBytes());
}

/** Forgets a buffer the engine destroys. */
export function untrackEngineBuffer(buffer: GPUBuffer): void {
  engineBuffers.delete(buffer);
}

/** Buffers the engine holds now (tests check that a finished run leaves none behind). */
export function liveEngineBuffers(): number {
  return engineBuffers.size;
}

function engineBytes(category?: MemoryCategory | "all"): number {
  let n = 0;
  for (const [b, c] of engineBuffers)
    if (category === "all" || c === category) n += b.size;
  return n;
}

/** Counts these tensors under a category from now until they are disposed. */
export function tagMemory(
  category: MemoryCategory,
  tensors: tf.Tensor[],
): void {
  for (const t of tensors) tagged[category].add(t);
}

/** Live bytes of a category; forgets disposed tensors. Views sharing one buffer are counted once. */
function categoryBytes(category: MemoryCategory): number {
  const seen = new Set<object>();
  let bytes = 0;
  for (const t of tagged[category]) {
    if (t.isDisposed) {
      tagged[category].delete(t);
      continue;
    }
    if (seen.has(t.dataId)) continue;
    seen.add(t.dataId);
    // webtune's tensors are f32 or int32 words (packed weights); tfjs-backend-webgpu stores both in 4 bytes.
    bytes += t.size * 4;
  }
  return bytes;
}

/**
 * Where the GPU's memory goes now, and the peak since `resetPeakMemory`. On the CPU backend totals are tfjs's
 * tensor bytes.
 *
 * @example
 * ```ts
 * resetPeakMemory();
 * await trainer.train(data);
 * const m = gpuMemory();
 * console.log(`weights ${m.baseWeights >> 20} MiB, activations ${m.activations >> 20} MiB, peak ${m.peak >> 20} MiB`);
 * ```
 */
export function gpuMemory(): GpuMemory {
  const tagged = {
    baseWeights: categoryBytes("baseWeights"),
    adapters: categoryBytes("adapters"),
    optimizer: categoryBytes("optimizer"),
  };
  const kept = tagged.baseWeights + tagged.adapters + tagged.optimizer;
  const buffers = bufferBytes();
  const used = buffers?.used ?? tf.memory().numBytes;
  const tfjsPeak = buffers?.peakUsed ?? used;
  // The compiled step's buffers: its training state (tagged) and its arenas, which hold activations.
  const engine = engineBytes("all");
  const engineState = engineBytes("adapters") + engineBytes("optimizer");
  const enginePeakNow = Math.max(engine, enginePeak);
  return {
    baseWeights: tagged.baseWeights,
    adapters: tagged.adapters + engineBytes("adapters"),
    optimizer: tagged.optimizer + engineBytes("optimizer"),
    activations:
      Math.max(0, tfjsPeak - Math.max(kept, used)) +
      Math.max(0, enginePeakNow - engineState),
    other: Math.max(0, used - kept),
    total: used + engine,
    peak: tfjsPeak + enginePeakNow,
    allocated: (buffers?.allocated ?? used) + engine,
  };
}

/** Starts a new peak, e.g. at the start of a training step. */
export function resetPeakMemory(): void {
  resetPeakBufferBytes();
  enginePeak = engineBytes("all");
}
