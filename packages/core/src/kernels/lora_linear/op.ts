/**
 * The public LoRA linear op: validation at the edge, then one tfjs kernel with a registered gradient.
 */
import * as tf from "@tensorflow/tfjs";
import { ConfigError, ShapeError } from "../../errors.js";
import { requireRuntime } from "../../runtime/runtime.js";
import { dequantizeMatrix } from "../gather/op.js";
import {
  checkMatrix,
  packedKernelInputs,
  weightAttrs,
  weightBindings,
} from "../quant/inputs.js";
import { isPacked, type Matrix } from "../quant/packed.js";
import { KERNELS, type LoraKernelAttrs } from "./attrs.js";
import { registerCpuKernels } from "./cpu.js";
import { registerLoraGradient } from "./grad.js";
import { registerWebGPUKernels } from "./webgpu.js";

export interface LoraLinearOptions {
  /** s in y = x·W + b + s·(drop(x)·Aᵀ)·Bᵀ: lora_alpha / r, or lora_alpha / √r with rsLoRA. */
  scale: number;
  /** 'in_out': W is [in, out] (GPT-2's Conv1D); 'out_in': W is [out, in] (nn.Linear). W is read in place. */
  weightLayout: "in_out" | "out_in";
  /** Dropout probability on LoRA's input (PEFT's lora_dropout), in [0, 1). Default 0. */
  dropout?: number;
  /** Seed of the dropout mask, an integer in [0, 2³²); the backward pass reuses the same mask. Default 0. */
  seed?: number;
}

let registered = false;

function ensureRegistered(): void {
  if (registered) return;
  registerWebGPUKernels();
  registerCpuKernels();
  registerLoraGradient();
  registered = true;
}

/**
 * y = x·W + b + scale · (dropout(x)·Aᵀ)·Bᵀ, fused on WebGPU, with gradients for x, A and B (W and b are frozen).
 *
 * Shapes: x [..., in], W [in, out] or [out, in] (see `weightLayout`), bias [out] or null, A [r, in], B [out, r];
 * y [..., out]. All float32, except that W may be a `PackedMatrix` (f16, int8 or NF4): on WebGPU the kernels
 * dequantize it inside their tile loads. On other backends (tfjs CPU) a packed W is decoded to a transient f32
 * copy for each call: correct, but it materialises the weight.
 *
 * @example
 * ```ts
 * await initRuntime();
 * const { value, grads } = tf.variableGrads(() =>
 *   loraLinear(x, W, null, A, B, { scale: alpha / r, weightLayout: 'out_in' }).square().mean());
 * ```
 */
export function loraLinear(
  x: tf.Tensor,
  W: Matrix,
  bias: tf.Tensor1D | null | undefined,
  A: tf.Tensor2D,
  B: tf.Tensor2D,
  options: LoraLinearOptions,
): tf.Tensor {
  const attrs = validate(x, W, bias ?? undefined, A, B, options);
  if (isPacked(W) && tf.getBackend() !== "webgpu")
    return tf.tidy(() =>
      loraLinear(x, dequantizeMatrix(W), bias, A, B, options),
    );
  const IN = x.shape[x.rank - 1]!;
  const OUT = B.shape[0];
  if (tf.getBackend() === "webgpu") {
    const { info } = requireRuntime();
    checkBindingLimit(
      { x, A, B, y: [x.size / IN, OUT] },
      weightBindings("W", W),
      info.limits["maxStorageBufferBindingSize"] ?? Infinity,
    );
  }
  ensureRegistered();
  return tf.tidy(() => {
    const x2d = x.reshape([-1, IN]);
    const weight = isPacked(W) ? packedKernelInputs(W) : { W };
    const inputs: tf.NamedTensorMap = bias
      ? { x: x2d, ...weight, A, B, bias }
      : { x: x2d, ...weight, A, B };
    const y = tf
      .engine()
      .runKernel(
        isPacked(W) ? KERNELS.forwardPacked : KERNELS.forward,
        inputs,
        {
          ...attrs,
          ...weightAttrs(W),
        } as unknown as tf.NamedAttrMap,
      ) as tf.Tensor;
    return y.reshape([...x.shape.slice(0, -1), OUT]);
  });
}

/** Every tensor a kernel binds must fit one storage binding; a larger one would silently read as zeros. */
function checkBindingLimit(
  tensors: Record<string, tf.Tensor | [number, number]>,
  weight: [string, number][],
  limit: number,
): void {
  const sized = Object.entries(tensors).map(([name, t]): [string, number] => {
    const shape = Array.isArray(t) ? t : t.shape;
    return [
      `${name} [${shape.join(", ")}]`,
      shape.reduce((a, b) => a * b, 1) * 4,
    ];
  });
  for (const [name, bytes] of [...sized, ...weight]) {
    if (bytes > limit) {
      throw new ShapeError(
        `loraLinear: ${name} takes ${bytes} bytes, over this device's maxStorageBufferBindingSize ` +
          `(${limit} bytes). Use fewer tokens per call, or a GPU with a larger binding limit.`,
      );
    }
  }
}

function shapeOf(t: tf.Tensor): string {
  return `[${t.shape.join(", ")}]`;
}

function validate(
  x: tf.Tensor,
  W: Matrix,
  bias: tf.Tensor | undefined,
  A: tf.Tensor,
  B: tf.Tensor,
  options: LoraLinearOptions,
): LoraKernelAttrs {
  const named: [string, tf.Tensor | undefined][] = [
    ["x", x],
    ["bias", bias],
    ["A", A],
    ["B", B],
  ];
  for (const [name, t] of named) {
    if (t === undefined) continue;
    if (t.dtype !== "float32")
      throw new ShapeError(
        `loraLinear: ${name} must be float32, got ${t.dtype} ${shapeOf(t)}.`,
      );
    if (t.isDisposed)
      throw new ShapeError(
        `loraLinear: ${name} ${shapeOf(t)} is already disposed.`,
      );
  }
  if (x.rank < 1)
    throw new ShapeError(`loraLinear: x must be [..., in], got a scalar.`);
  const wShape = checkMatrix("loraLinear", "W", W);
  const wText = `[${wShape.join(", ")}]`;
  for (const [name, t] of [
    ["A", A],
    ["B", B],
  ] as const) {
    if (t.rank !== 2)
      throw new ShapeError(
        `loraLinear: ${name} must be 2-D, got ${shapeOf(t)}.`,
      );
  }
  const { weightLayout } = options;
  if (weightLayout !== "in_out" && weightLayout !== "out_in") {
    throw new ConfigError(
      `loraLinear: weightLayout must be 'in_out' or 'out_in', got ${String(weightLayout)}.`,
    );
  }
  const IN = x.shape[x.rank - 1]!;
  const [wIn, OUT] =
    weightLayout === "in_out" ? wShape : [wShape[1], wShape[0]];
  const layoutText = weightLayout === "in_out" ? "[in, out]" : "[out, in]";
  if (wIn !== IN) {
    throw new ShapeError(
      `loraLinear: W ${wText} read as ${layoutText} expects in = ${wIn}, but x ${shapeOf(x)} has ${IN} features.`,
    );
  }
  const R = A.shape[0]!;
  if (R === 0)
    throw new ShapeError(
      `loraLinear: rank r must be >= 1, but A is ${shapeOf(A)} (r = 0).`,
    );
  if (A.shape[1] !== IN) {
    throw new ShapeError(
      `loraLinear: A ${shapeOf(A)} must be [r, in] = [${R}, ${IN}]: its columns must match x's ${IN} features.`,
    );
  }
  if (B.shape[0] !== OUT || B.shape[1] !== R) {
    throw new ShapeError(
      `loraLinear: B ${shapeOf(B)} must be [out, r] = [${OUT}, ${R}] (out from W ${wText}, r from A ${shapeOf(A)}).`,
    );
  }
  if (bias && (bias.rank !== 1 || bias.shape[0] !== OUT)) {
    throw new ShapeError(
      `loraLinear: bias ${shapeOf(bias)} must be [out] = [${OUT}].`,
    );
  }
  if (x.size === 0)
    throw new ShapeError(`loraLinear: x ${shapeOf(x)} is empty.`);
  const { scale } = options;
  if (typeof scale !== "number" || !Number.isFinite(scale)) {
    throw new ConfigError(
      `loraLinear: scale must be a finite number (lora_alpha / r), got ${String(scale)}.`,
    );
  }
  const dropout = options.dropout ?? 0;
  if (!(dropout >= 0 && dropout < 1)) {
    throw new ConfigError(
      `loraLinear: dropout must be in [0, 1), got ${String(dropout)}.`,
    );
  }
  const seed = options.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new ConfigError(
      `loraLinear: seed must be an integer in [0, 2^32), got ${String(seed)}.`,
    );
  }
  return { scale, weightLayout, dropout, seed };
}
