/**
 * Gradients of the WebGPU op checked against the op's own forward pass by central finite differences, and the
 * tensor count checked flat over 100 training-like calls.
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { disposeRuntime, loraLinear } from "@webtune/core";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { seededValues } from "../../helpers/tensors.js";

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

describe("loraLinear gradients by finite differences", () => {
  for (const weightLayout of ["in_out", "out_in"] as const) {
    it(`dA and dB agree with central differences of the loss (${weightLayout}, dropout 0.2)`, async (ctx) => {
      await needGpu(ctx);
      const [T, IN, OUT, R] = [6, 10, 7, 3];
      const x = tf.tensor2d(seededValues(T * IN, 11), [T, IN]);
      const W = tf.tensor2d(
        seededValues(IN * OUT, 12),
        weightLayout === "in_out" ? [IN, OUT] : [OUT, IN],
      );
      const bias = tf.tensor1d(seededValues(OUT, 13));
      const opts = { scale: 1.5, weightLayout, dropout: 0.2, seed: 99 };
      // A quadratic loss, so the gradient depends on A and B jointly, not just on x.
      const loss = (A: tf.Tensor, B: tf.Tensor) =>
        tf.tidy(() =>
          loraLinear(x, W, bias, A as tf.Tensor2D, B as tf.Tensor2D, opts)
            .square()
            .sum(),
        );
      const A0 = seededValues(R * IN, 14);
      const B0 = seededValues(OUT * R, 15);
      const A = tf.tensor2d(A0, [R, IN]);
      const B = tf.tensor2d(B0, [OUT, R]);
      const [dA, dB] = tf.grads((a: tf.Tensor, b: tf.Tensor) => loss(a, b))([
        A,
        B,
      ]);
      const gradA = (await dA!.data()) as Float32Array;
      const gradB = (await dB!.data()) as Float32Array;

      // Central differences are exact for a quadratic; what remains is f32 rounding of the loss, ~1e-7·|L|/eps.
      const eps = 1e-2;
      const probe = async (
        base: Float32Array,
        shape: [number, number],
        index: number,
        which: "A" | "B",
      ) => {
        const plus = Float32Array.from(base);
        const minus = Float32Array.from(base);
        plus[index]! += eps;
        minus[index]! -= eps;
        const [lp, lm] =
          which === "A"
            ? [
                loss(tf.tensor2d(plus, shape), B),
                loss(tf.tensor2d(minus, shape), B),
              ]
            : [
                loss(A, tf.tensor2d(plus, shape)),
                loss(A, tf.tensor2d(minus, shape)),
              ];
        const fd = ((await lp.data())[0]! - (await lm.data())[0]!) / (2 * eps);
        tf.dispose([lp, lm]);
        return fd;
      };
      let compared = 0;
      for (const index of [0, 7, 13, 22, R * IN - 1]) {
        const fd = await probe(A0, [R, IN], index, "A");
        expect(
          Math.abs(fd - gradA[index]!),
          `dA[${index}]: fd ${fd} vs ${gradA[index]}`,
        ).toBeLessThan(2e-3 * (1 + Math.abs(fd)));
        compared++;
      }
      for (const index of [0, 5, 11, OUT * R - 1]) {
        const fd = await probe(B0, [OUT, R], index, "B");
        expect(
          Math.abs(fd - gradB[index]!),
          `dB[${index}]: fd ${fd} vs ${gradB[index]}`,
        ).toBeLessThan(2e-3 * (1 + Math.abs(fd)));
        compared++;
      }
      expect(compared).toBe(9);
      // A gradient that is identically zero would pass a loose check; these are not.
      expect(Math.max(...gradA.map(Math.abs))).toBeGreaterThan(0.1);
      expect(Math.max(...gradB.map(Math.abs))).toBeGreaterThan(0.1);
      tf.dispose([x, W, bias, A, B, dA!, dB!]);
    });
  }
});

describe("loraLinear memory", () => {
  it("leaves the tensor count and GPU bytes flat across 100 forward+backward steps", async (ctx) => {
    await needGpu(ctx);
    const [T, IN, OUT, R] = [16, 32, 24, 4];
    const x = tf.tensor3d(seededValues(T * IN, 21), [2, T / 2, IN]);
    const W = tf.tensor2d(seededValues(OUT * IN, 22), [OUT, IN]);
    const A = tf.variable(
      tf.tensor2d(seededValues(R * IN, 23), [R, IN]),
      true,
      "A",
    ) as tf.Variable<tf.Rank.R2>;
    const B = tf.variable(
      tf.zeros([OUT, R]),
      true,
      "B",
    ) as tf.Variable<tf.Rank.R2>;
    const step = async (i: number) => {
      const { value, grads } = tf.variableGrads(
        () =>
          loraLinear(x, W, null, A, B, {
            scale: 2,
            weightLayout: "out_in",
            dropout: 0.1,
            seed: i,
          })
            .square()
            .mean() as tf.Scalar,
      );
      tf.tidy(() => {
        A.assign(A.sub(grads["A"]!.mul(0.01)));
        B.assign(B.sub(grads["B"]!.mul(0.01)));
      });
      const loss = (await value.data())[0]!;
      tf.dispose([value, ...Object.values(grads)]);
      return loss;
    };
    await step(0);
    const tensorsAfterFirst = tf.memory().numTensors;
    const bytesAfterFirst = (tf.memory() as { numBytesInGPU?: number })
      .numBytesInGPU;
    let last = 0;
    for (let i = 1; i <= 100; i++) last = await step(i);
    expect(tf.memory().numTensors).toBe(tensorsAfterFirst);
    expect((tf.memory() as { numBytesInGPU?: number }).numBytesInGPU).toBe(
      bytesAfterFirst,
    );
    expect(Number.isFinite(last)).toBe(true);
    tf.dispose([x, W, A, B]);
  });
});
