/**
 * Fused LoRA linear forward+backward against the same maths composed from stock tfjs ops (matMul, add, mul,
 * autograd), in one process, on the same device and shapes. Prints a table; the last line is JSON:
 *   {"kernel_speedup_fwd_bwd": <geometric mean of naive_ms / fused_ms>, "device": "..."}
 *
 * Usage: npm run bench:kernels [-- --reps 5 --variant shared|direct]
 */
import { parseArgs } from "node:util";
import * as tf from "@tensorflow/tfjs";
import Table from "cli-table3";
import {
  disposeRuntime,
  initRuntime,
  loraLinear,
  setLoraKernelVariant,
  type KernelKind,
} from "@webtune/core";

interface Shape {
  name: string;
  T: number;
  IN: number;
  OUT: number;
  R: number;
  weightLayout: "in_out" | "out_in";
  bias: boolean;
}

const SHAPES: Shape[] = [
  {
    name: "GPT-2 small c_attn",
    T: 1024,
    IN: 768,
    OUT: 2304,
    R: 8,
    weightLayout: "in_out",
    bias: true,
  },
  {
    name: "SmolLM2-135M q_proj",
    T: 1024,
    IN: 576,
    OUT: 576,
    R: 16,
    weightLayout: "out_in",
    bias: false,
  },
  {
    name: "MLP up_proj (576→1536)",
    T: 1024,
    IN: 576,
    OUT: 1536,
    R: 16,
    weightLayout: "out_in",
    bias: false,
  },
];

const { values: args } = parseArgs({
  options: {
    reps: { type: "string", default: "3" },
    variant: { type: "string" },
  },
});
const reps = Number(args.reps);
if (!Number.isInteger(reps) || reps < 1)
  throw new Error(`--reps must be a positive integer, got ${args.reps}`);
if (
  args.variant !== undefined &&
  args.variant !== "shared" &&
  args.variant !== "direct"
) {
  throw new Error(
    `--variant must be 'shared' or 'direct', got ${args.variant}`,
  );
}
setLoraKernelVariant(args.variant as KernelKind | undefined);

type Step = (x: tf.Tensor, A: tf.Tensor, B: tf.Tensor) => tf.Tensor;

/** y and (dx, dA, dB) for the cotangent dy, then a wait until the GPU has finished all of them. */
async function forwardBackward(
  f: Step,
  x: tf.Tensor,
  A: tf.Tensor,
  B: tf.Tensor,
  dy: tf.Tensor,
): Promise<number> {
  const start = performance.now();
  const { value, grads } = tf.valueAndGrads(f)([x, A, B], dy);
  // Reading every output back is the sync point; both contenders pay the same copies.
  await Promise.all([value, ...grads].map((t) => t.data()));
  const ms = performance.now() - start;
  tf.dispose([value, ...grads]);
  return ms;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function benchShape(shape: Shape) {
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

  // Warm-up compiles every pipeline; then alternate the contenders so drift in machine load hits both.
  await forwardBackward(fused, x, A, B, dy);
  await forwardBackward(naive, x, A, B, dy);
  const fusedMs: number[] = [];
  const naiveMs: number[] = [];
  for (let i = 0; i < reps; i++) {
    naiveMs.push(await forwardBackward(naive, x, A, B, dy));
    fusedMs.push(await forwardBackward(fused, x, A, B, dy));
  }
  tf.dispose([x, W, A, B, dy]);
  bias?.dispose();
  const flops = 2 * T * IN * OUT * 2 + 2 * T * R * (IN + OUT) * 3; // x·W and dy·Wᵀ, plus the low-rank products
  return { fused: median(fusedMs), naive: median(naiveMs), flops };
}

const info = await initRuntime();
const device = `${info.vendor} ${info.architecture} ${info.description}`.trim();
const table = new Table({
  head: [
    "shape",
    "T×in→out, r",
    "naive ms",
    "fused ms",
    "speedup",
    "fused GFLOP/s",
  ],
});
const ratios: number[] = [];
for (const shape of SHAPES) {
  const r = await benchShape(shape);
  const speedup = r.naive / r.fused;
  ratios.push(speedup);
  table.push([
    shape.name,
    `${shape.T}×${shape.IN}→${shape.OUT}, ${shape.R}`,
    r.naive.toFixed(1),
    r.fused.toFixed(1),
    `${speedup.toFixed(2)}×`,
    (r.flops / r.fused / 1e6).toFixed(2),
  ]);
}
const geomean = Math.exp(
  ratios.reduce((s, v) => s + Math.log(v), 0) / ratios.length,
);
console.log(
  `device: ${device}; kernel variant: ${args.variant ?? "auto"}; median of ${reps} runs after a warm-up`,
);
console.log(table.toString());
console.log(
  JSON.stringify({
    kernel_speedup_fwd_bwd: Number(geomean.toFixed(3)),
    device,
  }),
);
disposeRuntime();
process.exit(0);
