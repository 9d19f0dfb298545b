/**
 * The fused AdamW update of one variable: one tfjs kernel, one GPU dispatch on WebGPU, the reference on the CPU.
 * Letters: every tensor is the variable's shape, N elements.
 */
import * as tf from "@tensorflow/tfjs";
import { DeviceError, ShapeError } from "../../errors.js";
import { requireRuntime } from "../../runtime/runtime.js";
import { ADAMW_KERNEL, type AdamWScalars } from "./attrs.js";
import { registerCpuKernel } from "./cpu.js";
import { registerWebGPUKernel } from "./webgpu.js";

export type { AdamWScalars } from "./attrs.js";

let registered = false;

function ensureRegistered(): void {
  if (registered) return;
  registerWebGPUKernel();
  registerCpuKernel();
  registered = true;
}

/**
 * AdamW's update of one variable, as new tensors [p', m', v'] (the inputs are unchanged):
 *   m' = β1·m + (1 − β1)·g,  v' = β2·v + (1 − β2)·g²,  p' = p·decay − stepSize · m' / (√v' / bias2Sqrt + eps)
 * The caller assigns them to its variables and disposes them (see `train/optimizer.ts`).
 */
export function adamwUpdate(
  param: tf.Tensor,
  grad: tf.Tensor,
  expAvg: tf.Tensor,
  expAvgSq: tf.Tensor,
  scalars: AdamWScalars,
): [tf.Tensor, tf.Tensor, tf.Tensor] {
  checkAdamwInputs(param, grad, expAvg, expAvgSq);
  // Nothing to update, and WebGPU cannot bind an empty buffer.
  if (param.size === 0)
    return [param.clone(), expAvg.clone(), expAvgSq.clone()];
  ensureRegistered();
  return tf
    .engine()
    .runKernel(
      ADAMW_KERNEL,
      { param, grad, expAvg, expAvgSq },
      scalars as unknown as tf.NamedAttrMap,
    ) as unknown as [tf.Tensor, tf.Tensor, tf.Tensor];
}

/**
 * Everything `adamwUpdate` would refuse, checked without touching the GPU, so that an optimizer can validate every
 * variable before it updates any (no half-applied step).
 */
export function checkAdamwInputs(
  param: tf.Tensor,
  grad: tf.Tensor,
  expAvg: tf.Tensor,
  expAvgSq: tf.Tensor,
): void {
  const backend = tf.getBackend();
  if (backend !== "webgpu" && backend !== "cpu")
    throw new DeviceError(
      `AdamW runs on tfjs's 'webgpu' and 'cpu' backends, but tfjs runs on '${backend}'; start webtune with initRuntime().`,
    );
  const named = { param, grad, expAvg, expAvgSq };
  for (const [name, t] of Object.entries(named)) {
    if (t.dtype !== "float32" || !tf.util.arraysEqual(t.shape, param.shape))
      throw new ShapeError(
        `AdamW: ${name} must be float32 ${JSON.stringify(param.shape)} like the parameter, got ${t.dtype} ${JSON.stringify(t.shape)}.`,
      );
  }
  const limit =
    backend === "webgpu"
      ? (requireRuntime().info.limits["maxStorageBufferBindingSize"] ??
        Infinity)
      : Infinity;
  if (param.size * 4 > limit)
    throw new ShapeError(
      `AdamW: a variable of shape ${JSON.stringify(param.shape)} takes ${param.size * 4} bytes, over this device's ` +
        `maxStorageBufferBindingSize (${limit} bytes); train fewer or smaller tensors.`,
    );
}
