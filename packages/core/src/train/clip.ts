/**
 * Global-norm gradient clipping as `torch.nn.utils.clip_grad_norm_` (L2, `error_if_nonfinite=False`):
 *   total = ‖(‖g_1‖, …, ‖g_n‖)‖₂      (the L2 norm over every gradient element)
 *   coef  = min(maxNorm / (total + 1e-6), 1)
 *   g_i  ← g_i · coef
 * torch always multiplies by the clamped coefficient, so a coefficient of 1 leaves the gradients unchanged, and a
 * non-finite total turns every gradient non-finite, as in torch. tfjs tensors are immutable, so the clipped
 * gradients are new tensors rather than an in-place update.
 */
import * as tf from "@tensorflow/tfjs";
import { ConfigError } from "../errors.js";

/** Clipped gradients and the norm before clipping, both still on the GPU. */
export interface ClippedGrads {
  /** The gradients scaled by min(maxNorm / (total + 1e-6), 1), keyed as the input. The caller disposes them. */
  grads: tf.NamedTensorMap;
  /** The global L2 norm before clipping, a scalar the caller reads (`await totalNorm.data()`) and disposes. */
  totalNorm: tf.Scalar;
}

/**
 * Clips gradients by their global L2 norm, with no GPU→CPU sync: the caller decides when to read the norm.
 * The input gradients are left as they are (and still owned by the caller).
 *
 * @example
 * ```ts
 * const { grads: clipped, totalNorm } = clipGradNorm(grads, 1.0);
 * optimizer.step(clipped, lr);
 * if (step % logEvery === 0) log({ grad_norm: (await totalNorm.data())[0] }); // a CPU-GPU sync point
 * tf.dispose([grads, clipped, totalNorm]);
 * ```
 */
export function clipGradNorm(
  grads: tf.NamedTensorMap,
  maxNorm: number,
): ClippedGrads {
  if (!(Number.isFinite(maxNorm) && maxNorm > 0))
    throw new ConfigError(
      `max_grad_norm must be a finite number > 0, got ${maxNorm}.`,
    );
  return tf.tidy(() => {
    const names = Object.keys(grads);
    if (names.length === 0) return { grads: {}, totalNorm: tf.scalar(0) };
    const norms = names.map((name) => tf.norm(grads[name]!.toFloat()));
    const totalNorm = tf.norm(tf.stack(norms)) as tf.Scalar;
    const coef = tf.minimum(tf.div(maxNorm, totalNorm.add(1e-6)), 1);
    const clipped: tf.NamedTensorMap = {};
    for (const name of names) clipped[name] = grads[name]!.mul(coef);
    return { grads: clipped, totalNorm };
  });
}

/**
 * `clipGradNorm`, then reads the norm back as torch's `clip_grad_norm_(...).item()` would: one GPU→CPU sync.
 *
 * @example
 * ```ts
 * const { grads: clipped, totalNorm } = await clipGradNormAsync(grads, 1.0);
 * console.log(`grad norm ${totalNorm.toFixed(3)}`);
 * ```
 */
export async function clipGradNormAsync(
  grads: tf.NamedTensorMap,
  maxNorm: number,
): Promise<{ grads: tf.NamedTensorMap; totalNorm: number }> {
  const result = clipGradNorm(grads, maxNorm);
  try {
    const [totalNorm] = await result.totalNorm.data();
    return { grads: result.grads, totalNorm: totalNorm! };
  } catch (error) {
    tf.dispose(result.grads);
    throw error;
  } finally {
    result.totalNorm.dispose();
  }
}
