/**
 * Bad input to loraLinear: a typed error naming the argument and its shape or value, thrown before any GPU work
 * and without leaving a tensor behind.
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ConfigError,
  disposeRuntime,
  loraLinear,
  ShapeError,
  type LoraLinearOptions,
} from "@webtune/core";
import { needGpu, startGpu } from "../../helpers/gpu.js";

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

const ok: LoraLinearOptions = { scale: 2, weightLayout: "out_in" };

interface BadCase {
  what: string;
  make: () => tf.Tensor[];
  call: (t: tf.Tensor[]) => unknown;
  error: typeof ShapeError | typeof ConfigError;
  message: RegExp;
}

const f = (shape: number[]) => tf.zeros(shape);
const cases: BadCase[] = [
  {
    what: "A's columns differ from x's features",
    make: () => [f([4, 8]), f([6, 8]), f([2, 7]), f([6, 2])],
    call: ([x, W, A, B]) =>
      loraLinear(
        x!,
        W as tf.Tensor2D,
        null,
        A as tf.Tensor2D,
        B as tf.Tensor2D,
        ok,
      ),
    error: ShapeError,
    message: /A \[2, 7\] must be \[r, in\] = \[2, 8\]/,
  },
  {
    what: "B's rows differ from out",
    make: () => [f([4, 8]), f([6, 8]), f([2, 8]), f([5, 2])],
    call: ([x, W, A, B]) =>
      loraLinear(
        x!,
        W as tf.Tensor2D,
        null,
        A as tf.Tensor2D,
        B as tf.Tensor2D,
        ok,
      ),
    error: ShapeError,
    message: /B \[5, 2\] must be \[out, r\] = \[6, 2\]/,
  },
  {
    what: "A and B disagree on the rank",
    make: () => [f([4, 8]), f([6, 8]), f([2, 8]), f([6, 3])],
    call: ([x, W, A, B]) =>
      loraLinear(
        x!,
        W as tf.Tensor2D,
        null,
        A as tf.Tensor2D,
        B as tf.Tensor2D,
        ok,
      ),
    error: ShapeError,
    message: /B \[6, 3\] must be \[out, r\] = \[6, 2\].*r from A \[2, 8\]/,
  },
  {
    what: "W does not match x in the declared layout",
    make: () => [f([4, 8]), f([8, 6]), f([2, 8]), f([6, 2])],
    call: ([x, W, A, B]) =>
      loraLinear(
        x!,
        W as tf.Tensor2D,
        null,
        A as tf.Tensor2D,
        B as tf.Tensor2D,
        ok,
      ),
    error: ShapeError,
    message:
      /W \[8, 6\] read as \[out, in\] expects in = 6, but x \[4, 8\] has 8 features/,
  },
  {
    what: "rank r = 0",
    make: () => [f([4, 8]), f([6, 8]), f([0, 8]), f([6, 0])],
    call: ([x, W, A, B]) =>
      loraLinear(
        x!,
        W as tf.Tensor2D,
        null,
        A as tf.Tensor2D,
        B as tf.Tensor2D,
        ok,
      ),
    error: ShapeError,
    message: /rank r must be >= 1, but A is \[0, 8\]/,
  },
  {
    what: "an int32 input",
    make: () => [tf.zeros([4, 8], "int32"), f([6, 8]), f([2, 8]), f([6, 2])],
    call: ([x, W, A, B]) =>
      loraLinear(
        x!,
        W as tf.Tensor2D,
        null,
        A as tf.Tensor2D,
        B as tf.Tensor2D,
        ok,
      ),
    error: ShapeError,
    message: /x must be float32, got int32 \[4, 8\]/,
  },
  {
    what: "a bias of the wrong length",
    make: () => [f([4, 8]), f([6, 8]), f([5]), f([2, 8]), f([6, 2])],
    call: ([x, W, b, A, B]) =>
      loraLinear(
        x!,
        W as tf.Tensor2D,
        b as tf.Tensor1D,
        A as tf.Tensor2D,
        B as tf.Tensor2D,
        ok,
      ),
    error: ShapeError,
    message: /bias \[5\] must be \[out\] = \[6\]/,
  },
  {
    what: "a NaN scale",
    make: () => [f([4, 8]), f([6, 8]), f([2, 8]), f([6, 2])],
    call: ([x, W, A, B]) =>
      loraLinear(
        x!,
        W as tf.Tensor2D,
        null,
        A as tf.Tensor2D,
        B as tf.Tensor2D,
        { ...ok, scale: NaN },
      ),
    error: ConfigError,
    message: /scale must be a finite number \(lora_alpha \/ r\), got NaN/,
  },
  {
    what: "dropout of 1",
    make: () => [f([4, 8]), f([6, 8]), f([2, 8]), f([6, 2])],
    call: ([x, W, A, B]) =>
      loraLinear(
        x!,
        W as tf.Tensor2D,
        null,
        A as tf.Tensor2D,
        B as tf.Tensor2D,
        { ...ok, dropout: 1 },
      ),
    error: ConfigError,
    message: /dropout must be in \[0, 1\), got 1/,
  },
  {
    what: "a fractional seed",
    make: () => [f([4, 8]), f([6, 8]), f([2, 8]), f([6, 2])],
    call: ([x, W, A, B]) =>
      loraLinear(
        x!,
        W as tf.Tensor2D,
        null,
        A as tf.Tensor2D,
        B as tf.Tensor2D,
        { ...ok, seed: 1.5 },
      ),
    error: ConfigError,
    message: /seed must be an integer in \[0, 2\^32\), got 1.5/,
  },
  {
    what: "an unknown weight layout",
    make: () => [f([4, 8]), f([6, 8]), f([2, 8]), f([6, 2])],
    call: ([x, W, A, B]) =>
      loraLinear(
        x!,
        W as tf.Tensor2D,
        null,
        A as tf.Tensor2D,
        B as tf.Tensor2D,
        {
          ...ok,
          weightLayout: "nk" as LoraLinearOptions["weightLayout"],
        },
      ),
    error: ConfigError,
    message: /weightLayout must be 'in_out' or 'out_in', got nk/,
  },
];

describe("loraLinear bad input", () => {
  for (const c of cases) {
    it(`rejects ${c.what} with a message naming it, and leaks nothing`, async (ctx) => {
      await needGpu(ctx);
      const inputs = c.make();
      const before = tf.memory().numTensors;
      expect(() => c.call(inputs)).toThrow(c.error);
      expect(() => c.call(inputs)).toThrow(c.message);
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose(inputs);
    });
  }

  it("refuses to differentiate the frozen base weight", async (ctx) => {
    await needGpu(ctx);
    const [x, W, A, B] = [f([4, 8]), f([6, 8]), f([2, 8]), f([6, 2])];
    const gradW = () =>
      tf.grad((w: tf.Tensor) =>
        loraLinear(
          x!,
          w as tf.Tensor2D,
          null,
          A as tf.Tensor2D,
          B as tf.Tensor2D,
          ok,
        ).sum(),
      )(W!);
    expect(gradW).toThrow(ConfigError);
    expect(gradW).toThrow(/W is a frozen base tensor and has no gradient/);
    tf.dispose([x!, W!, A!, B!]);
  });
});
