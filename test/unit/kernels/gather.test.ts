/**
 * gatherRows and dequantizeMatrix for every storage format against `decodeMatrix` of the same host data (exact:
 * both decode with the same f32 products), on WebGPU and on tfjs's CPU backend; ids outside the table give zero
 * rows; calls inside tf.grads; tensor counts; typed errors.
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ConfigError,
  decodeMatrix,
  dequantizeMatrix,
  disposeRuntime,
  encodeMatrix,
  gatherRows,
  ShapeError,
  uploadPacked,
  type Matrix,
  type PackedFormat,
} from "@webtune/core";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { seededValues } from "../../helpers/tensors.js";

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

const formats: [PackedFormat | "float32", boolean][] = [
  ["float32", false],
  ["float16", false],
  ["int8", false],
  ["nf4", false],
  ["nf4", true],
  ["int8", true],
];

/** A [rows, cols] table in `format` and its decoded values. */
function table(
  format: PackedFormat | "float32",
  doubleQuant: boolean,
  [rows, cols]: [number, number],
) {
  const values = seededValues(rows * cols, 81).map(
    (v, i) => v * (1 + (i % 11)),
  );
  if (format === "float32")
    return {
      expected: values,
      make: (): Matrix => tf.tensor2d(values, [rows, cols]),
    };
  const host = encodeMatrix(values, [rows, cols], format, { doubleQuant });
  return {
    expected: decodeMatrix(host),
    make: (): Matrix => uploadPacked(host),
  };
}

/** The expected gather: row id − offset of `values`, or zeros outside [0, rows). */
function gatherReference(
  values: Float32Array,
  [rows, cols]: [number, number],
  ids: number[],
  offset: number,
): Float32Array {
  const out = new Float32Array(ids.length * cols);
  ids.forEach((id, r) => {
    const s = id - offset;
    if (s >= 0 && s < rows)
      out.set(values.subarray(s * cols, (s + 1) * cols), r * cols);
  });
  return out;
}

function dispose(m: Matrix): void {
  if (m instanceof tf.Tensor) m.dispose();
  else m.dispose();
}

/** Gathers [2, 4] ids (some outside the table) and dequantizes, for each format; returns nothing, asserts. */
async function checkFormats(shape: [number, number]): Promise<void> {
  const offset = 3;
  const ids = [3, 4, shape[0] + 2, 2, -7, 1000, 3 + shape[0] - 1, 5];
  for (const [format, dq] of formats) {
    const what = `${format}${dq ? "+double" : ""} [${shape.join(", ")}]`;
    const t = table(format, dq, shape);
    const m = t.make();
    const idTensor = tf.tensor2d(ids, [2, 4], "int32");
    const g = gatherRows(m, idTensor, offset);
    expect(g.shape, what).toEqual([2, 4, shape[1]]);
    const got = (await g.data()) as Float32Array;
    const want = gatherReference(t.expected, shape, ids, offset);
    expect(Array.from(got), `${what} gather`).toEqual(Array.from(want));
    const full = dequantizeMatrix(m);
    expect(full.shape).toEqual(shape);
    expect(
      Array.from((await full.data()) as Float32Array),
      `${what} dequantize`,
    ).toEqual(Array.from(t.expected));
    tf.dispose([idTensor, g, full]);
    dispose(m);
  }
}

describe("gatherRows and dequantizeMatrix", () => {
  it("match decodeMatrix on WebGPU for every format, with zero rows for ids outside the table", async (ctx) => {
    await needGpu(ctx);
    await checkFormats([37, 132]); // vec4 rows
    await checkFormats([40, 67]); // scalar rows; 2680 elements, a partial last block
  });

  it("match decodeMatrix on tfjs's CPU backend", async (ctx) => {
    await needGpu(ctx);
    await tf.setBackend("cpu");
    try {
      await checkFormats([40, 67]);
    } finally {
      await tf.setBackend("webgpu");
    }
  });

  it("returns an empty result for no ids, and keeps the leading shape of scalar ids", async (ctx) => {
    await needGpu(ctx);
    const t = table("nf4", false, [10, 8]);
    const m = t.make();
    const none = gatherRows(m, tf.tensor1d([], "int32"));
    expect(none.shape).toEqual([0, 8]);
    const one = gatherRows(m, tf.scalar(4, "int32"));
    expect(one.shape).toEqual([8]);
    expect(Array.from((await one.data()) as Float32Array)).toEqual(
      Array.from(t.expected.subarray(32, 40)),
    );
    tf.dispose([none, one]);
    dispose(m);
  });
});

describe("gatherRows over many rows", () => {
  it("covers more ids than a dispatch has workgroups per dimension", async (ctx) => {
    await needGpu(ctx);
    const t = table("nf4", true, [300, 8]);
    const m = t.make();
    const n = 70_000; // over the 65535 workgroups per dimension: the shader's row loop takes the rest
    const idValues = Array.from({ length: n }, (_, i) => (i * 7919) % 320);
    const ids = tf.tensor1d(idValues, "int32");
    const g = gatherRows(m, ids);
    const got = (await g.data()) as Float32Array;
    const want = gatherReference(t.expected, [300, 8], idValues, 0);
    let mismatches = 0;
    for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) mismatches++;
    expect(mismatches).toBe(0);
    tf.dispose([ids, g]);
    dispose(m);
  });
});

describe("gatherRows inside tf.grads", () => {
  it("does not break the gradient of what it feeds, and leaks nothing over repeated calls", async (ctx) => {
    await needGpu(ctx);
    const t = table("int8", true, [50, 16]);
    const m = t.make();
    const ids = tf.tensor1d([1, 7, 49, 2], "int32");
    const w = tf.tensor2d(seededValues(16 * 3, 82), [16, 3]);
    const step = async () => {
      const { value, grads } = tf.valueAndGrads((wv: tf.Tensor) =>
        gatherRows(m, ids)
          .matMul(wv as tf.Tensor2D)
          .square()
          .sum(),
      )([w]);
      const dw = (await grads[0]!.data()) as Float32Array;
      tf.dispose([value, ...grads]);
      return dw;
    };
    const dw = await step();
    // d/dw Σ (h·w)² = 2 hᵀ·(h·w), with h the gathered rows.
    const h = tf.tensor2d(
      gatherReference(t.expected, [50, 16], [1, 7, 49, 2], 0),
      [4, 16],
    );
    const want = (await tf
      .matMul(h, h.matMul(w), true, false)
      .mul(2)
      .data()) as Float32Array;
    dw.forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 3));
    const before = tf.memory().numTensors;
    for (let i = 0; i < 10; i++) await step();
    expect(tf.memory().numTensors).toBe(before);
    // The packed table itself has no gradient.
    expect(() =>
      tf.grads(() => dequantizeMatrix(m).sum())([
        (m as unknown as { data: tf.Tensor }).data,
      ]),
    ).toThrow(/frozen and has no gradient/);
    tf.dispose([ids, w, h]);
    dispose(m);
  });
});

describe("gatherRows errors", () => {
  it("rejects float ids, a fractional row offset and a disposed table, with typed errors", async (ctx) => {
    await needGpu(ctx);
    const m = table("float16", false, [4, 4]).make();
    const before = tf.memory().numTensors;
    const fids = tf.tensor1d([1, 2]);
    expect(() => gatherRows(m, fids)).toThrow(ShapeError);
    expect(() => gatherRows(m, fids)).toThrow(
      /ids must be int32, got float32 \[2\]/,
    );
    const ids = tf.tensor1d([1], "int32");
    expect(() => gatherRows(m, ids, 0.5)).toThrow(ConfigError);
    dispose(m);
    expect(() => gatherRows(m, ids)).toThrow(/already disposed/);
    tf.dispose([fids, ids]);
    expect(tf.memory().numTensors).toBe(before - 1); // the table's words
  });
});
