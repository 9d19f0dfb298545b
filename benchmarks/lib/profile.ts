/**
 * The top kernels of one training step by GPU time, from tf.profile. On tfjs-backend-webgpu each kernel then runs
 * in its own compute pass bracketed by timestamp queries when the device has `timestamp-query`; without it tfjs
 * reports zero for every kernel, so the table says which timer it used.
 */
import * as tf from "@tensorflow/tfjs";
import { gpuInfo, type TrainableModel, type TrainBatch } from "@webtune/core";
import { optimizerFor, syncStep } from "./train_step.js";

export interface KernelRow {
  kernel: string;
  count: number;
  gpu_ms: number;
  share: number;
}

export interface StepProfile {
  timer: "timestamp-query" | "none (no timestamp-query: counts only)";
  gpu_ms: number;
  kernels: number;
  top: KernelRow[];
}

export async function profileStep(
  model: TrainableModel,
  batch: TrainBatch,
  top = 15,
): Promise<StepProfile> {
  const optimizer = optimizerFor(model);
  try {
    const info = await tf.profile(() => syncStep(model, optimizer, batch));
    const byName = new Map<string, { count: number; ms: number }>();
    for (const k of info.kernels) {
      const row = byName.get(k.name) ?? { count: 0, ms: 0 };
      row.count++;
      row.ms += Number(k.kernelTimeMs) || 0;
      byName.set(k.name, row);
    }
    const total = [...byName.values()].reduce((s, r) => s + r.ms, 0);
    const rows = [...byName.entries()]
      .map(([kernel, r]) => ({
        kernel,
        count: r.count,
        gpu_ms: r.ms,
        share: total > 0 ? r.ms / total : 0,
      }))
      .sort((a, b) => b.gpu_ms - a.gpu_ms || b.count - a.count)
      .slice(0, top);
    return {
      timer: gpuInfo().features.includes("timestamp-query")
        ? "timestamp-query"
        : "none (no timestamp-query: counts only)",
      gpu_ms: total,
      kernels: info.kernels.length,
      top: rows,
    };
  } finally {
    optimizer.dispose();
  }
}
