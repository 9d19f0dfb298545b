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
  const baseWeights = categoryBytes("baseWeights");
  const adapters = categoryBytes("adapters");
  const optimizer = categoryBytes("optimizer");
  const kept = baseWeights + adapters + optimizer;
  const buffers = bufferBytes();
  const total = buffers?.used ?? tf.memory().numBytes;
  const peak = buffers?.peakUsed ?? total;
  return {
    baseWeights,
    adapters,
    optimizer,
    activations: Math.max(0, peak - Math.max(kept, total)),
    other: Math.max(0, total - kept),
    total,
    peak,
    allocated: buffers?.allocated ?? total,
  };
}

/** Starts a new peak, e.g. at the start of a training step. */
export function resetPeakMemory(): void {
  resetPeakBufferBytes();
}
