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

/** One bad call: the shapes of x, W, A, B (and bias), the options, and the error it must raise. */
interface BadCase {
  what: string;
  shapes: {
    x: number[];
    W: number[];
    A: number[];
    B: number[];
    bias?: number[];
  };
  xDtype?: "int32";
  options?: Partial<LoraLinearOptions>;
  error: typeof ShapeError | typeof ConfigError;
  message: RegExp;
}

const good = { x: [4, 8], W: [6, 8], A: [2, 8], B: [6, 2] };
const cases: BadCase[] = [
  {
    what: "A's columns differ from x's features",
    shapes: { ...good, A: [2, 7] },
    error: ShapeError,
    message: /A \[2, 7\] must be \[r, in\] = \[2, 8\]/,
  },
  {
    what: "B's rows differ from out",
    shapes: { ...good, B: [5, 2] },
    error: ShapeError,
    message: /B \[5, 2\] must be \[out, r\] = \[6, 2\]/,
  },
  {
    what: "A and B disagree on the rank",
    shapes: { ...good, B: [6, 3] },
    error: ShapeError,
    message: /B \[6, 3\] must be \[out, r\] = \[6, 2\].*r from A \[2, 8\]/,
  },
  {
    what: "W does not match x in the declared layout",
    shapes: { ...good, W: [8, 6] },
    error: ShapeError,
    message:
      /W \[8, 6\] read as \[out, in\] expects in = 6, but x \[4, 8\] has 8 features/,
  },
  {
    what: "rank r = 0",
    shapes: { ...good, A: [0, 8], B: [6, 0] },
    error: ShapeError,
    message: /rank r must be >= 1, but A is \[0, 8\]/,
  },
  {
    what: "an int32 input",
    shapes: good,
    xDtype: "int32",
    error: ShapeError,
    message: /x must be float32, got int32 \[4, 8\]/,
  },
  {
    what: "a bias of the wrong length",
    shapes: { ...good, bias: [5] },
    error: ShapeError,
    message: /bias \[5\] must be \[out\] = \[6\]/,
  },
  {
    what: "a NaN scale",
    shapes: good,
    options: { scale: NaN },
    error: ConfigError,
    message: /scale must be a finite number \(lora_alpha \/ r\), got NaN/,
  },
  {
    what: "dropout of 1",
    shapes: good,
    options: { dropout: 1 },
    error: ConfigError,
    message: /dropout must be in \[0, 1\), got 1/,
  },
  {
    what: "a fractional seed",
    shapes: good,
    options: { seed: 1.5 },
    error: ConfigError,
    message: /seed must be an integer in \[0, 2\^32\), got 1.5/,
  },
  {
    what: "an unknown weight layout",
    shapes: good,
    options: { weightLayout: "nk" as LoraLinearOptions["weightLayout"] },
    error: ConfigError,
    message: /weightLayout must be 'in_out' or 'out_in', got nk/,
  },
];

function call(
  c: BadCase,
  t: {
    x: tf.Tensor;
    W: tf.Tensor;
    A: tf.Tensor;
    B: tf.Tensor;
    bias?: tf.Tensor;
  },
) {
  return () =>
    loraLinear(
      t.x,
      t.W as tf.Tensor2D,
      (t.bias ?? null) as tf.Tensor1D | null,
      t.A as tf.Tensor2D,
      t.B as tf.Tensor2D,
      {
        ...ok,
        ...c.options,
      },
    );
}

describe("loraLinear bad input", () => {
  for (const c of cases) {
    it(`rejects ${c.what} with a message naming it, and leaks nothing`, async (ctx) => {
      await needGpu(ctx);
      const { x, W, A, B, bias } = c.shapes;
      const t = {
        x: tf.zeros(x, c.xDtype),
        W: tf.zeros(W),
        A: tf.zeros(A),
        B: tf.zeros(B),
        bias: bias && tf.zeros(bias),
      };
      const before = tf.memory().numTensors;
      expect(call(c, t)).toThrow(c.error);
      expect(call(c, t)).toThrow(c.message);
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose(
        Object.values(t).filter((v): v is tf.Tensor => v !== undefined),
      );
    });
  }

  it("refuses to differentiate the frozen base weight", async (ctx) => {
    await needGpu(ctx);
    const [x, W, A, B] = [good.x, good.W, good.A, good.B].map((s) =>
      tf.zeros(s),
    );
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
