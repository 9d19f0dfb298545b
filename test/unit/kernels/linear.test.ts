/**
 * The frozen linear op (webtune's tiled matmul without a low-rank term) against its float64 CPU reference:
 * forward, dx, and the dW and db of a full fine-tune, for both weight layouts and both kernel variants, at
 * shapes that are not multiples of the tiles or of 4. Tolerance: 1e-4 relative to the largest |value| of each
 * output (f32 accumulation over at most 300 terms).
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  disposeRuntime,
  linear,
  setLoraKernelVariant,
  ShapeError,
} from "@webtune/core";
import {
  linearReference,
  transposedProductReference,
} from "../../../packages/core/src/kernels/linear/reference.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { seededValues } from "../../helpers/tensors.js";

const TOLERANCE = 1e-4;

beforeAll(async () => {
  await startGpu();
});
afterEach(() => setLoraKernelVariant(undefined));
afterAll(() => disposeRuntime());

function worstRelative(actual: Float32Array, expected: Float32Array): number {
  expect(actual.length).toBe(expected.length);
  let scale = 0;
  for (const v of expected) scale = Math.max(scale, Math.abs(v));
  let worst = 0;
  for (let i = 0; i < expected.length; i++)
    worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!) / scale);
  return worst;
}

/** [T, IN] rows and a weight in the given layout, with dy = the cotangent of y. */
function problem(T: number, IN: number, OUT: number, layout: "kn" | "nk") {
  const x = seededValues(T * IN, 1);
  const W = seededValues(IN * OUT, 2);
  const b = seededValues(OUT, 3);
  const dy = seededValues(T * OUT, 4);
  return {
    x,
    W,
    b,
    dy,
    tensors: () => ({
      x: tf.tensor2d(x, [T, IN]),
      W: tf.tensor2d(W, layout === "kn" ? [IN, OUT] : [OUT, IN]),
      b: tf.tensor1d(b),
      dy: tf.tensor2d(dy, [T, OUT]),
    }),
  };
}

describe("linear kernel against the CPU reference", () => {
  const shapes: [number, number, number][] = [
    [7, 13, 9],
    [66, 300, 130],
    [129, 64, 257],
  ];
  for (const variant of ["shared", "direct"] as const)
    for (const wLayout of ["kn", "nk"] as const)
      for (const [T, IN, OUT] of shapes)
        it(`${variant}, W ${wLayout === "kn" ? "[in, out]" : "[out, in]"}, T${T} ${IN}→${OUT}: y, dx, dW, db`, async (ctx) => {
          await needGpu(ctx);
          setLoraKernelVariant(variant);
          const p = problem(T, IN, OUT, wLayout);
          const { x, W, b, dy } = p.tensors();
          const layout = wLayout === "kn" ? "in_out" : "out_in";
          const { value, grads } = tf.tidy(() => {
            const f = (xv: tf.Tensor, Wv: tf.Tensor, bv: tf.Tensor) =>
              linear(xv, Wv as tf.Tensor2D, bv as tf.Tensor1D, layout);
            return tf.valueAndGrads(f)([x, W, b], dy);
          });
          const [y, dx, dW, db] = await Promise.all(
            [value, ...grads].map((t) => t.data() as Promise<Float32Array>),
          );
          tf.dispose([x, W, b, dy, value, ...grads]);

          const dims = { T, IN, OUT };
          const yRef = linearReference(p.x, p.W, p.b, dims, wLayout);
          // dx = dy·Wᵀ: W read the other way round, with no bias.
          const dxRef = linearReference(
            p.dy,
            p.W,
            undefined,
            { T, IN: OUT, OUT: IN },
            wLayout === "kn" ? "nk" : "kn",
          );
          const dWRef =
            wLayout === "kn"
              ? transposedProductReference(p.x, p.dy, { T, M: IN, N: OUT })
              : transposedProductReference(p.dy, p.x, { T, M: OUT, N: IN });
          const dbRef = new Float32Array(OUT);
          for (let t = 0; t < T; t++)
            for (let o = 0; o < OUT; o++) dbRef[o]! += p.dy[t * OUT + o]!;
          expect(worstRelative(y!, yRef)).toBeLessThan(TOLERANCE);
          expect(worstRelative(dx!, dxRef)).toBeLessThan(TOLERANCE);
          expect(worstRelative(dW!, dWRef)).toBeLessThan(TOLERANCE);
          expect(worstRelative(db!, dbRef)).toBeLessThan(TOLERANCE);
        });

  it("keeps leading dimensions and matches tf.matMul on a 3-D input", async (ctx) => {
    await needGpu(ctx);
    const x = tf.tensor3d(seededValues(2 * 5 * 12, 5), [2, 5, 12]);
    const W = tf.tensor2d(seededValues(12 * 8, 6), [8, 12]);
    const y = linear(x, W, null, "out_in");
    expect(y.shape).toEqual([2, 5, 8]);
    const expected = tf.matMul(x.reshape([10, 12]), W, false, true);
    const got = (await y.reshape([10, 8]).data()) as Float32Array;
    const want = (await expected.data()) as Float32Array;
    expect(worstRelative(got, want)).toBeLessThan(TOLERANCE);
    tf.dispose([x, W, y, expected]);
  });

  it("names both shapes when the weight does not fit the input", async (ctx) => {
    await needGpu(ctx);
    const before = tf.memory().numTensors;
    const x = tf.zeros([3, 10]);
    const W = tf.zeros([10, 7]) as tf.Tensor2D;
    expect(() => linear(x, W, null, "out_in")).toThrow(ShapeError);
    expect(() => linear(x, W, null, "out_in")).toThrow(
      /W \[10, 7\] read as \[out, in\] expects 7 input features, but x \[3, 10\] has 10/,
    );
    expect(() => linear(x, W, tf.zeros([3]) as tf.Tensor1D, "in_out")).toThrow(
      /bias \[3\] must be \[out\] = \[7\]/,
    );
    tf.dispose([x, W]);
    expect(tf.memory().numTensors).toBe(before + 1); // the zeros([3]) passed inline
  });

  it("leaks no tensor over 50 forward and backward calls", async (ctx) => {
    await needGpu(ctx);
    const x = tf.randomNormal([16, 24]);
    const W = tf.variable(tf.randomNormal([24, 20])) as tf.Variable<tf.Rank.R2>;
    const step = () => {
      const { value, grads } = tf.variableGrads(
        () => linear(x, W, null, "in_out").square().mean() as tf.Scalar,
        [W],
      );
      tf.dispose([value, ...Object.values(grads)]);
    };
    step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 50; i++) step();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, W]);
  });
});
