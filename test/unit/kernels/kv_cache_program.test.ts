/**
 * The decoding programs against their float64 CPU references, on the real device: the cache write at the step's
 * position (from a strided view of a fused projection; rows past the cache untouched), RoPE of keys straight into
 * the cache at that position (tables of every position, read at p + t), and attention of new query rows over a
 * cache's rows 0..p+t: one token and several, at position 0, in the middle and crossing a block of 64 keys,
 * grouped-query heads, a sliding window and a softcap, head dims 8, 32 and 256.
 *
 * Also the greedy pick (`rowArgmax`): each row's first maximum, exactly.
 *
 * Tolerance: 1e-5 relative (`expectClose`, floored at the output's rms); the online softmax sums at most 100
 * terms, in another order than the reference.
 *
 * Letters: B batch, G kv heads, H query heads, S cache rows, T new tokens, D head dim.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { disposeRuntime } from "@webtune/core";
import {
  cacheLayout,
  cacheWrite,
  decodeAttention,
  ropeQkv,
  type CacheView,
  type DecodeDims,
  type DecodeOptions,
} from "../../../packages/core/src/kernels/kv_cache/program.js";
import {
  cacheWriteReference,
  decodeAttentionReference,
} from "../../../packages/core/src/kernels/kv_cache/reference.js";
import {
  projectionHeads,
  qkRopeForward,
} from "../../../packages/core/src/kernels/rope/program.js";
import { qkRopeForwardReference } from "../../../packages/core/src/kernels/rope/reference.js";
import {
  pickChunks,
  rowArgmax,
} from "../../../packages/core/src/kernels/argmax/program.js";
import { rowArgmaxReference } from "../../../packages/core/src/kernels/argmax/reference.js";
import { decodeStepParams } from "../../../packages/core/src/kernels/step_params.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { expectClose, seededValues } from "../../helpers/tensors.js";
import { ProgramCase } from "./program_case.js";

const RTOL = 1e-5;

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

/** The heads of kv head columns in a [B, T, width] projection output, starting at `column`. */
function projection(
  B: number,
  T: number,
  heads: number,
  D: number,
  column: number,
  width: number,
): CacheView {
  const v = projectionHeads(B, T, heads, D, column, width);
  return { offset: v.offset, sB: v.sB, sH: v.sH, sT: v.sT };
}

describe("decoding programs", () => {
  it("cacheWrite puts a strided view's heads at the step's rows and leaves the others", async (ctx) => {
    await needGpu(ctx);
    const [B, G, T, D, S] = [2, 3, 5, 12, 16];
    const width = 5 * D;
    for (const position of [0, 7, 13]) {
      const view = projection(B, T, G, D, D, width);
      const src = seededValues(B * T * width, 41);
      const prior = seededValues(B * G * S * D, 42);
      const pc = new ProgramCase();
      const cache = pc.output("cache", prior.length, prior);
      pc.dispatch("write", cacheWrite({ B, G, T, D, S }, view), [
        cache,
        pc.input("src", src),
      ]);
      const [got] = await pc.run(decodeStepParams(position));
      const want = cacheWriteReference(
        prior,
        src,
        view,
        { B, G, T, D, S },
        position,
      );
      expectClose(got!, want, 0, `cache at position ${position}`);
    }
  });

  it("RoPE writes keys into the cache at the step's position, from tables of every position", async (ctx) => {
    await needGpu(ctx);
    const [B, G, T, D, S] = [2, 2, 3, 32, 20];
    const position = 9;
    const width = 4 * D;
    const src = projectionHeads(B, T, G, D, 2 * D, width);
    const x = seededValues(B * T * width, 43);
    const cos = seededValues(S * D, 44);
    const sin = seededValues(S * D, 45);
    const prior = seededValues(B * G * S * D, 46);
    const pc = new ProgramCase();
    const cache = pc.output("cache", prior.length, prior);
    pc.dispatch(
      "k rope",
      qkRopeForward(src, undefined, {
        positioning: "tables+out",
        out: cacheLayout(G, S, D),
      }),
      [cache, pc.input("x", x), pc.input("cos", cos), pc.input("sin", sin)],
    );
    const [got] = await pc.run(decodeStepParams(position));
    const rotated = qkRopeForwardReference(
      x,
      src,
      cos.subarray(position * D),
      sin.subarray(position * D),
    ).out;
    const want = cacheWriteReference(
      prior,
      rotated,
      cacheLayout(G, T, D),
      { B, G, T, D, S },
      position,
    );
    expectClose(got!, want, RTOL, "cache");
  });

  const cases: {
    name: string;
    dims: DecodeDims;
    position: number;
    options?: Partial<DecodeOptions>;
  }[] = [
    {
      name: "one token at position 0",
      dims: { B: 2, T: 1, H: 4, G: 2, D: 32, S: 24 },
      position: 0,
    },
    {
      name: "one token in the middle",
      dims: { B: 3, T: 1, H: 4, G: 2, D: 32, S: 24 },
      position: 17,
    },
    {
      name: "one token past a block of 64 keys",
      dims: { B: 1, T: 1, H: 6, G: 2, D: 8, S: 100 },
      position: 90,
    },
    {
      name: "several tokens, window and softcap",
      dims: { B: 2, T: 6, H: 4, G: 1, D: 32, S: 80 },
      position: 63,
      options: { window: 5, softcap: 3 },
    },
    {
      name: "a prefill from 0, D 256",
      dims: { B: 1, T: 9, H: 2, G: 2, D: 256, S: 12 },
      position: 0,
    },
  ];
  for (const { name, dims, position, options } of cases)
    it(`attention of new rows over the cache matches the reference (${name})`, async (ctx) => {
      await needGpu(ctx);
      const { B, T, H, G, D, S } = dims;
      const opts: DecodeOptions = { scale: 1 / Math.sqrt(D), ...options };
      const qView: CacheView = { offset: 0, sB: H * T * D, sH: T * D, sT: D };
      // o merged-heads [B, T, H·D], as the output projection reads it
      const oView: CacheView = { offset: 0, sB: T * H * D, sH: D, sT: H * D };
      const q = seededValues(B * H * T * D, 51).map((v) => 3 * v);
      const k = seededValues(B * G * S * D, 52).map((v) => 3 * v);
      const v = seededValues(B * G * S * D, 53);
      const pc = new ProgramCase();
      const o = pc.output("o", B * T * H * D);
      pc.dispatch("attention", decodeAttention(dims, qView, oView, opts), [
        o,
        pc.input("q", q),
        pc.input("k", k),
        pc.input("v", v),
      ]);
      const [got] = await pc.run(decodeStepParams(position));
      const dense = decodeAttentionReference(
        q,
        qView,
        k,
        v,
        dims,
        opts,
        position,
      );
      const want = new Float64Array(dense.length);
      for (let b = 0; b < B; b++)
        for (let h = 0; h < H; h++)
          for (let t = 0; t < T; t++)
            for (let d = 0; d < D; d++)
              want[
                oView.offset + b * oView.sB + h * oView.sH + t * oView.sT + d
              ] = dense[((b * H + h) * T + t) * D + d]!;
      expectClose(got!, want, RTOL, "o");
    });

  it("refuses shapes it cannot serve, naming them", () => {
    const q = cacheLayout(1, 1, 8);
    expect(() =>
      decodeAttention({ B: 1, T: 1, H: 3, G: 2, D: 8, S: 4 }, q, q, {
        scale: 1,
      }),
    ).toThrow(/H = 3 query heads is not a multiple of G = 2/);
    expect(() =>
      decodeAttention({ B: 1, T: 1, H: 2, G: 2, D: 260, S: 4 }, q, q, {
        scale: 1,
      }),
    ).toThrow(/head dim D = 260/);
    expect(() =>
      decodeAttention({ B: 1, T: 5, H: 2, G: 2, D: 8, S: 4 }, q, q, {
        scale: 1,
      }),
    ).toThrow(/5 new tokens do not fit a cache of 4 rows/);
    expect(() =>
      decodeAttention(
        { B: 1, T: 1, H: 2, G: 2, D: 8, S: 4 },
        { ...q, offset: 2 },
        q,
        { scale: 1 },
      ),
    ).toThrow(/view q has offset 2/);
  });
});

describe("greedy pick", () => {
  it("rowArgmax gives each row's first maximum and its column, offset by the chunk's start", async (ctx) => {
    await needGpu(ctx);
    const [rows, V, v0] = [5, 333, 4096];
    const z = seededValues(rows * V, 61);
    // Ties: row 1's maximum twice (the first must win), row 2's at the last column, row 3 all equal.
    z[1 * V + 7] = 9;
    z[1 * V + 200] = 9;
    z[2 * V + V - 1] = 11;
    for (let c = 0; c < V; c++) z[3 * V + c] = -2;
    const pc = new ProgramCase();
    const out = pc.output("out", 2 * rows);
    pc.dispatch("argmax", rowArgmax(rows, V, v0), [out, pc.input("z", z)]);
    const [got] = await pc.run();
    expectClose(got!, rowArgmaxReference(z, rows, V, v0), 0, "argmax");
    expect(got![3]).toBe(v0 + 7);
    expect(got![5]).toBe(v0 + V - 1);
    expect(got![7]).toBe(v0);
  });

  it("pickChunks keeps the best chunk, the earlier one on a tie", () => {
    const a = Float32Array.from([1, 10, 5, 20]);
    const b = Float32Array.from([2, 300, 5, 400]);
    expect(pickChunks([a, b], 2)).toEqual([300, 20]);
  });
});

describe("a decoding run's attention inputs in one dispatch", () => {
  for (const fused of [false, true])
    it(`ropeQkv rotates q, rotates k into the cache and copies v there (${fused ? "one fused projection" : "three projections"})`, async (ctx) => {
      await needGpu(ctx);
      const [B, T, H, G, D, S] = [2, 3, 4, 2, 32, 20];
      const position = 11;
      const cos = seededValues(S * D, 71);
      const sin = seededValues(S * D, 72);
      // Fused: one [B, T, (H + 2G)·D] tensor; else three.
      const width = (H + 2 * G) * D;
      const whole = seededValues(B * T * width, 73);
      const heads = (n: number, column: number, w: number) =>
        projection(B, T, n, D, column, w);
      const views = fused
        ? {
            q: heads(H, 0, width),
            k: heads(G, H * D, width),
            v: heads(G, (H + G) * D, width),
          }
        : {
            q: heads(H, 0, H * D),
            k: heads(G, 0, G * D),
            v: heads(G, 0, G * D),
          };
      const srcs = fused
        ? { q: whole, k: whole, v: whole }
        : {
            q: seededValues(B * T * H * D, 74),
            k: seededValues(B * T * G * D, 75),
            v: seededValues(B * T * G * D, 76),
          };
      const priorK = seededValues(B * G * S * D, 77);
      const priorV = seededValues(B * G * S * D, 78);
      const pc = new ProgramCase();
      const qOut = pc.output("q out", B * H * T * D);
      const kCache = pc.output("k cache", priorK.length, priorK);
      const vCache = pc.output("v cache", priorV.length, priorV);
      const inputs = fused
        ? [pc.input("qkv", whole)]
        : [pc.input("q", srcs.q), pc.input("k", srcs.k), pc.input("v", srcs.v)];
      pc.dispatch("rope qkv", ropeQkv({ B, T, H, G, D, S }, views, fused), [
        qOut,
        kCache,
        vCache,
        ...inputs,
        pc.input("cos", cos),
        pc.input("sin", sin),
      ]);
      const [gq, gk, gv] = await pc.run(decodeStepParams(position));
      const at = (t: Float32Array) => t.subarray(position * D);
      const toHead = (v: CacheView, n: number) =>
        projectionHeads(B, T, n, D, v.offset, v.sT);
      const wantQ = qkRopeForwardReference(
        srcs.q,
        toHead(views.q, H),
        at(cos),
        at(sin),
      ).out;
      const kRotated = qkRopeForwardReference(
        srcs.k,
        toHead(views.k, G),
        at(cos),
        at(sin),
      ).out;
      const dims = { B, G, T, D, S };
      expectClose(gq!, wantQ, RTOL, "q");
      expectClose(
        gk!,
        cacheWriteReference(
          priorK,
          kRotated,
          cacheLayout(G, T, D),
          dims,
          position,
        ),
        RTOL,
        "k cache",
      );
      expectClose(
        gv!,
        cacheWriteReference(priorV, srcs.v, views.v, dims, position),
        0,
        "v cache",
      );
    });
});
