/**
 * The fused activation kernel against float64 CPU references (forward) and tfjs autograd of the stock-op maths
 * (gradients), for SiLU and GELU-tanh, plain and gated, at a size that is not a multiple of the workgroup and with
 * inputs out to ±50 (where a naive tanh would overflow). Tolerance: 1e-4 relative to the largest |value|.
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { disposeRuntime, ShapeError } from "@webtune/core";
import {
  activation,
  activationComposed,
  type Activation,
} from "../../../packages/core/src/kernels/activation/activation.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { seededValues } from "../../helpers/tensors.js";

const TOLERANCE = 1e-4;

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

const reference: Record<Activation, (v: number) => number> = {
  silu: (v) => v / (1 + Math.exp(-v)),
  gelu_tanh: (v) =>
    0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))),
};

async function worstRelative(actual: tf.Tensor, expected: ArrayLike<number>) {
  const a = (await actual.data()) as Float32Array;
  let scale = 0;
  for (let i = 0; i < expected.length; i++)
    scale = Math.max(scale, Math.abs(expected[i]!));
  let worst = 0;
  for (let i = 0; i < expected.length; i++)
    worst = Math.max(worst, Math.abs(a[i]! - expected[i]!) / scale);
  return worst;
}

describe("fused activation", () => {
  for (const act of ["silu", "gelu_tanh"] as const)
    it(`${act}: plain and gated forward, and both gradients`, async (ctx) => {
      await needGpu(ctx);
      const n = 3 * 331;
      const xv = seededValues(n, 1).map((v) => 6 * v);
      xv[0] = 50;
      xv[1] = -50;
      const uv = seededValues(n, 2);
      const x = tf.tensor2d(xv, [3, 331]);
      const up = tf.tensor2d(uv, [3, 331]);
      const dy = tf.tensor2d(seededValues(n, 3), [3, 331]);
      const plain = activation(x, act);
      expect(
        await worstRelative(plain, Array.from(xv, reference[act])),
      ).toBeLessThan(TOLERANCE);
      const gated = activation(x, act, up);
      expect(
        await worstRelative(
          gated,
          Array.from(xv, (v, i) => reference[act](v) * uv[i]!),
        ),
      ).toBeLessThan(TOLERANCE);

      const fused = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
        activation(a, act, b),
      )([x, up], dy);
      const oracle = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
        activationComposed(a, act).mul(b),
      )([x, up], dy);
      for (let i = 0; i < 2; i++)
        expect(
          await worstRelative(
            fused[i]!,
            (await oracle[i]!.data()) as Float32Array,
          ),
          `grad ${i}`,
        ).toBeLessThan(TOLERANCE);
      const [fusedPlain] = tf.grads((a: tf.Tensor) => activation(a, act))(
        [x],
        dy,
      );
      const [oraclePlain] = tf.grads((a: tf.Tensor) =>
        activationComposed(a, act),
      )([x], dy);
      expect(
        await worstRelative(
          fusedPlain!,
          (await oraclePlain!.data()) as Float32Array,
        ),
      ).toBeLessThan(TOLERANCE);
      tf.dispose([
        x,
        up,
        dy,
        plain,
        gated,
        ...fused,
        ...oracle,
        fusedPlain!,
        oraclePlain!,
      ]);
    });

  it("rejects an up of another shape, naming both", async (ctx) => {
    await needGpu(ctx);
    const x = tf.zeros([2, 4]);
    const up = tf.zeros([2, 5]);
    expect(() => activation(x, "silu", up)).toThrow(ShapeError);
    expect(() => activation(x, "silu", up)).toThrow(
      /up \[2, 5\] must have the gate's shape \[2, 4\]/,
    );
    tf.dispose([x, up]);
  });
});
