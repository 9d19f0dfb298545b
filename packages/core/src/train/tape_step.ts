/**
 * One optimizer step on tfjs's autograd (the tape): each micro-batch's loss and gradients, weighted by its share
 * of the step's loss tokens and added up, then global-norm clipping and AdamW. The compiled step (engine/) does
 * the same in one submit; this path is its oracle, and trains where there is no compiled step (the CPU backend).
 * It is plain tfjs autograd: its peak memory holds every block's activations and gradients at once.
 */
import * as tf from "@tensorflow/tfjs";
import { clipGradNorm } from "./clip.js";
import type { AdamW } from "./optimizer.js";
import type { TrainableModel } from "./trainable.js";
import type { TrainBatch } from "./train_batch.js";

/**
 * Loss and gradient norm of the step, still on the GPU: the caller reads them and disposes them. The norm is read
 * before the update (a sync point, as torch's GradScaler reads found_inf): a non-finite norm skips the update, so
 * the weights keep their last finite values, as the compiled step's AdamW does on the GPU.
 */
export async function tapeStep(
  model: TrainableModel,
  group: TrainBatch[],
  options: {
    vars: tf.Variable[];
    optimizer: AdamW;
    lr: number;
    /** Each micro-batch's share of the step's loss tokens. */
    weights: number[];
    /** Each micro-batch's dropout seed. */
    dropoutSeeds: number[];
    maxGradNorm: number;
  },
): Promise<{ loss: tf.Scalar; gradNorm: tf.Scalar }> {
  let sum: tf.NamedTensorMap | undefined;
  let loss: tf.Scalar = tf.scalar(0);
  group.forEach((batch, i) => {
    model.state.dropoutSeed = options.dropoutSeeds[i]!;
    const weight = options.weights[i]!;
    const { value, grads } = tf.variableGrads(
      () => model.loss(batch.inputIds, batch.labels).mul(weight) as tf.Scalar,
      options.vars,
    );
    const next = loss.add(value) as tf.Scalar;
    tf.dispose([loss, value]);
    loss = next;
    if (!sum) sum = grads;
    else {
      const added: tf.NamedTensorMap = {};
      for (const k of Object.keys(grads)) added[k] = sum[k]!.add(grads[k]!);
      tf.dispose([...Object.values(sum), ...Object.values(grads)]);
      sum = added;
    }
  });
  const clipped =
    options.maxGradNorm > 0
      ? clipGradNorm(sum!, options.maxGradNorm)
      : undefined;
  const gradNorm = clipped
    ? clipped.totalNorm
    : tf.tidy(
        () =>
          tf.norm(
            tf.stack(Object.values(sum!).map((g) => tf.norm(g))),
          ) as tf.Scalar,
      );
  if (Number.isFinite((await gradNorm.data())[0]))
    options.optimizer.step(clipped ? clipped.grads : sum!, options.lr);
  tf.dispose([
    ...Object.values(sum!),
    ...(clipped ? Object.values(clipped.grads) : []),
  ]);
  return { loss, gradNorm };
}
