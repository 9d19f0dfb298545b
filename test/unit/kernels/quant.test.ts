/**
 * linear and loraLinear with a packed W (f16, int8, NF4, and int8/NF4 with double-quantized scales) on WebGPU,
 * against a float64 CPU reference computed from `decodeMatrix` of the same host data: forward, dx, and LoRA's dA
 * and dB, for both weight layouts and both kernel variants, at shapes that take the vec4 loaders and shapes
 * that do not (columns not a multiple of 4, sizes not multiples of 64, partial last blocks and scale groups).
 * Tolerance: every element within 1e-4 relative (expectClose: to max(|expected|, rms(expected))), the same as
 * the f32 kernels: the weights are the decoded values exactly, so only f32 accumulation differs.
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  decodeMatrix,
  disposeRuntime,
  encodeMatrix,
  linear,
  loraLinear,
  packMatrix,
  PackedMatrix,
  setLoraKernelVariant,
  ShapeError,
  uploadPacked,
  type KernelKind,
  type PackedFormat,
} from "@webtune/core";
import { linearReference } from "../../../packages/core/src/kernels/linear/reference.js";
import {
  loraForwardReference,
  loraGradAReference,
  loraGradBReference,
  loraGradXReference,
  projectGradReference,
} from "../../../packages/core/src/kernels/lora_linear/reference.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { expectClose, seededValues } from "../../helpers/tensors.js";

const RTOL = 1e-4;

beforeAll(async () => {
  await startGpu();
});
afterEach(() => setLoraKernelVariant(undefined));
afterAll(() => disposeRuntime());

interface FormatCase {
  format: PackedFormat;
  doubleQuant: boolean;
}
const formats: FormatCase[] = [
  { format: "float16", doubleQuant: false },
  { format: "int8", doubleQuant: false },
  { format: "nf4", doubleQuant: false },
  { format: "nf4", doubleQuant: true },
  { format: "int8", doubleQuant: true },
];
const formatName = (c: FormatCase) =>
  `${c.format}${c.doubleQuant ? "+double" : ""}`;

/**
 * [T, IN, OUT, R]: all dims multiples of 4 (vec4 loaders both ways; 18480 weights = 288.75 blocks in 2 scale
 * groups), none (odd everywhere), and mixed (IN a multiple of 4, OUT not).
 */
const shapes: [number, number, number, number][] = [
  [9, 132, 140, 4],
  [7, 67, 37, 3],
  [5, 64, 30, 2],
];

type Layout = "in_out" | "out_in";

/** Seeded data of one case, its packed host W and the decoded W the reference uses. */
function caseData(c: FormatCase, layout: Layout, dims: number[]) {
  const [T, IN, OUT, R] = dims as [number, number, number, number];
  const wShape: [number, number] = layout === "in_out" ? [IN, OUT] : [OUT, IN];
  // Rows of different scales, so blocks' absmax differ.
  const w = seededValues(IN * OUT, 41).map((v, i) => v * (1 + (i % 13) / 4));
  const host = encodeMatrix(w, wShape, c.format, {
    doubleQuant: c.doubleQuant,
  });
  return {
    T,
    IN,
    OUT,
    R,
    wShape,
    host,
    Wd: decodeMatrix(host),
    x: seededValues(T * IN, 42),
    bias: seededValues(OUT, 43),
    A: seededValues(R * IN, 44),
    B: seededValues(OUT * R, 45),
    cot: seededValues(T * OUT, 46),
  };
}
type CaseData = ReturnType<typeof caseData>;

async function readAll(ts: tf.Tensor[]): Promise<Float32Array[]> {
  return Promise.all(ts.map((t) => t.data() as Promise<Float32Array>));
}

async function checkLinear(d: CaseData, layout: Layout, what: string) {
  const W = uploadPacked(d.host);
  const x = tf.tensor2d(d.x, [d.T, d.IN]);
  const b = tf.tensor1d(d.bias);
  const dy = tf.tensor2d(d.cot, [d.T, d.OUT]);
  const { value, grads } = tf.valueAndGrads((xv: tf.Tensor) =>
    linear(xv, W, b, layout),
  )([x], dy);
  const [y, dx] = await readAll([value, ...grads]);
  tf.dispose([x, b, dy, value, ...grads]);
  W.dispose();
  const wl = layout === "in_out" ? "kn" : "nk";
  const dims = { T: d.T, IN: d.IN, OUT: d.OUT };
  expectClose(
    y!,
    linearReference(d.x, d.Wd, d.bias, dims, wl),
    RTOL,
    `${what} linear y`,
  );
  const flipped = wl === "kn" ? "nk" : "kn";
  const dxRef = linearReference(
    d.cot,
    d.Wd,
    undefined,
    { T: d.T, IN: d.OUT, OUT: d.IN },
    flipped,
  );
  expectClose(dx!, dxRef, RTOL, `${what} linear dx`);
}

async function checkLora(d: CaseData, layout: Layout, what: string) {
  const W = uploadPacked(d.host);
  const t = {
    x: tf.tensor2d(d.x, [d.T, d.IN]),
    b: tf.tensor1d(d.bias),
    A: tf.tensor2d(d.A, [d.R, d.IN]),
    B: tf.tensor2d(d.B, [d.OUT, d.R]),
    dy: tf.tensor2d(d.cot, [d.T, d.OUT]),
  };
  // Dropout on, so dx also takes the masked low-rank epilogue next to the packed W.
  const attrs = { scale: 1.5, weightLayout: layout, dropout: 0.2, seed: 5 };
  const { value, grads } = tf.valueAndGrads(
    (x: tf.Tensor, A: tf.Tensor, B: tf.Tensor) =>
      loraLinear(x, W, t.b, A as tf.Tensor2D, B as tf.Tensor2D, attrs),
  )([t.x, t.A, t.B], t.dy);
  const [y, dx, dA, dB] = await readAll([value, ...grads]);
  tf.dispose([...Object.values(t), value, ...grads]);
  W.dispose();
  const dims = { T: d.T, IN: d.IN, OUT: d.OUT, R: d.R };
  const g = projectGradReference(d.cot, d.B, dims);
  const ref = {
    y: loraForwardReference(d.x, d.Wd, d.bias, d.A, d.B, dims, attrs),
    dx: loraGradXReference(d.cot, d.Wd, g, d.A, dims, attrs),
    dA: loraGradAReference(g, d.x, dims, attrs),
    dB: loraGradBReference(d.cot, d.x, d.A, dims, attrs),
  };
  const got = { y: y!, dx: dx!, dA: dA!, dB: dB! };
  for (const k of ["y", "dx", "dA", "dB"] as const)
    expectClose(got[k], ref[k], RTOL, `${what} loraLinear ${k}`);
}

const variants: KernelKind[] = ["direct", "shared"];

describe.each(variants)("packed W, %s kernels", (variant) => {
  for (const c of formats)
    for (const layout of ["in_out", "out_in"] as const)
      it(`${formatName(c)} ${layout}: linear y, dx and loraLinear y, dx, dA, dB match the decoded reference`, async (ctx) => {
        await needGpu(ctx);
        setLoraKernelVariant(variant);
        for (const dims of shapes) {
          const d = caseData(c, layout, dims);
          const what = `${formatName(c)} ${layout} ${dims.join("x")}`;
          await checkLinear(d, layout, what);
          await checkLora(d, layout, what);
        }
      });
});

describe("packed W on tfjs's CPU backend", () => {
  it("decodes transiently and matches the same reference", async (ctx) => {
    await needGpu(ctx);
    await tf.setBackend("cpu");
    try {
      for (const c of [formats[0]!, formats[3]!]) {
        const d = caseData(c, "out_in", shapes[1]!);
        await checkLinear(d, "out_in", `cpu ${formatName(c)}`);
        await checkLora(d, "out_in", `cpu ${formatName(c)}`);
      }
    } finally {
      await tf.setBackend("webgpu");
    }
  });
});

describe("packed W is frozen", () => {
  it("throws a ShapeError when the gradient of its words is asked for", async (ctx) => {
    await needGpu(ctx);
    const W = packMatrix(seededValues(24, 51), [4, 6], "nf4");
    const x = tf.tensor2d(seededValues(12, 52), [2, 6]);
    const A = tf.tensor2d(seededValues(6, 53), [1, 6]);
    const B = tf.tensor2d(seededValues(4, 54), [4, 1]);
    expect(() =>
      tf.grads(() => linear(x, W, null, "out_in").sum())([W.data]),
    ).toThrow(ShapeError);
    const opts = { scale: 1, weightLayout: "out_in" } as const;
    expect(() =>
      tf.grads(() => loraLinear(x, W, null, A, B, opts).sum())([W.data]),
    ).toThrow(/packed \(f16\/int8\/NF4\) base weight, which is frozen/);
    // (tfjs keeps the tensors it saved for a backward pass that throws; no count is checked here.)
    tf.dispose([x, A, B]);
    W.dispose();
  });
});

describe("packed W memory and errors", () => {
  it("keeps the tensor count flat over repeated forward and backward calls", async (ctx) => {
    await needGpu(ctx);
    const W = packMatrix(seededValues(24 * 20, 61), [20, 24], "int8", {
      doubleQuant: true,
    });
    const x = tf.tensor2d(seededValues(8 * 24, 62), [8, 24]);
    const A = tf.variable(
      tf.tensor2d(seededValues(2 * 24, 63), [2, 24]),
    ) as tf.Variable<tf.Rank.R2>;
    const B = tf.variable(tf.zeros([20, 2])) as tf.Variable<tf.Rank.R2>;
    const opts = { scale: 2, weightLayout: "out_in", dropout: 0.1 } as const;
    const step = async () => {
      // The frozen linear's dx is not needed here; both ops see the same packed W.
      const { value, grads } = tf.variableGrads(
        () =>
          loraLinear(x, W, null, A, B, opts)
            .add(linear(x, W, null, "out_in"))
            .square()
            .mean() as tf.Scalar,
      );
      await value.data();
      tf.dispose([value, ...Object.values(grads)]);
    };
    await step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) await step();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, A, B]);
    W.dispose();
  });

  it("names the shapes of a packed W that does not fit x, a disposed one, and a malformed one", async (ctx) => {
    await needGpu(ctx);
    const W = packMatrix(seededValues(40, 71), [5, 8], "float16");
    const x = tf.zeros([3, 5]);
    const A = tf.zeros([1, 5]) as tf.Tensor2D;
    const B = tf.zeros([5, 1]) as tf.Tensor2D;
    const opts = { scale: 1, weightLayout: "out_in" } as const;
    expect(() => linear(x, W, null, "out_in")).toThrow(
      /W \[5, 8\] read as \[out, in\] expects 8 input features, but x \[3, 5\] has 5/,
    );
    expect(() => loraLinear(x, W, null, A, B, opts)).toThrow(
      /W \[5, 8\] read as \[out, in\] expects in = 8, but x \[3, 5\] has 5/,
    );
    const bad = new PackedMatrix(
      "int8",
      [5, 8],
      tf.zeros([3], "int32") as tf.Tensor1D,
      {
        kind: "absmax",
        absmax: tf.ones([1]) as tf.Tensor1D,
      },
    );
    expect(() => linear(tf.zeros([3, 8]), bad, null, "out_in")).toThrow(
      ShapeError,
    );
    expect(() => linear(tf.zeros([3, 8]), bad, null, "out_in")).toThrow(
      /packed int8 \[5, 8\].*wrong length/,
    );
    W.dispose();
    expect(() => linear(tf.zeros([3, 8]), W, null, "out_in")).toThrow(
      /W \(packed float16 \[5, 8\]\) is already disposed/,
    );
    bad.dispose();
    tf.dispose([x, A, B]);
  });
});
