/**
 * The public frozen linear op: y = x·W + b with W in its stored layout, as one tiled WGSL matmul on WebGPU,
 * differentiable (dx always; dW and db when W and b are trained, as in a full fine-tune).
 */
import * as tf from "@tensorflow/tfjs";
import { ShapeError } from "../../errors.js";
import { requireRuntime } from "../../runtime/runtime.js";
import { LINEAR_KERNELS, type WeightRead } from "./attrs.js";
import { registerLinearGradient } from "./grad.js";
import { registerLinearWebGPUKernels } from "./webgpu.js";

let registered = false;

function ensureRegistered(): void {
  if (registered) return;
  registerLinearWebGPUKernels();
  registerLinearGradient();
  registered = true;
}

/**
 * y = x·W (+ b). x: [..., in]; W: [in, out] ('in_out', GPT-2's Conv1D) or [out, in] ('out_in', nn.Linear), read
 * in place; bias: [out] or null. On WebGPU this is webtune's tiled matmul kernel; on other backends, tf.matMul.
 *
 * @example
 * ```ts
 * await initRuntime();
 * const y = linear(x, layer.weight, layer.bias, "out_in"); // x [B, T, 576], W [1536, 576] -> [B, T, 1536]
 * ```
 */
export function linear(
  x: tf.Tensor,
  W: tf.Tensor2D,
  bias: tf.Tensor1D | null,
  weightLayout: "in_out" | "out_in",
): tf.Tensor {
  const IN = x.shape[x.rank - 1]!;
  const [wIn, OUT] =
    weightLayout === "in_out"
      ? [W.shape[0], W.shape[1]]
      : [W.shape[1], W.shape[0]];
  if (wIn !== IN)
    throw new ShapeError(
      `linear: W [${W.shape.join(", ")}] read as ${weightLayout === "in_out" ? "[in, out]" : "[out, in]"} expects ${wIn} input features, but x [${x.shape.join(", ")}] has ${IN}.`,
    );
  if (bias && (bias.rank !== 1 || bias.shape[0] !== OUT))
    throw new ShapeError(
      `linear: bias [${bias.shape.join(", ")}] must be [out] = [${OUT}].`,
    );
  return tf.tidy(() => {
    const x2d = x.reshape([-1, IN]) as tf.Tensor2D;
    const y =
      tf.getBackend() === "webgpu" && x.dtype === "float32"
        ? runKernel(x2d, W, bias, weightLayout, OUT)
        : composed(x2d, W, bias, weightLayout);
    return y.reshape([...x.shape.slice(0, -1), OUT]);
  });
}

function composed(
  x: tf.Tensor2D,
  W: tf.Tensor2D,
  bias: tf.Tensor1D | null,
  weightLayout: "in_out" | "out_in",
): tf.Tensor {
  const y = tf.matMul(x, W, false, weightLayout === "out_in");
  return bias ? y.add(bias) : y;
}

function runKernel(
  x: tf.Tensor2D,
  W: tf.Tensor2D,
  bias: tf.Tensor1D | null,
  weightLayout: "in_out" | "out_in",
  OUT: number,
): tf.Tensor {
  const limit =
    requireRuntime().info.limits["maxStorageBufferBindingSize"] ?? Infinity;
  for (const [name, shape] of [
    ["x", x.shape],
    ["W", W.shape],
    ["y", [x.shape[0], OUT]],
  ] as const) {
    const bytes = shape[0] * shape[1] * 4;
    if (bytes > limit)
      throw new ShapeError(
        `linear: ${name} [${shape.join(", ")}] takes ${bytes} bytes, over this device's maxStorageBufferBindingSize (${limit} bytes). Use fewer tokens per call.`,
      );
  }
  ensureRegistered();
  const wLayout: WeightRead = weightLayout === "in_out" ? "kn" : "nk";
  const inputs: tf.NamedTensorMap = bias ? { x, W, bias } : { x, W };
  return tf.engine().runKernel(LINEAR_KERNELS.forward, inputs, {
    wLayout,
  }) as tf.Tensor;
}
