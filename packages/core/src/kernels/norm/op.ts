/**
 * RMSNorm and LayerNorm over the last dimension: one fused WGSL dispatch per call on WebGPU (forward), stock tfjs
 * ops elsewhere; differentiable in x and, for full fine-tuning, in the scale/weight/bias.
 */
import * as tf from "@tensorflow/tfjs";
import { ShapeError } from "../../errors.js";
import { NORM_KERNELS } from "./attrs.js";
import { registerNormGradients } from "./grad.js";
import { registerNormWebGPUKernels } from "./webgpu.js";

let registered = false;

function ensureRegistered(): void {
  if (registered) return;
  registerNormWebGPUKernels();
  registerNormGradients();
  registered = true;
}

/** Rows one dispatch can cover: one workgroup per row along x. */
const MAX_ROWS = 65535;

function fusedOnWebGPU(x: tf.Tensor, params: tf.Tensor[], what: string) {
  const C = x.shape[x.rank - 1]!;
  for (const p of params)
    if (p.rank !== 1 || p.shape[0] !== C)
      throw new ShapeError(
        `${what}: parameter [${p.shape.join(", ")}] must be [${C}], the last dimension of x [${x.shape.join(", ")}].`,
      );
  const rows = x.size / C;
  return (
    tf.getBackend() === "webgpu" &&
    x.dtype === "float32" &&
    rows > 0 &&
    rows <= MAX_ROWS
  );
}

/** Runs a row kernel on x viewed as [rows, C], and gives the result x's shape. */
function runRowKernel(
  kernel: string,
  x: tf.Tensor,
  params: Record<string, tf.Tensor1D>,
  eps: number,
): tf.Tensor {
  ensureRegistered();
  return tf.tidy(() => {
    const C = x.shape[x.rank - 1]!;
    const inputs = { x: x.reshape([-1, C]), ...params };
    const y = tf.engine().runKernel(kernel, inputs, { eps }) as tf.Tensor;
    return y.reshape(x.shape);
  });
}

/**
 * x / sqrt(mean(x²) + eps) · scale over the last dim (scale is w in Llama, 1 + w in Gemma).
 *
 * @example
 * ```ts
 * const h = rmsNorm(x, layer.input_layernorm, 1e-5); // x [B, T, C], scale [C]
 * ```
 */
export function rmsNorm(
  x: tf.Tensor,
  scale: tf.Tensor1D,
  eps: number,
): tf.Tensor {
  if (!fusedOnWebGPU(x, [scale], "rmsNorm"))
    return rmsNormComposed(x, scale, eps);
  return runRowKernel(NORM_KERNELS.rms, x, { scale }, eps);
}

/**
 * (x − mean) / sqrt(var + eps) · weight + bias over the last dim.
 *
 * @example
 * ```ts
 * const h = layerNorm(x, ln_1.weight, ln_1.bias, 1e-5); // x [B, T, C]
 * ```
 */
export function layerNorm(
  x: tf.Tensor,
  weight: tf.Tensor1D,
  bias: tf.Tensor1D,
  eps: number,
): tf.Tensor {
  if (!fusedOnWebGPU(x, [weight, bias], "layerNorm"))
    return layerNormComposed(x, weight, bias, eps);
  return runRowKernel(NORM_KERNELS.layer, x, { weight, bias }, eps);
}

/** RMSNorm from stock ops: the path on other backends, and the tests' autograd oracle. */
export function rmsNormComposed(
  x: tf.Tensor,
  scale: tf.Tensor1D,
  eps: number,
): tf.Tensor {
  return tf.tidy(() =>
    x.mul(tf.rsqrt(x.square().mean(-1, true).add(eps))).mul(scale),
  );
}

/** LayerNorm from stock ops: the path on other backends, and the tests' autograd oracle. */
export function layerNormComposed(
  x: tf.Tensor,
  weight: tf.Tensor1D,
  bias: tf.Tensor1D,
  eps: number,
): tf.Tensor {
  return tf.tidy(() => {
    const { mean, variance } = tf.moments(x, -1, true);
    return x
      .sub(mean)
      .mul(tf.rsqrt(variance.add(eps)))
      .mul(weight)
      .add(bias);
  });
}
