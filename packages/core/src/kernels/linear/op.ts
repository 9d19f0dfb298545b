/**
 * The public frozen linear op: y = x·W + b with W in its stored layout, as one tiled WGSL matmul on WebGPU,
 * differentiable (dx always; dW and db when W and b are trained, as in a full fine-tune). W may be packed
 * (f16, int8, NF4), and is then dequantized inside the matmul's tile loads.
 */
import * as tf from "@tensorflow/tfjs";
import { ShapeError } from "../../errors.js";
import { requireRuntime } from "../../runtime/runtime.js";
import { dequantizeMatrix } from "../gather/op.js";
import {
  checkMatrix,
  packedKernelInputs,
  weightAttrs,
  weightBindings,
} from "../quant/inputs.js";
import { isPacked, type Matrix } from "../quant/packed.js";
import { LINEAR_KERNELS, type LinearAttrs } from "./attrs.js";
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
 * in place, as an f32 tensor or a `PackedMatrix`; bias: [out] or null. On WebGPU this is webtune's tiled matmul
 * kernel, which dequantizes a packed W as it loads it; on other backends, tf.matMul, after decoding a packed W to
 * a transient f32 copy (the fallback materialises the weight for the call).
 *
 * @example
 * ```ts
 * await initRuntime();
 * const y = linear(x, layer.weight, layer.bias, "out_in"); // x [B, T, 576], W [1536, 576] -> [B, T, 1536]
 * const q = packMatrix(values, [1536, 576], "nf4");
 * const yq = linear(x, q, null, "out_in");
 * ```
 */
export function linear(
  x: tf.Tensor,
  W: Matrix,
  bias: tf.Tensor1D | null,
  weightLayout: "in_out" | "out_in",
  options: {
    /**
     * W needs no gradient (a frozen base): the backward pass then keeps W but not x. A packed W is always
     * frozen. Default false.
     */
    frozen?: boolean;
  } = {},
): tf.Tensor {
  const IN = x.shape[x.rank - 1]!;
  const wShape = checkMatrix("linear", "W", W);
  const [wIn, OUT] =
    weightLayout === "in_out" ? wShape : [wShape[1], wShape[0]];
  if (wIn !== IN)
    throw new ShapeError(
      `linear: W [${wShape.join(", ")}] read as ${weightLayout === "in_out" ? "[in, out]" : "[out, in]"} expects ${wIn} input features, but x [${x.shape.join(", ")}] has ${IN}.`,
    );
  if (bias && (bias.rank !== 1 || bias.shape[0] !== OUT))
    throw new ShapeError(
      `linear: bias [${bias.shape.join(", ")}] must be [out] = [${OUT}].`,
    );
  return tf.tidy(() => {
    const x2d = x.reshape([-1, IN]) as tf.Tensor2D;
    const y =
      tf.getBackend() === "webgpu" && x.dtype === "float32"
        ? runKernel(x2d, W, bias, weightLayout, OUT, options.frozen ?? false)
        : composed(
            x2d,
            isPacked(W) ? dequantizeMatrix(W) : W,
            bias,
            weightLayout,
          );
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

/** Every buffer the kernel binds must fit one storage binding; a larger one would silently read as zeros. */
function checkBindingLimit(x: tf.Tensor2D, W: Matrix, OUT: number): void {
  const limit =
    requireRuntime().info.limits["maxStorageBufferBindingSize"] ?? Infinity;
  const sized: [string, number][] = [
    [`x [${x.shape.join(", ")}]`, x.size * 4],
    ...weightBindings("W", W),
    [`y [${x.shape[0]}, ${OUT}]`, x.shape[0] * OUT * 4],
  ];
  for (const [name, bytes] of sized)
    if (bytes > limit)
      throw new ShapeError(
        `linear: ${name} takes ${bytes} bytes, over this device's maxStorageBufferBindingSize (${limit} bytes). Use fewer tokens per call.`,
      );
}

function runKernel(
  x: tf.Tensor2D,
  W: Matrix,
  bias: tf.Tensor1D | null,
  weightLayout: "in_out" | "out_in",
  OUT: number,
  frozen: boolean,
): tf.Tensor {
  checkBindingLimit(x, W, OUT);
  ensureRegistered();
  const attrs: LinearAttrs = {
    wLayout: weightLayout === "in_out" ? "kn" : "nk",
    wShape: isPacked(W) ? W.shape : [W.shape[0], W.shape[1]],
    ...weightAttrs(W),
  };
  const weight = isPacked(W) ? packedKernelInputs(W) : { W };
  const inputs: tf.NamedTensorMap = bias
    ? { x, ...weight, bias }
    : { x, ...weight };
  const kernel = isPacked(W)
    ? LINEAR_KERNELS.forwardPacked
    : frozen
      ? LINEAR_KERNELS.forwardFrozen
      : LINEAR_KERNELS.forward;
  return tf
    .engine()
    .runKernel(
      kernel,
      inputs,
      attrs as unknown as tf.NamedAttrMap,
    ) as tf.Tensor;
}
