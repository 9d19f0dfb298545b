/**
 * The fused RMSNorm, LayerNorm and RoPE kernels against float64 CPU references (forward), and their gradients
 * against tfjs autograd of the same maths in stock ops. Shapes whose rows are longer and shorter than the
 * 64-invocation workgroup, and not multiples of it. Tolerance: 1e-4 relative to the largest |value| of each output.
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { disposeRuntime } from "@webtune/core";
import {
  layerNorm,
  layerNormComposed,
  rmsNorm,
  rmsNormComposed,
} from "../../../packages/core/src/kernels/norm/op.js";
import {
  applyRope,
  applyRopeComposed,
} from "../../../packages/core/src/kernels/rope/rope.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { seededValues } from "../../helpers/tensors.js";

const TOLERANCE = 1e-4;

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

async function worstRelative(
  actual: tf.Tensor,
  expected: Float64Array | tf.Tensor,
) {
  const a = (await actual.data()) as Float32Array;
  const e =
    expected instanceof Float64Array
      ? expected
      : ((await expected.data()) as Float32Array);
  expect(a.length).toBe(e.length);
  let scale = 0;
  for (const v of e) scale = Math.max(scale, Math.abs(v));
  let worst = 0;
  for (let i = 0; i < e.length; i++)
    worst = Math.max(worst, Math.abs(a[i]! - e[i]!) / scale);
  return worst;
}

function normReference(
  x: Float32Array,
  C: number,
  w: Float32Array,
  b: Float32Array | null,
  eps: number,
) {
  const out = new Float64Array(x.length);
  for (let row = 0; row < x.length / C; row++) {
    let mean = 0;
    if (b) {
      for (let c = 0; c < C; c++) mean += x[row * C + c]!;
      mean /= C;
    }
    let sq = 0;
    for (let c = 0; c < C; c++) sq += (x[row * C + c]! - mean) ** 2;
    const inv = 1 / Math.sqrt(sq / C + eps);
    for (let c = 0; c < C; c++)
      out[row * C + c] =
        (x[row * C + c]! - mean) * inv * w[c]! + (b ? b[c]! : 0);
  }
  return out;
}

describe("fused norms", () => {
  for (const [rows, C] of [
    [5, 7],
    [33, 576],
    [4, 768],
  ] as const) {
    it(`RMSNorm and LayerNorm, ${rows} rows of ${C}: forward and gradients`, async (ctx) => {
      await needGpu(ctx);
      const xv = seededValues(rows * C, 1).map((v) => 3 * v + 0.5);
      const wv = seededValues(C, 2);
      const bv = seededValues(C, 3);
      const x = tf.tensor3d(xv, [1, rows, C]);
      const w = tf.tensor1d(wv);
      const b = tf.tensor1d(bv);
      const dy = tf.tensor3d(seededValues(rows * C, 4), [1, rows, C]);
      const eps = 1e-5;

      const rms = rmsNorm(x, w, eps);
      expect(rms.shape).toEqual([1, rows, C]);
      expect(
        await worstRelative(rms, normReference(xv, C, wv, null, eps)),
      ).toBeLessThan(TOLERANCE);
      const ln = layerNorm(x, w, b, eps);
      expect(
        await worstRelative(ln, normReference(xv, C, wv, bv, eps)),
      ).toBeLessThan(TOLERANCE);

      const grads = (
        f: (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => tf.Tensor,
      ) => tf.grads(f)([x, w, b], dy);
      const fused = grads((xx, ww, bb) =>
        layerNorm(xx, ww as tf.Tensor1D, bb as tf.Tensor1D, eps),
      );
      const oracle = grads((xx, ww, bb) =>
        layerNormComposed(xx, ww as tf.Tensor1D, bb as tf.Tensor1D, eps),
      );
      for (let i = 0; i < 3; i++)
        expect(
          await worstRelative(fused[i]!, oracle[i]!),
          `LayerNorm grad ${i}`,
        ).toBeLessThan(TOLERANCE);
      const rmsGrads = (f: (x: tf.Tensor, w: tf.Tensor) => tf.Tensor) =>
        tf.grads(f)([x, w], dy);
      const fusedRms = rmsGrads((xx, ww) =>
        rmsNorm(xx, ww as tf.Tensor1D, eps),
      );
      const oracleRms = rmsGrads((xx, ww) =>
        rmsNormComposed(xx, ww as tf.Tensor1D, eps),
      );
      for (let i = 0; i < 2; i++)
        expect(
          await worstRelative(fusedRms[i]!, oracleRms[i]!),
          `RMSNorm grad ${i}`,
        ).toBeLessThan(TOLERANCE);
      tf.dispose([
        x,
        w,
        b,
        dy,
        rms,
        ln,
        ...fused,
        ...oracle,
        ...fusedRms,
        ...oracleRms,
      ]);
    });
  }

  it("names the parameter and x when their sizes differ", async (ctx) => {
    await needGpu(ctx);
    const x = tf.zeros([2, 8]);
    const w = tf.zeros([7]) as tf.Tensor1D;
    expect(() => rmsNorm(x, w, 1e-5)).toThrow(
      /rmsNorm: parameter \[7\] must be \[8\], the last dimension of x \[2, 8\]/,
    );
    tf.dispose([x, w]);
  });
});

describe("fused RoPE", () => {
  it("matches the float64 reference and the stock-op gradient, [2, 3, 5, 8] and [1, 9, 130, 64]", async (ctx) => {
    await needGpu(ctx);
    for (const [B, H, T, D] of [
      [2, 3, 5, 8],
      [1, 9, 130, 64],
    ] as const) {
      const xv = seededValues(B * H * T * D, 5);
      // Tables as ropeTables makes them: each row's two halves are equal (the gradient relies on it).
      const halves = (seed: number) => {
        const h = seededValues((T * D) / 2, seed);
        return Float32Array.from({ length: T * D }, (_, i) => {
          const t = Math.floor(i / D);
          return h[t * (D / 2) + ((i % D) % (D / 2))]!;
        });
      };
      const cv = halves(6);
      const sv = halves(7);
      const x = tf.tensor4d(xv, [B, H, T, D]);
      const cos = tf.tensor2d(cv, [T, D]);
      const sin = tf.tensor2d(sv, [T, D]);
      const ref = new Float64Array(xv.length);
      const half = D / 2;
      for (let i = 0; i < xv.length; i++) {
        const d = i % D;
        const t = Math.floor(i / D) % T;
        const rotated = d < half ? -xv[i + half]! : xv[i - half]!;
        ref[i] = xv[i]! * cv[t * D + d]! + rotated * sv[t * D + d]!;
      }
      const y = applyRope(x, cos, sin);
      expect(await worstRelative(y, ref)).toBeLessThan(TOLERANCE);
      const dy = tf.tensor4d(seededValues(xv.length, 8), [B, H, T, D]);
      const [fused] = tf.grads((xx: tf.Tensor) =>
        applyRope(xx as tf.Tensor4D, cos, sin),
      )([x], dy);
      const [oracle] = tf.grads((xx: tf.Tensor) =>
        applyRopeComposed(xx as tf.Tensor4D, cos, sin),
      )([x], dy);
      expect(await worstRelative(fused!, oracle!)).toBeLessThan(TOLERANCE);
      tf.dispose([x, cos, sin, y, dy, fused!, oracle!]);
    }
  });

  it("leaks no tensor over repeated forward and backward calls", async (ctx) => {
    await needGpu(ctx);
    const x = tf.variable(tf.randomNormal([1, 2, 4, 8]));
    const w = tf.variable(tf.randomNormal([8]));
    const cos = tf.randomNormal([4, 8]) as tf.Tensor2D;
    const sin = tf.randomNormal([4, 8]) as tf.Tensor2D;
    const step = () => {
      const { value, grads } = tf.variableGrads(
        () =>
          rmsNorm(
            applyRope(x as unknown as tf.Tensor4D, cos, sin),
            w as unknown as tf.Tensor1D,
            1e-5,
          )
            .square()
            .sum() as tf.Scalar,
      );
      tf.dispose([value, ...Object.values(grads)]);
    };
    step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) step();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, w, cos, sin]);
  });
});
