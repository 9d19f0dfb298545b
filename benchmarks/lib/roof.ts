/**
 * The in-run roof: the best square f32 matmul GFLOP/s that the device reaches through tfjs, measured with
 * tf.matMul and with webtune's own tiled kernel (`linear`), whichever is faster. MFU divides by the larger,
 * so a step is never flattered by a slow roof.
 */
import * as tf from "@tensorflow/tfjs";
import { linear } from "@webtune/core";

export interface Roof {
  /** GFLOP/s by contender and size. */
  bySize: Record<string, Record<string, number>>;
  /** The best of all. */
  gflops: number;
  /** Which contender and size gave it. */
  best: string;
}

/** GFLOP/s of `reps` back-to-back n×n×n products, best of `trials`, timed to a 1-element readback. */
async function gflopsOf(
  product: (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor,
  n: number,
  reps: number,
  trials: number,
): Promise<number> {
  const a = tf.randomNormal([n, n]) as tf.Tensor2D;
  const b = tf.randomNormal([n, n]) as tf.Tensor2D;
  const sync = async (t: tf.Tensor) => {
    const one = t.slice([0, 0], [1, 1]);
    await one.data();
    one.dispose();
  };
  const warm = product(a, b);
  await sync(warm);
  warm.dispose();
  let best = 0;
  for (let trial = 0; trial < trials; trial++) {
    const start = performance.now();
    let last: tf.Tensor | undefined;
    for (let i = 0; i < reps; i++) {
      last?.dispose();
      last = product(a, b);
    }
    await sync(last!);
    const ms = performance.now() - start;
    last!.dispose();
    best = Math.max(best, (2 * n ** 3 * reps) / (ms / 1000) / 1e9);
  }
  tf.dispose([a, b]);
  return best;
}

export async function measureRoof(
  sizes: { n: number; reps: number }[],
  trials = 2,
): Promise<Roof> {
  const contenders: Record<
    string,
    (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor
  > = {
    "tf.matMul": (a, b) => tf.matMul(a, b),
    "webtune linear": (a, b) => linear(a, b, null, "in_out"),
  };
  const bySize: Roof["bySize"] = {};
  let gflops = 0;
  let best = "";
  for (const [name, product] of Object.entries(contenders)) {
    bySize[name] = {};
    for (const { n, reps } of sizes) {
      const g = await gflopsOf(product, n, reps, trials);
      bySize[name]![String(n)] = g;
      if (g > gflops) [gflops, best] = [g, `${name} ${n}`];
    }
  }
  return { bySize, gflops, best };
}
