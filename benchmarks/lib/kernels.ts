/**
 * The fused LoRA linear forward+backward (one WGSL kernel per pass) against the same maths composed from stock
 * tfjs ops (matMul, add, mul, autograd), on the same device and shapes, alternating contenders so that drifts in
 * machine load hit both.
 */
import * as tf from "@tensorflow/tfjs";
import { loraLinear } from "@webtune/core";
import { median } from "./stats.js";

export interface KernelShape {
  name: string;
  /** Tokens: batch × sequence. */
  T: number;
  IN: number;
  OUT: number;
  R: number;
  weightLayout: "in_out" | "out_in";
  bias: boolean;
}

/** Projection shapes of the three models, at batch 4 × seq 256, r 8 (PEFT's default targets). */
export function kernelShapes(T: number): KernelShape[] {
  return [
    {
      name: "GPT-2 small c_attn",
      T,
      IN: 768,
      OUT: 2304,
      R: 8,
      weightLayout: "in_out",
      bias: true,
    },
    {
      name: "SmolLM2-135M q_proj",
      T,
      IN: 576,
      OUT: 576,
      R: 8,
      weightLayout: "out_in",
      bias: false,
    },
    {
      name: "SmolLM2-135M v_proj",
      T,
      IN: 576,
      OUT: 192,
      R: 8,
      weightLayout: "out_in",
      bias: false,
    },
    {
      name: "Qwen2.5-0.5B q_proj",
      T,
      IN: 896,
      OUT: 896,
      R: 8,
      weightLayout: "out_in",
      bias: true,
    },
  ];
}

type Step = (x: tf.Tensor, A: tf.Tensor, B: tf.Tensor) => tf.Tensor;

/** y and (dx, dA, dB) for the cotangent dy, then a wait until the GPU has finished all of them. */
async function forwardBackward(
  f: Step,
  inputs: [tf.Tensor, tf.Tensor, tf.Tensor],
  dy: tf.Tensor,
): Promise<number> {
  const start = performance.now();
  const { value, grads } = tf.valueAndGrads(f)(inputs, dy);
  // Reading every output back is the sync point; both contenders pay the same copies.
  await Promise.all([value, ...grads].map((t) => t.data()));
  const ms = performance.now() - start;
  tf.dispose([value, ...grads]);
  return ms;
}

export interface KernelResult {
  naive_ms: number;
  fused_ms: number;
  speedup: number;
  fused_gflops: number;
}

export async function benchKernelShape(
  shape: KernelShape,
  reps: number,
): Promise<KernelResult> {
  const { T, IN, OUT, R } = shape;
  const scale = 2;
  const x = tf.randomNormal([T, IN]);
  const W = tf.randomNormal(
    shape.weightLayout === "in_out" ? [IN, OUT] : [OUT, IN],
    0,
    0.02,
  ) as tf.Tensor2D;
  const bias = shape.bias ? (tf.randomNormal([OUT]) as tf.Tensor1D) : null;
  const A = tf.randomNormal([R, IN], 0, 0.02);
  const B = tf.randomNormal([OUT, R], 0, 0.02);
  const dy = tf.randomNormal([T, OUT]);
  const fused: Step = (xv, Av, Bv) =>
    loraLinear(xv, W, bias, Av as tf.Tensor2D, Bv as tf.Tensor2D, {
      scale,
      weightLayout: shape.weightLayout,
    });
  // What a tfjs user writes: y = x·W (+ b) + s·(x·Aᵀ)·Bᵀ, differentiated by tfjs's autograd.
  const naive: Step = (xv, Av, Bv) => {
    const base = tf.matMul(xv, W, false, shape.weightLayout === "out_in");
    const low = tf
      .matMul(tf.matMul(xv, Av, false, true), Bv, false, true)
      .mul(scale);
    return (bias ? base.add(bias) : base).add(low);
  };
  const inputs: [tf.Tensor, tf.Tensor, tf.Tensor] = [x, A, B];
  await forwardBackward(fused, inputs, dy);
  await forwardBackward(naive, inputs, dy);
  const fusedMs: number[] = [];
  const naiveMs: number[] = [];
  for (let i = 0; i < reps; i++) {
    naiveMs.push(await forwardBackward(naive, inputs, dy));
    fusedMs.push(await forwardBackward(fused, inputs, dy));
  }
  tf.dispose([x, W, A, B, dy]);
  bias?.dispose();
  // x·W and dy·Wᵀ, plus the low-rank products of the forward pass and of dx, dA, dB.
  const flops = 2 * T * IN * OUT * 2 + 2 * T * R * (IN + OUT) * 3;
  const fusedMedian = median(fusedMs);
  const naiveMedian = median(naiveMs);
  return {
    naive_ms: naiveMedian,
    fused_ms: fusedMedian,
    speedup: naiveMedian / fusedMedian,
    fused_gflops: flops / (fusedMedian / 1000) / 1e9,
  };
}
