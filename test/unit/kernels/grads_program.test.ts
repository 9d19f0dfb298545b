/**
 * Full fine-tuning's gradient programs (kernels/grads/) on the real device, against their float64 references:
 * - bias, LayerNorm (dweight and dbias from one pass) and RMSNorm column sums on N = 37 and 1500 rows by C = 50
 *   and 768, in one dispatch (one slice of rows) and in two (partial sums through a scratch), each mode forced
 *   on the other N too; the per-head RMSNorm (rows (b·T + t)·H + h, rstd kept in [B, H, T] order) on 36 and 1500
 *   rows, against the RMSNorm reference given the same rstd in row order;
 * - the token table's gradient on one chunk (97 rows from row 30 of a 200-row vocabulary) with repeated ids, ids
 *   of other chunks, padding ids and absent rows, and every chunk of the table in turn;
 * - the positional table's gradient, rows past T included;
 * - grids of more than 65535 workgroups, wrapped into y.
 * Every output is a range of a larger gradient buffer that starts with stale values (a previous step's) and
 * then sees three micro-batches: A with accumulate 0 (written: stale rows zeroed), B with 1 (added), B with 0
 * (written over A + B); values outside the ranges must stay as they were. The host's sorted-ids layout is checked
 * on small examples written out, and the norm references against central finite differences.
 *
 * Tolerance: 1e-5 of each output's largest magnitude (`expectNear`): f32 sums of at most 1500 terms.
 *
 * Letters: N rows (ids), C features, V rows of the vocabulary, R rows of a chunk, T positions, P rows of the
 * positional table.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { disposeRuntime, gpuDevice, ShapeError } from "@webtune/core";
import { Engine } from "../../../packages/core/src/engine/engine.js";
import {
  graphLimits,
  StepGraph,
  type GraphTensor,
  type TensorRange,
} from "../../../packages/core/src/engine/graph.js";
import {
  biasGrad,
  columnGrads,
  layerNormParamGrads,
  recordColumnGrads,
  rmsNormScaleGrad,
  headRmsNormScaleGrad,
  type ColumnGradKind,
} from "../../../packages/core/src/kernels/grads/column_grads.js";
import {
  embeddingGrad,
  embeddingGradIndex,
  positionGrad,
} from "../../../packages/core/src/kernels/grads/embedding_grads.js";
import {
  biasGradReference,
  embeddingGradReference,
  embeddingLookupReference,
  layerNormParamGradsReference,
  positionGradReference,
  rmsNormScaleGradReference,
  type ChunkShape,
} from "../../../packages/core/src/kernels/grads/reference.js";
import {
  layerNormForwardReference,
  rmsNormForwardReference,
} from "../../../packages/core/src/kernels/norm/reference.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { expectNear, seededValues } from "../../helpers/tensors.js";
import { f32, finiteDifferenceGradient } from "./program_case.js";

const RTOL = 1e-5;
const EPS = 1e-5;
/** Elements between ranges of the gradient buffer: 256 bytes, the binding offset alignment. */
const PAD = 64;

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

const alignUp = (n: number, to: number) => Math.ceil(n / to) * to;
const sum = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  Float64Array.from(a, (v, i) => v + b[i]!);

type Feed = [GraphTensor, Float32Array | Int32Array];

/** One micro-batch: the host's values of the graph's inputs, and its step's accumulate flag. */
interface MicroBatch {
  feeds: Feed[];
  accumulate: boolean;
}

/**
 * Runs `g` once per micro-batch and reads the gradient buffer after each. `grad` (an input, which keeps its
 * values between runs unless written) holds `stale` before the first run only, as a gradient buffer holds the
 * previous step's values.
 */
async function runMicroBatches(
  g: StepGraph,
  grad: GraphTensor,
  stale: Float32Array,
  batches: MicroBatch[],
): Promise<Float32Array[]> {
  const engine = new Engine(gpuDevice());
  try {
    const compiled = engine.compile(g);
    const results: Float32Array[] = [];
    for (const [i, batch] of batches.entries()) {
      const feeds: Feed[] =
        i === 0 ? [[grad, stale], ...batch.feeds] : batch.feeds;
      const [values] = await engine.run({
        graphs: [compiled],
        inputs: feeds.map(([t, data]) => [compiled, t, data]),
        params: {
          dropoutSeed: 0,
          accumulate: batch.accumulate,
          lossScale: 1,
          maxGradNorm: 0,
          adam: [],
        },
        readback: [[compiled, grad]],
      });
      results.push(values!.slice());
    }
    return results;
  } finally {
    engine.dispose();
  }
}

/** Ranges [offset, offset + want.length) of `got` match `want`; every other value is still `stale`'s. */
function checkGradBuffer(
  got: Float32Array,
  stale: Float32Array,
  ranges: { offset: number; want: ArrayLike<number>; what: string }[],
  tag: string,
) {
  const inside = new Uint8Array(got.length);
  for (const { offset, want, what } of ranges) {
    expectNear(
      got.subarray(offset, offset + want.length),
      want,
      RTOL,
      `${tag}: ${what}`,
    );
    inside.fill(1, offset, offset + want.length);
  }
  const outside = (a: Float32Array) => a.filter((_, i) => !inside[i]);
  expect(outside(got), `${tag}: values outside the gradient ranges`).toEqual(
    outside(stale),
  );
}

/** The three micro-batches' expected gradients: A (written), A + B (added), B (written over A + B). */
function sequence(a: ArrayLike<number>, b: ArrayLike<number>) {
  return [Float64Array.from(a), sum(a, b), Float64Array.from(b)];
}

describe("column gradients: bias, LayerNorm weight and bias, RMSNorm scale", () => {
  /** Row n = (b·T + t)·H + h of a per-head norm, for N rows: T and H (B = N / (T·H)). */
  const HEADS: Record<number, { T: number; H: number }> = {
    36: { T: 4, H: 3 },
    37: { T: 37, H: 1 },
    1500: { T: 50, H: 6 },
  };

  /** rstd of rows n = (b·T + t)·H + h, reordered to [B, H, T] as the rope program keeps it. */
  function headOrder(rstd: Float32Array, N: number): Float32Array {
    const { T, H } = HEADS[N]!;
    const out = new Float32Array(N);
    for (let n = 0; n < N; n++) {
      const [h, t, b] = [n % H, Math.floor(n / H) % T, Math.floor(n / (H * T))];
      out[(b * H + h) * T + t] = rstd[n]!;
    }
    return out;
  }

  /** One micro-batch of a norm's inputs: x with a different mean per row, dy, and the forward's statistics. */
  function normBatch(N: number, C: number, seed: number) {
    const x = seededValues(N * C, seed).map(
      (v, i) => 2 * v + 0.3 * (Math.floor(i / C) % 5),
    );
    const dy = seededValues(N * C, seed + 1);
    const ones = new Float32Array(C).fill(1);
    const ln = layerNormForwardReference(x, ones, ones, { N, C, eps: EPS });
    const rms = rmsNormForwardReference(x, ones, { N, C, eps: EPS });
    return {
      dy,
      x,
      mean: f32(ln.mean),
      rstd: f32(ln.rstd),
      rmsRstd: f32(rms.rstd),
      headRstd: HEADS[N] ? headOrder(f32(rms.rstd), N) : undefined,
    };
  }
  type NormBatch = ReturnType<typeof normBatch>;

  const inputsOf: Record<ColumnGradKind, (d: NormBatch) => Float32Array[]> = {
    bias: (d) => [d.dy],
    layerNorm: (d) => [d.dy, d.x, d.mean, d.rstd],
    rmsNorm: (d) => [d.dy, d.x, d.rmsRstd],
    headRmsNorm: (d) => [d.dy, d.x, d.headRstd!],
  };

  function reference(kind: ColumnGradKind, d: NormBatch, N: number, C: number) {
    const shape = { N, C };
    if (kind === "bias") return [biasGradReference(d.dy, shape)];
    if (kind === "rmsNorm" || kind === "headRmsNorm")
      return [rmsNormScaleGradReference(d.dy, d.x, d.rmsRstd, shape)];
    const g = layerNormParamGradsReference(d.dy, d.x, d.mean, d.rstd, shape);
    return [g.dWeight, g.dBias];
  }

  /** Records `kind` with its outputs inside a padded gradient buffer; runs A, B, B (or the first `microBatches`); checks each. */
  async function check(
    kind: ColumnGradKind,
    N: number,
    C: number,
    expectedCalls: number,
    rowsPerSlice?: number,
    microBatches = 3,
  ) {
    const grads =
      kind === "headRmsNorm"
        ? headRmsNormScaleGrad(
            N / (HEADS[N]!.T * HEADS[N]!.H),
            HEADS[N]!.T,
            HEADS[N]!.H,
            C,
            rowsPerSlice,
          )
        : columnGrads(kind, N, C, rowsPerSlice);
    expect(grads.calls.length, "dispatches").toBe(expectedCalls);
    // [PAD | out 0 | gap | out 1 | PAD], each output at a 256-byte offset.
    const offsets: number[] = [];
    let end = 0;
    for (let k = 0; k < grads.outputs; k++) {
      offsets.push(alignUp(end, PAD) + PAD);
      end = offsets[k]! + C;
    }
    const stale = seededValues(alignUp(end, PAD) + PAD, 71);
    const g = new StepGraph(graphLimits(gpuDevice()));
    const grad = g.input("grad", [stale.length], "f32");
    const [a, b] = [normBatch(N, C, 81), normBatch(N, C, 91)];
    const inputs = inputsOf[kind](a).map((v, i) =>
      g.input(`input ${i}`, [v.length], "f32"),
    );
    recordColumnGrads<GraphTensor | TensorRange>(
      grads,
      offsets.map((o) => grad.range(o, C)),
      inputs,
      (elements) => g.activation("partial sums", [elements]),
      (call, bindings) => g.dispatch(kind, call, bindings),
    );
    const feeds = (d: NormBatch): Feed[] =>
      inputsOf[kind](d).map((v, i) => [inputs[i]!, v]);
    const runs = await runMicroBatches(
      g,
      grad,
      stale,
      [
        { feeds: feeds(a), accumulate: false },
        { feeds: feeds(b), accumulate: true },
        { feeds: feeds(b), accumulate: false },
      ].slice(0, microBatches),
    );
    const [wantA, wantB] = [reference(kind, a, N, C), reference(kind, b, N, C)];
    const perOutput = offsets.map((_, k) => sequence(wantA[k]!, wantB[k]!));
    runs.forEach((got, run) => {
      checkGradBuffer(
        got,
        stale,
        offsets.map((offset, k) => ({
          offset,
          want: perOutput[k]![run]!,
          what: `output ${k}`,
        })),
        `${kind} [${N}, ${C}], micro-batch ${run}`,
      );
    });
  }

  const kinds: ColumnGradKind[] = ["bias", "layerNorm", "rmsNorm"];
  for (const kind of kinds)
    for (const N of [37, 1500])
      for (const C of [50, 768]) {
        const calls = N === 37 ? 1 : 2;
        it(`${kind} [${N}, ${C}] in ${calls} dispatch(es) is written, added to, then written over in its ranges`, async (ctx) => {
          await needGpu(ctx);
          await check(kind, N, C, calls);
        });
      }

  for (const N of [36, 1500]) {
    const calls = N === 36 ? 1 : 2;
    it(`headRmsNorm [${N}, 64] (T ${HEADS[N]!.T}, H ${HEADS[N]!.H}) in ${calls} dispatch(es) matches RMSNorm's sum with rstd in row order`, async (ctx) => {
      await needGpu(ctx);
      await check("headRmsNorm", N, 64, calls);
    });
  }
  it("headRmsNorm: 36 rows forced into slices of 5 match too", async (ctx) => {
    await needGpu(ctx);
    await check("headRmsNorm", 36, 64, 2, 5);
  });
  it("headRmsNorm refuses rows that are not whole [T, H] blocks", () => {
    expect(() =>
      columnGrads("headRmsNorm", 10, 8, undefined, { T: 4, H: 3 }),
    ).toThrow(/10 rows are not a whole number of \[T 4, H 3\] blocks/);
  });

  for (const kind of kinds) {
    it(`${kind}: 37 rows forced into slices of 5 (the last short) match too`, async (ctx) => {
      await needGpu(ctx);
      await check(kind, 37, 50, 2, 5);
    });
    it(`${kind}: 1500 rows forced into one slice match too`, async (ctx) => {
      await needGpu(ctx);
      await check(kind, 1500, 50, 1, 1500);
    });
  }

  it("more than 65535 column blocks of one slice wrap into y", async (ctx) => {
    await needGpu(ctx);
    const C = 65535 * 32 + 40;
    expect(biasGrad(1, C).calls[0]!.workgroups).toEqual([65535, 2, 1]);
    // One micro-batch: the lanes are slow to simulate.
    await check("bias", 1, C, 1, undefined, 1);
  });

  it("more than 65535 blocks by slices wrap into y (32769 column blocks by 2 slices)", async (ctx) => {
    await needGpu(ctx);
    const C = 32768 * 32 + 8;
    expect(biasGrad(2, C, 1).calls[0]!.workgroups).toEqual([65535, 2, 1]);
    await check("bias", 2, C, 2, 1, 1);
  });

  it("the references are the finite-difference gradients of the norms' forward references", () => {
    const shape = { N: 3, C: 7, eps: 1e-3 };
    const x = seededValues(21, 51).map((v) => 2 * v + 0.5);
    const weight = seededValues(7, 52).map((v) => 1 + 0.5 * v);
    const bias = seededValues(7, 53);
    const dy = seededValues(21, 54);
    const { mean, rstd } = layerNormForwardReference(x, weight, bias, shape);
    const ln = layerNormParamGradsReference(dy, x, mean, rstd, shape);
    const lnY = (w: ArrayLike<number>, b: ArrayLike<number>) =>
      layerNormForwardReference(x, w, b, shape).y;
    expectNear(
      ln.dWeight,
      finiteDifferenceGradient((w) => lnY(w, bias), weight, dy),
      1e-7,
      "LayerNorm dweight",
    );
    expectNear(
      ln.dBias,
      finiteDifferenceGradient((b) => lnY(weight, b), bias, dy),
      1e-7,
      "LayerNorm dbias",
    );
    const rms = rmsNormForwardReference(x, weight, shape);
    expectNear(
      rmsNormScaleGradReference(dy, x, rms.rstd, shape),
      finiteDifferenceGradient(
        (s) => rmsNormForwardReference(x, s, shape).y,
        weight,
        dy,
      ),
      1e-7,
      "RMSNorm dscale",
    );
    // dbias is the plain column sum, and a wrong dweight would not pass for it.
    expectNear(ln.dBias, biasGradReference(dy, shape), 1e-12, "bias");
    expect(
      Math.max(...ln.dWeight.map((v, c) => Math.abs(v - ln.dBias[c]!))),
    ).toBeGreaterThan(0.1);
  });

  it("one pipeline per kind and mode: keys name neither N nor C; only the outputs' stores read step parameters", () => {
    const one = layerNormParamGrads(37, 50);
    const two = layerNormParamGrads(1500, 50);
    expect(one.calls[0]!.program.key).toBe(
      layerNormParamGrads(100, 768).calls[0]!.program.key,
    );
    expect(two.calls.map((c) => c.program.key)).toEqual(
      layerNormParamGrads(4096, 3072).calls.map((c) => c.program.key),
    );
    const keys = new Set(
      [one, two, biasGrad(37, 50), rmsNormScaleGrad(37, 50)].flatMap((g) =>
        g.calls.map((c) => c.program.key),
      ),
    );
    expect(keys.size).toBe(5);
    expect(one.calls[0]!.program.stepParams).toBe(true);
    expect(two.calls.map((c) => c.program.stepParams)).toEqual([false, true]);
    expect(two.scratch).toBe(two.calls[0]!.uniforms[3]! * 2 * 50);
    for (const c of [...one.calls, ...two.calls]) {
      const [x, y, z] = c.program.workgroupSize;
      expect(x * y * z).toBeLessThanOrEqual(256);
      expect(c.program.storage.length).toBeLessThanOrEqual(8);
    }
  });

  it("refuses bad shapes and the wrong number of bindings", () => {
    expect(() => biasGrad(0, 8)).toThrow(ShapeError);
    expect(() => rmsNormScaleGrad(8, 2.5)).toThrow(/C must be/);
    expect(() => biasGrad(8, 8, 0)).toThrow(/rowsPerSlice/);
    expect(() =>
      recordColumnGrads(
        layerNormParamGrads(4, 4),
        [0],
        [0, 0, 0, 0],
        () => 0,
        () => {},
      ),
    ).toThrow(/2 outputs and 4 inputs/);
  });
});

describe("the host's sorted ids", () => {
  it("lays out order, run starts and the run count for a small batch", () => {
    // Sorted (id, position): (-1, 3) (2, 1) (2, 4) (5, 0) (5, 2) (5, 6) (7, 5): runs at 0, 1, 3, 6.
    expect([...embeddingGradIndex([5, 2, 5, -1, 2, 7, 5])]).toEqual([
      ...[3, 1, 4, 0, 2, 6, 5],
      ...[0, 1, 3, 6, 7, 7, 7, 7],
      4,
    ]);
    expect([...embeddingGradIndex([9, 9, 9])]).toEqual([
      ...[0, 1, 2],
      ...[0, 3, 3, 3],
      1,
    ]);
    expect([...embeddingGradIndex([4, 3, 2, 1])]).toEqual([
      ...[3, 2, 1, 0],
      ...[0, 1, 2, 3, 4],
      4,
    ]);
  });

  it("writes into a given array, and refuses one of the wrong length", () => {
    const out = new Int32Array(6).fill(-9);
    expect(embeddingGradIndex([1, 0], out)).toBe(out);
    expect([...out]).toEqual([1, 0, 0, 1, 2, 2]);
    expect(() => embeddingGradIndex([1, 0], new Int32Array(5))).toThrow(
      ShapeError,
    );
  });
});

describe("embedding gradients", () => {
  const V = 200;

  /**
   * N ids of a 200-row vocabulary, skewed to small ids (repeats), with every 11th a padding id (−1) and every
   * 4th the one before it; ids ≡ seed mod 5 never occur (two seeds reach different rows), nor 100 to 109.
   */
  function batchIds(N: number, seed: number): Int32Array {
    const u = seededValues(N, seed);
    return Int32Array.from(u, (v, n) => {
      if (n % 11 === 10) return -1;
      let id = Math.floor(V * ((v + 1) / 2) ** 2);
      if (id % 5 === seed % 5) id = (id + 1) % V;
      if (id >= 100 && id < 110) id -= 20;
      return n % 4 === 3 ? -2 : id;
    }).map((id, n, all) => (id === -2 ? all[n - 1]! : id));
  }

  /**
   * One graph of `chunks` (each [rowOffset, rowOffset + R) of the table) inside a padded gradient buffer, run on
   * micro-batches A, B, B; checks every chunk's rows each run and that nothing else changed.
   */
  async function check(
    N: number,
    C: number,
    chunks: [number, number][],
    scale: number,
  ) {
    const first = chunks[0]![0];
    const head = PAD + ((PAD - ((first * C) % PAD)) % PAD); // table row `first` at a 256-byte offset
    const stale = seededValues(head + V * C + PAD, 72);
    const g = new StepGraph(graphLimits(gpuDevice()));
    const grad = g.input("grad", [stale.length], "f32");
    const dx = g.input("dx", [N * C], "f32");
    const ids = g.input("ids", [N], "i32");
    const index = g.input("index", [2 * N + 2], "i32");
    for (const [rowOffset, rows] of chunks)
      g.dispatch(
        `embedding grad ${rowOffset}`,
        embeddingGrad({ N, rows, cols: C, rowOffset, scale }),
        [grad.range(head + rowOffset * C, rows * C), dx, ids, index],
      );
    const batch = (seed: number) => {
      const id = batchIds(N, seed);
      return {
        dx: seededValues(N * C, seed + 1),
        ids: id,
        index: embeddingGradIndex(id),
      };
    };
    const [a, b] = [batch(1), batch(2)];
    const feeds = (d: ReturnType<typeof batch>): Feed[] => [
      [dx, d.dx],
      [ids, d.ids],
      [index, d.index],
    ];
    const runs = await runMicroBatches(g, grad, stale, [
      { feeds: feeds(a), accumulate: false },
      { feeds: feeds(b), accumulate: true },
      { feeds: feeds(b), accumulate: false },
    ]);
    const wants = chunks.map(([rowOffset, rows]) => {
      const shape: ChunkShape = { N, C, rows, rowOffset, scale };
      const [wa, wb] = [a, b].map((d) =>
        embeddingGradReference(d.dx, d.ids, shape),
      );
      return sequence(wa!, wb!);
    });
    runs.forEach((got, run) =>
      checkGradBuffer(
        got,
        stale,
        chunks.map(([rowOffset], k) => ({
          offset: head + rowOffset * C,
          want: wants[k]![run]!,
          what: `rows from ${rowOffset}`,
        })),
        `[${N}, ${C}], micro-batch ${run}`,
      ),
    );
    return { a: a.ids, b: b.ids };
  }

  for (const N of [37, 1500])
    for (const C of [50, 768]) {
      const scale = C === 50 ? Math.sqrt(C) : 1;
      it(`one chunk (97 rows from 30 of ${V}), ${N} ids by ${C}, scale ${scale.toFixed(2)}: rows written, added to, zeroed`, async (ctx) => {
        await needGpu(ctx);
        const { a, b } = await check(N, C, [[30, 97]], scale);
        // The batches hold what the test is about: repeats and ids of other chunks (and padding), rows of the
        // chunk that A reaches and B does not (zeroed in the last run), and rows that neither reaches.
        const inChunk = (v: number) => v >= 30 && v < 127;
        const reachedA = new Set([...a].filter(inChunk));
        const reachedB = new Set([...b].filter(inChunk));
        expect(reachedA.size).toBeLessThan([...a].filter(inChunk).length);
        expect([...a].some((v) => v >= 0 && !inChunk(v))).toBe(true);
        expect(a.includes(-1)).toBe(true);
        expect([...reachedA].some((v) => !reachedB.has(v))).toBe(true);
        expect(
          Array.from({ length: 97 }, (_, r) => r + 30).some(
            (v) => !reachedA.has(v) && !reachedB.has(v),
          ),
        ).toBe(true);
      });
    }

  it("every chunk in turn fills the whole table", async (ctx) => {
    await needGpu(ctx);
    await check(
      1500,
      768,
      [
        [0, 30],
        [30, 97],
        [127, 73],
      ],
      1,
    );
  });

  it("more than 65535 workgroups of rows wrap into y", async (ctx) => {
    await needGpu(ctx);
    const rows = 65535 * 16 + 20;
    const call = embeddingGrad({ N: 5, rows, cols: 1, rowOffset: 0 });
    expect(call.workgroups).toEqual([65535, 2, 1]);
    const ids = Int32Array.from([rows - 1, 0, rows - 1, 65535 * 16 + 3, 7]);
    const dx = Float32Array.from([1, 2, 3, 4, 5]);
    const stale = new Float32Array(rows + PAD).fill(9);
    const g = new StepGraph(graphLimits(gpuDevice()));
    const grad = g.input("grad", [stale.length], "f32");
    const [dxT, idsT, indexT] = [
      g.input("dx", [5], "f32"),
      g.input("ids", [5], "i32"),
      g.input("index", [12], "i32"),
    ];
    g.dispatch("embedding grad", call, [
      grad.range(0, rows),
      dxT,
      idsT,
      indexT,
    ]);
    const [got] = await runMicroBatches(g, grad, stale, [
      {
        feeds: [
          [dxT, dx],
          [idsT, ids],
          [indexT, embeddingGradIndex(ids)],
        ],
        accumulate: false,
      },
    ]);
    const want = new Float32Array(rows);
    want.set([2], 0);
    want.set([5], 7);
    want.set([4], 65535 * 16 + 3);
    want.set([4], rows - 1);
    checkGradBuffer(got!, stale, [{ offset: 0, want, what: "dE" }], "wrapped");
  });

  it("the reference is the finite-difference gradient of the lookup", () => {
    const shape: ChunkShape = { N: 9, C: 3, rows: 4, rowOffset: 2, scale: 1.5 };
    const ids = [2, 5, 3, 2, 0, 9, 5, 5, -1];
    const table = seededValues(12, 61);
    const dy = seededValues(27, 62);
    expectNear(
      embeddingGradReference(dy, ids, shape),
      finiteDifferenceGradient(
        (t) => embeddingLookupReference(t, ids, shape),
        table,
        dy,
      ),
      1e-7,
      "dE",
    );
    const pos = seededValues(5 * 3, 63);
    expectNear(
      positionGradReference(dy, { N: 9, C: 3, T: 3, rows: 5 }),
      finiteDifferenceGradient(
        (p) => embeddingLookupReference(table, ids, shape, { pos: p, T: 3 }),
        pos,
        dy,
      ),
      1e-7,
      "dpos",
    );
  });

  /** The positional table [P, C] inside a padded gradient buffer, runs A, B, B. */
  async function checkPositions(N: number, T: number, P: number, C: number) {
    const stale = seededValues(PAD + P * C + PAD, 73);
    const g = new StepGraph(graphLimits(gpuDevice()));
    const grad = g.input("grad", [stale.length], "f32");
    const dx = g.input("dx", [N * C], "f32");
    g.dispatch("position grad", positionGrad({ N, T, rows: P, cols: C }), [
      grad.range(PAD, P * C),
      dx,
    ]);
    const [a, b] = [seededValues(N * C, 3), seededValues(N * C, 4)];
    const runs = await runMicroBatches(g, grad, stale, [
      { feeds: [[dx, a]], accumulate: false },
      { feeds: [[dx, b]], accumulate: true },
      { feeds: [[dx, b]], accumulate: false },
    ]);
    const shape = { N, C, T, rows: P };
    const wants = sequence(
      positionGradReference(a, shape),
      positionGradReference(b, shape),
    );
    runs.forEach((got, run) =>
      checkGradBuffer(
        got,
        stale,
        [{ offset: PAD, want: wants[run]!, what: "dpos" }],
        `positions [${N}, ${C}], T ${T}, micro-batch ${run}`,
      ),
    );
  }

  for (const [N, T, P] of [
    [37, 37, 50],
    [1500, 500, 517],
  ] as const)
    for (const C of [50, 768])
      it(`positions: ${N} rows of T = ${T} by ${C} into a ${P}-row table; rows past T zeroed, then left`, async (ctx) => {
        await needGpu(ctx);
        await checkPositions(N, T, P, C);
      });

  it("positions: more than 65535 rows wrap into y", async (ctx) => {
    await needGpu(ctx);
    expect(
      positionGrad({ N: 66000, T: 66000, rows: 66003, cols: 1 }).workgroups,
    ).toEqual([65535, 2, 1]);
    await checkPositions(66000, 66000, 66003, 1);
  });

  it("refuses bad shapes; keys name no shape", () => {
    expect(() =>
      embeddingGrad({ N: 4, rows: 0, cols: 8, rowOffset: 0 }),
    ).toThrow(ShapeError);
    expect(() =>
      embeddingGrad({ N: 4, rows: 8, cols: 8, rowOffset: -1 }),
    ).toThrow(/rowOffset/);
    expect(() => positionGrad({ N: 8, T: 9, rows: 8, cols: 4 })).toThrow(
      /T = 9/,
    );
    expect(
      embeddingGrad({ N: 4, rows: 8, cols: 8, rowOffset: 0 }).program.key,
    ).toBe(
      embeddingGrad({ N: 40, rows: 97, cols: 768, rowOffset: 30, scale: 2 })
        .program.key,
    );
    expect(positionGrad({ N: 8, T: 8, rows: 8, cols: 4 }).program.key).toBe(
      positionGrad({ N: 80, T: 40, rows: 50, cols: 768 }).program.key,
    );
  });
});
