/**
 * The compiled step's embedding lookup against `gatherRowsInto` over `decodeMatrix`'s values, for every storage
 * format (f32, f16, int8, NF4, each packed one with the codec) at C = 50 (scalar columns) and 576 (vec4): ids
 * inside the chunk read its rows, ids outside it (below, above, negative) leave the pre-filled output as it was.
 * Then the models' uses: two chunks filling one output with Gemma's f32 √C factor, GPT-2's positional rows for a
 * [B, T] batch, more ids than a grid dimension holds, and the storage-binding count of every variant.
 *
 * Tolerance: exact (`toEqual`) for plain lookups: the shader and the codec decode with the same f32 products.
 * 1e-6 relative with the factor and the positional row: one product and one sum, which a compiler may fuse.
 *
 * Letters: N ids, C features, R chunk rows, B batch, T positions.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  decodeMatrix,
  disposeRuntime,
  encodeMatrix,
  type PackedFormat,
} from "@webtune/core";
import type { GraphTensor } from "../../../packages/core/src/engine/graph.js";
import {
  gatherRowsInto,
  hostRowReader,
} from "../../../packages/core/src/kernels/gather/cpu.js";
import {
  embeddingLookup,
  type EmbeddingLookup,
} from "../../../packages/core/src/kernels/gather/program.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { expectClose, seededValues } from "../../helpers/tensors.js";
import { ProgramCase } from "./program_case.js";

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

type Format = PackedFormat | "float32";

const FORMATS: [Format, boolean][] = [
  ["float32", false],
  ["float16", false],
  ["int8", false],
  ["nf4", false],
  ["nf4", true],
  ["int8", true],
];

/** A [R, C] chunk in `format`: its decoded values, its lookup fields, and its arrays in binding order. */
function chunk(format: Format, doubleQuant: boolean, R: number, C: number) {
  const values = seededValues(R * C, R + C).map((v, i) => v * (1 + (i % 7)));
  const lookup = { rows: R, cols: C, format, doubleQuant, wOffset: 0 };
  if (format === "float32")
    return { decoded: values, lookup, arrays: [values] };
  const host = encodeMatrix(values, [R, C], format, { doubleQuant });
  const s = host.scales;
  const arrays: (Float32Array | Int32Array)[] = [host.data];
  if (s?.kind === "absmax") arrays.push(s.absmax);
  if (s?.kind === "double") arrays.push(s.codes, s.superScale);
  if (s?.kind === "double") lookup.wOffset = s.offset;
  return { decoded: decodeMatrix(host), lookup, arrays };
}

/** Binds one chunk's arrays as inputs. */
const bindChunk = (
  pc: ProgramCase,
  name: string,
  arrays: (Float32Array | Int32Array)[],
): GraphTensor[] => arrays.map((a, i) => pc.input(`${name} ${i}`, a));

describe("embedding lookup program", () => {
  for (const [format, doubleQuant] of FORMATS) {
    const what = `${format}${doubleQuant ? " + double quant" : ""}`;
    it(`${what}: rows of the chunk as decodeMatrix gives them; ids outside it leave the output untouched`, async (ctx) => {
      await needGpu(ctx);
      const [R, rowOffset] = [23, 10];
      // 37 ids: inside [10, 33), below, above, negative.
      const ids = Int32Array.from({ length: 37 }, (_, n) =>
        n % 5 === 4 ? [9, 33, -4, 1000][n % 4]! : 10 + ((n * 7) % R),
      );
      const pc = new ProgramCase();
      const cases = [50, 576].map((C) => {
        const c = chunk(format, doubleQuant, R, C);
        const prior = seededValues(ids.length * C, C);
        const y = pc.output(`y ${C}`, ids.length * C, prior);
        const lookup: EmbeddingLookup = {
          ...c.lookup,
          N: ids.length,
          rowOffset,
        };
        pc.dispatch(`lookup ${C}`, embeddingLookup(lookup), [
          y,
          pc.input(`ids ${C}`, ids),
          ...bindChunk(pc, `W ${C}`, c.arrays),
        ]);
        const want = prior.slice();
        gatherRowsInto(hostRowReader(c.decoded), ids, lookup, want);
        return { C, want, prior };
      });
      const got = await pc.run();
      cases.forEach(({ C, want, prior }, k) => {
        expect(Array.from(got[k]!), `C = ${C}`).toEqual(Array.from(want));
        // Row 4's id (9) is just below the chunk: still the prior values.
        expect(Array.from(got[k]!.subarray(4 * C, 5 * C))).toEqual(
          Array.from(prior.subarray(4 * C, 5 * C)),
        );
      });
    });
  }

  it("two chunks (int8 and f32) fill one output, times Gemma's f32 √C", async (ctx) => {
    await needGpu(ctx);
    const C = 576;
    const scale = Math.fround(Math.sqrt(C));
    const first = chunk("int8", false, 30, C);
    const second = chunk("float32", false, 19, C);
    const ids = Int32Array.from({ length: 37 }, (_, n) => (n * 11) % 49);
    const pc = new ProgramCase();
    const y = pc.output("y", ids.length * C);
    const idsT = pc.input("ids", ids);
    const want = new Float32Array(ids.length * C);
    [first, second].forEach((c, k) => {
      const lookup: EmbeddingLookup = {
        ...c.lookup,
        N: ids.length,
        rowOffset: k * 30,
        scale,
      };
      pc.dispatch(`chunk ${k}`, embeddingLookup(lookup), [
        y,
        idsT,
        ...bindChunk(pc, `W${k}`, c.arrays),
      ]);
      gatherRowsInto(hostRowReader(c.decoded), ids, lookup, want, { scale });
    });
    const [got] = await pc.run();
    expectClose(got!, want, 1e-6, "y");
  });

  it("adds GPT-2's positional rows pos[n % T] for a [B, T] batch, f16 and f32 chunks", async (ctx) => {
    await needGpu(ctx);
    const [B, T, C] = [2, 37, 50];
    const first = chunk("float16", false, 25, C);
    const second = chunk("float32", false, 25, C);
    const pos = seededValues(40 * C, 51); // wpe [40, C]: rows 0..T-1 are read
    const ids = Int32Array.from({ length: B * T }, (_, n) => (n * 13) % 50);
    const pc = new ProgramCase();
    const y = pc.output("y", ids.length * C);
    const [idsT, posT] = [pc.input("ids", ids), pc.input("pos", pos)];
    const want = new Float32Array(ids.length * C);
    [first, second].forEach((c, k) => {
      const lookup: EmbeddingLookup = {
        ...c.lookup,
        N: ids.length,
        rowOffset: k * 25,
        positions: T,
      };
      pc.dispatch(`chunk ${k}`, embeddingLookup(lookup), [
        y,
        idsT,
        ...bindChunk(pc, `W${k}`, c.arrays),
        posT,
      ]);
      gatherRowsInto(hostRowReader(c.decoded), ids, lookup, want, { pos, T });
    });
    const [got] = await pc.run();
    expectClose(got!, want, 1e-6, "y");
  });

  it("covers more ids than a grid dimension holds (rows stride by the grid)", async (ctx) => {
    await needGpu(ctx);
    const [N, C] = [65535 + 40, 4];
    const c = chunk("nf4", true, 300, C);
    const ids = Int32Array.from({ length: N }, (_, n) => (n * 7) % 300);
    const lookup: EmbeddingLookup = { ...c.lookup, N, rowOffset: 0 };
    const call = embeddingLookup(lookup);
    expect(call.workgroups).toEqual([1, 65535, 1]);
    const pc = new ProgramCase();
    const y = pc.output("y", N * C);
    pc.dispatch("lookup", call, [
      y,
      pc.input("ids", ids),
      ...bindChunk(pc, "W", c.arrays),
    ]);
    const want = new Float32Array(N * C);
    gatherRowsInto(hostRowReader(c.decoded), ids, lookup, want);
    const [got] = await pc.run();
    expectClose(got!, want, 0, "y");
  });

  it("binds at most 8 storage arrays in every variant", () => {
    for (const [format, doubleQuant] of FORMATS)
      for (const positions of [undefined, 8]) {
        const call = embeddingLookup({
          N: 4,
          rows: 4,
          cols: 8,
          rowOffset: 0,
          format,
          doubleQuant,
          wOffset: 0,
          positions,
        });
        expect(call.program.storage.length).toBeLessThanOrEqual(8);
        expect(call.program.storage.length).toBe(
          3 +
            (format === "float32" || format === "float16"
              ? 0
              : doubleQuant
                ? 2
                : 1) +
            (positions ? 1 : 0),
        );
      }
  });
});
