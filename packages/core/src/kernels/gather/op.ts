/**
 * Reading rows of a frozen matrix (an embedding table, f32 or packed) without copying the matrix to f32, and the
 * one explicit f32 materialisation of a packed matrix, for merging adapters and DoRA norms.
 */
import * as tf from "@tensorflow/tfjs";
import { ConfigError, ShapeError } from "../../errors.js";
import { requireRuntime } from "../../runtime/runtime.js";
import {
  checkMatrix,
  packedKernelInputs,
  weightAttrs,
  weightBindings,
} from "../quant/inputs.js";
import { isPacked, type Matrix } from "../quant/packed.js";
import { GATHER_KERNELS, type GatherAttrs } from "./attrs.js";
import { registerGatherCpuKernels } from "./cpu.js";
import { registerGatherGradients } from "./grad.js";
import { registerGatherWebGPUKernels } from "./webgpu.js";

let registered = false;

function ensureRegistered(): void {
  if (registered) return;
  registerGatherWebGPUKernels();
  registerGatherCpuKernels();
  registerGatherGradients();
  registered = true;
}

/** Every buffer must fit one storage binding; a larger one would silently read as zeros. */
function checkBindingLimit(op: string, bindings: [string, number][]): void {
  if (tf.getBackend() !== "webgpu") return;
  const limit =
    requireRuntime().info.limits["maxStorageBufferBindingSize"] ?? Infinity;
  for (const [name, bytes] of bindings)
    if (bytes > limit)
      throw new ShapeError(
        `${op}: ${name} takes ${bytes} bytes, over this device's maxStorageBufferBindingSize (${limit} bytes).`,
      );
}

function runKernel(
  name: string,
  inputs: tf.NamedTensorMap,
  attrs: GatherAttrs,
): tf.Tensor {
  ensureRegistered();
  return tf
    .engine()
    .runKernel(name, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;
}

function checkIds(ids: tf.Tensor, rowOffset: number): void {
  if (ids.isDisposed)
    throw new ShapeError(
      `gatherRows: ids [${ids.shape.join(", ")}] is already disposed.`,
    );
  if (ids.dtype !== "int32")
    throw new ShapeError(
      `gatherRows: ids must be int32, got ${ids.dtype} [${ids.shape.join(", ")}]. Cast token ids with tf.cast(ids, "int32").`,
    );
  if (!Number.isInteger(rowOffset) || Math.abs(rowOffset) >= 2 ** 31)
    throw new ConfigError(
      `gatherRows: rowOffset must be an int32 integer, got ${String(rowOffset)}.`,
    );
}

/**
 * Rows of a frozen matrix: out[..., :] = table[id − rowOffset, :] where that row lies in [0, rows), else zeros.
 * Shapes: table [rows, cols] (f32 or packed), ids [...] int32 -> [...ids.shape, cols] float32. A packed table
 * is decoded only for the rows read.
 * No gradient is registered: tables are frozen and ids are integers, so a call inside tf.grads is fine as long as
 * the table itself is not what is differentiated.
 *
 * @example
 * ```ts
 * const table = packMatrix(wte, [vocab, 768], "int8");
 * const h = gatherRows(table, tokenIds);                 // [B, T, 768]
 * const shard = gatherRows(table, tokenIds, 25000);      // rows 25000.. of a vocab split in two; others zero
 * ```
 */
export function gatherRows(
  table: Matrix,
  ids: tf.Tensor,
  rowOffset = 0,
): tf.Tensor {
  const [rows, cols] = checkMatrix("gatherRows", "table", table);
  checkIds(ids, rowOffset);
  if (ids.size === 0) return tf.zeros([...ids.shape, cols]);
  checkBindingLimit("gatherRows", [
    ...weightBindings("table", table),
    [`output [${ids.size}, ${cols}]`, ids.size * cols * 4],
  ]);
  const attrs: GatherAttrs = { ...weightAttrs(table), rows, cols, rowOffset };
  return tf.tidy(() => {
    const weight = isPacked(table) ? packedKernelInputs(table) : { W: table };
    const out = runKernel(
      GATHER_KERNELS.gatherRows,
      { ids: ids.reshape([-1]), ...weight },
      attrs,
    );
    return out.reshape([...ids.shape, cols]);
  });
}

/**
 * The f32 values of a frozen matrix as a new [rows, cols] tensor (the caller disposes it). This materialises the
 * whole matrix: use it only where f32 is needed (merging an adapter into the base, DoRA's weight norms), never
 * per step; `linear`, `loraLinear` and `gatherRows` read packed matrices in place. An f32 input is cloned.
 *
 * @example
 * ```ts
 * const W = packMatrix(values, [OUT, IN], "nf4");
 * const merged = tf.tidy(() => dequantizeMatrix(W).add(delta)); // [OUT, IN] f32
 * ```
 */
export function dequantizeMatrix(m: Matrix): tf.Tensor2D {
  const [rows, cols] = checkMatrix("dequantizeMatrix", "m", m);
  if (!isPacked(m)) return tf.clone(m);
  checkBindingLimit("dequantizeMatrix", [
    ...weightBindings("m", m),
    [`output [${rows}, ${cols}]`, rows * cols * 4],
  ]);
  const attrs: GatherAttrs = { ...weightAttrs(m), rows, cols, rowOffset: 0 };
  return runKernel(
    GATHER_KERNELS.dequantize,
    packedKernelInputs(m),
    attrs,
  ) as tf.Tensor2D;
}
