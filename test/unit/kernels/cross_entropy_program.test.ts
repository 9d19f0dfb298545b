/**
 * The cross-entropy programs of the compiled step (kernels/cross_entropy/program.ts) on the real device, run by
 * the engine, against their float64 references: K = 3 chunks of 50, 50 and 17 columns (V = 117), n = 37 rows,
 * targets in every chunk and −100, with and without a softcap of 5 (logits up to ±12, where tanh saturates).
 * lossScale is 1 / (this block's valid rows + 13 rows of another block): an external weight, not this block's mean.
 * combine's loss is checked on both paths: overwritten by a run's first block (whatever the step's accumulate
 * flag: each micro-batch reads its own loss back) and added to a prior value by a later block. The assembled loss and dz also match a plain full-vocabulary softmax
 * cross-entropy in float64.
 * Tolerance: every output within 1e-5 of the largest magnitude of that output (f32 exp / log / tanh against
 * float64, over at most 117 terms per row).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { disposeRuntime, gpuDevice } from "@webtune/core";
import {
  Engine,
  type RunRequest,
} from "../../../packages/core/src/engine/engine.js";
import type { CompiledGraph } from "../../../packages/core/src/engine/executor.js";
import {
  graphLimits,
  StepGraph,
  type GraphTensor,
} from "../../../packages/core/src/engine/graph.js";
import {
  chunkGradCall,
  chunkStatsCall,
  combineCall,
  STATS_WIDTH,
} from "../../../packages/core/src/kernels/cross_entropy/program.js";
import {
  chunkGradReference,
  chunkStatsReference,
  combineReference,
  crossEntropyReference,
} from "../../../packages/core/src/kernels/cross_entropy/reference.js";
import type {
  Program,
  ProgramCall,
} from "../../../packages/core/src/kernels/program.js";
import type { StepParams } from "../../../packages/core/src/kernels/step_params.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { expectNear, seededValues } from "../../helpers/tensors.js";

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

const RTOL = 1e-5;
// Letters: n rows, Vc columns of a chunk, K chunks, V = Σ Vc.
const WIDTHS = [50, 50, 17];
const STARTS = [0, 50, 100];
const V = 117;
const K = WIDTHS.length;
const n = 37;
const OTHER_BLOCK_ROWS = 13;
const PRIOR_LOSS = 0.625;

// Every sixth row ignored; the others spread over the whole vocabulary, so every chunk holds some targets.
const targets = Int32Array.from({ length: n }, (_, r) =>
  r % 6 === 5 ? -100 : (r * 37 + 11) % V,
);
const valid = targets.filter((t) => t !== -100).length;
const lossScale = 1 / (valid + OTHER_BLOCK_ROWS);
// z_k [n, Vc]: up to ±12, so a softcap of 5 bends them hard.
const zChunks = WIDTHS.map((Vc, k) =>
  seededValues(n * Vc, 40 + k).map((x) => 12 * x),
);

/** Worst error within RTOL of the output's largest magnitude. */
const near = (a: ArrayLike<number>, e: ArrayLike<number>, what: string) =>
  expectNear(a, e, RTOL, what);

/** Column `c` of rows of `width` floats. */
const column = (a: ArrayLike<number>, width: number, c: number) =>
  Array.from({ length: a.length / width }, (_, r) => a[r * width + c]!);

/** dst ← src: the test moves host inputs into activations, which the engine can read back. */
const COPY: Program = {
  key: "testCopy_64",
  storage: [
    { name: "dst", element: "f32", access: "read_write" },
    { name: "src", element: "f32", access: "read" },
  ],
  uniforms: [{ name: "count", type: "i32" }],
  stepParams: false,
  workgroupSize: [64, 1, 1],
  flat: true,
  body: `fn main(index : i32) { if (index < uniforms.count) { dst[index] = src[index]; } }`,
};
const copyCall = (count: number): ProgramCall => ({
  program: COPY,
  uniforms: [count],
  workgroups: [Math.ceil(count / 64), 1, 1],
});

/** One row block's loss head: copies in, K × chunkStats, combine, K × chunkGrad; reads everything back. */
function buildGraph(softcap: number | undefined, first: boolean) {
  const g = new StepGraph(graphLimits(gpuDevice()));
  const t = g.input("targets", [n], "i32");
  const lossIn = g.input("prior loss", [1], "f32");
  const zIn = WIDTHS.map((Vc, k) => g.input(`z${k} in`, [n, Vc], "f32"));
  const z = WIDTHS.map((Vc, k) => g.activation(`z${k}`, [n, Vc]));
  const stats = g.activation("stats", [K, n, STATS_WIDTH]);
  const lse = g.activation("lse", [n]);
  const loss = g.activation("loss", [1]);
  g.dispatch("loss in", copyCall(1), [loss, lossIn]);
  WIDTHS.forEach((Vc, k) => {
    g.dispatch(`z${k} in`, copyCall(n * Vc), [z[k]!, zIn[k]!]);
    const shape = { n, Vc, v0: STARTS[k]! };
    g.dispatch(`stats ${k}`, chunkStatsCall(shape, k, softcap), [
      stats,
      z[k]!,
      t,
    ]);
  });
  g.dispatch("combine", combineCall(n, K, first), [lse, loss, stats, t]);
  WIDTHS.forEach((Vc, k) => {
    const shape = { n, Vc, v0: STARTS[k]! };
    g.dispatch(`grad ${k}`, chunkGradCall(shape, softcap), [z[k]!, lse, t]);
  });
  for (const r of [stats, lse, loss, ...z]) g.readback(r);
  return { g, t, lossIn, zIn, reads: [stats, lse, loss, ...z] };
}

/** The full-vocabulary logits [n, V] from the chunks [n, Vc]. */
function assemble(chunks: ArrayLike<number>[]): Float64Array {
  const full = new Float64Array(n * V);
  chunks.forEach((c, k) => {
    const Vc = WIDTHS[k]!;
    for (let r = 0; r < n; r++)
      for (let j = 0; j < Vc; j++)
        full[r * V + STARTS[k]! + j] = c[r * Vc + j]!;
  });
  return full;
}

describe("cross-entropy programs", () => {
  it("test data has targets in every chunk, ignored rows, and logits a softcap bends", () => {
    for (const [k, v0] of STARTS.entries())
      expect(
        targets.some((t) => t >= v0 && t < v0 + WIDTHS[k]!),
        `chunk ${k}`,
      ).toBe(true);
    expect(valid).toBeLessThan(n);
    expect(Math.max(...zChunks.map((z) => Math.max(...z)))).toBeGreaterThan(10);
  });

  for (const softcap of [undefined, 5]) {
    it(`match the float64 references and full-vocabulary cross-entropy, softcap ${softcap ?? "none"}, overwrite and add`, async (ctx) => {
      await needGpu(ctx);
      const engine = new Engine(gpuDevice());
      try {
        // [first block, accumulate, the loss before this block counts]
        const runs: [boolean, boolean, boolean][] = [
          [true, false, false], // overwrite
          [true, true, false], // a later micro-batch is its own run: it overwrites too
          [false, false, true], // a later block adds
        ];
        const stats = zChunks.map((z, k) =>
          chunkStatsReference(z, targets, STARTS[k]!, softcap),
        );
        const combined = combineReference(stats, targets, lossScale, 0);
        const dz = zChunks.map((z, k) =>
          chunkGradReference(
            z,
            targets,
            combined.lse,
            STARTS[k]!,
            softcap,
            lossScale,
          ),
        );
        const full = crossEntropyReference(
          assemble(zChunks),
          targets,
          softcap,
          lossScale,
        );
        const graphs = new Map<
          boolean,
          ReturnType<typeof buildGraph> & { graph: CompiledGraph }
        >();
        for (const [first, accumulate, adds] of runs) {
          const what = `first ${first}, accumulate ${accumulate}`;
          if (!graphs.has(first)) {
            const built = buildGraph(softcap, first);
            graphs.set(first, { ...built, graph: engine.compile(built.g) });
          }
          const { graph, ...built } = graphs.get(first)!;
          const params: StepParams = {
            dropoutSeed: 0,
            accumulate,
            lossScale,
            maxGradNorm: 0,
            adam: [],
          };
          const inputs: RunRequest["inputs"] = [
            [graph, built.t, targets],
            [graph, built.lossIn, Float32Array.of(PRIOR_LOSS)],
            ...built.zIn.map(
              (t, k): [CompiledGraph, GraphTensor, Float32Array] => [
                graph,
                t,
                zChunks[k]!,
              ],
            ),
          ];
          const out = await engine.run({
            graphs: [graph],
            inputs,
            params,
            readback: built.reads.map((t) => [graph, t]),
          });
          const [gotStats, gotLse, gotLoss, ...gotDz] = out;
          stats.forEach((s, k) => {
            const part = gotStats!.subarray(
              k * n * STATS_WIDTH,
              (k + 1) * n * STATS_WIDTH,
            );
            for (const [c, name] of ["max", "sum", "target logit"].entries())
              near(
                column(part, STATS_WIDTH, c),
                column(s, STATS_WIDTH, c),
                `${what}: chunk ${k} ${name}`,
              );
            expect(column(part, STATS_WIDTH, 3), `chunk ${k} found`).toEqual(
              column(s, STATS_WIDTH, 3),
            );
          });
          near(gotLse!, combined.lse, `${what}: lse`);
          const prior = adds ? PRIOR_LOSS : 0;
          near(gotLoss!, [prior + combined.loss], `${what}: loss`);
          gotDz.forEach((d, k) => near(d, dz[k]!, `${what}: dz ${k}`));
          // The pieces add up to the plain softmax cross-entropy over the whole vocabulary.
          near(
            [gotLoss![0]! - prior],
            [full.loss],
            `${what}: full-vocabulary loss`,
          );
          near(assemble(gotDz), full.dz, `${what}: full-vocabulary dz`);
        }
      } finally {
        engine.dispose();
      }
    });
  }
});
