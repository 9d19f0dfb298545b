/**
 * Reductions with subgroups and in workgroup memory (kernels/subgroups.ts), each kind forced in turn, against
 * float64 references: the reduction functions themselves at workgroups from 4 invocations (narrower than
 * lavapipe's subgroup of 8) to 1024; the norms' row statistics and backward sums, and the tfjs norm kernels, which
 * must give the compiled step's forward bits (the tape is its oracle); cross-entropy's chunk statistics
 * (the softmax's max and sum) and log-sum-exp combine; and the gradient norm AdamW clips by. The shapes are not
 * multiples of the workgroup or of any subgroup size: one row, rows narrower than a subgroup, odd widths, rows of
 * 4099 and 5000 (64 and 20 elements per invocation), more rows than combine's workgroup, a flat buffer that
 * AdamW's grid-stride loops go round.
 * The subgroup cases run wherever the device has `subgroups` (lavapipe here, with subgroups of 8), and are skipped,
 * visibly, elsewhere.
 *
 * Tolerance: 1e-5 relative (`expectClose`'s floor is the output's rms), and for cross-entropy 1e-5 of the output's
 * largest magnitude (`expectNear`, as its own test). The two kinds add in different orders (a tree of 2, or
 * subgroups then their partials), f32 sums of up to 5000 terms against float64; the kinds are not compared with
 * each other bit for bit.
 *
 * Letters: N rows, C features; n rows of a block, Vc columns of a chunk, K chunks; P elements of AdamW's buffers.
 */
import * as tf from "@tensorflow/tfjs";
import type { TestContext } from "vitest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DeviceError, disposeRuntime, gpuDevice } from "@webtune/core";
import {
  adamwStepCall,
  flatLayout,
  gradNormPartialsCall,
  gradNormWorkgroups,
  MAX_ADAMW_WORKGROUPS,
} from "../../../packages/core/src/kernels/adamw/program.js";
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
} from "../../../packages/core/src/kernels/cross_entropy/reference.js";
import {
  layerNorm,
  rmsNorm,
} from "../../../packages/core/src/kernels/norm/op.js";
import {
  layerNormBackward,
  layerNormForward,
  rmsNormBackward,
  rmsNormForward,
} from "../../../packages/core/src/kernels/norm/program.js";
import {
  layerNormBackwardReference,
  layerNormForwardReference,
  rmsNormBackwardReference,
  rmsNormForwardReference,
} from "../../../packages/core/src/kernels/norm/reference.js";
import { segmentSumWGSL } from "../../../packages/core/src/kernels/norm/shader.wgsl.js";
import {
  programSource,
  type Program,
  type ProgramCall,
} from "../../../packages/core/src/kernels/program.js";
import {
  programFor,
  reductionKind,
  reductionSuffix,
  setReductionKind,
  withSubgroupVariant,
  workgroupReduceWGSL,
  type ReductionKind,
} from "../../../packages/core/src/kernels/subgroups.js";
import { compileProgram } from "../../../packages/core/src/engine/pipelines.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import {
  expectClose,
  expectNear,
  seededValues,
} from "../../helpers/tensors.js";
import { f32, ProgramCase } from "./program_case.js";

const RTOL = 1e-5;
const EPS = 1e-5;
const KINDS: ReductionKind[] = ["workgroup", "subgroup"];

beforeAll(async () => {
  await startGpu();
});
afterAll(() => {
  setReductionKind(undefined);
  disposeRuntime();
});

/** Skips, visibly, the subgroup cases of a device without subgroups; checks that `call` runs as `kind`. */
async function needKind(
  ctx: TestContext,
  kind: ReductionKind,
  calls: ProgramCall[],
): Promise<void> {
  await needGpu(ctx);
  const device = gpuDevice();
  if (kind === "subgroup" && !device.features.has("subgroups"))
    ctx.skip("this device has no subgroups");
  for (const { program } of calls) {
    const key = programFor(device, program).key;
    expect(key.endsWith(reductionSuffix(kind === "subgroup")), key).toBe(true);
    expect(compileProgram(device, program).pipeline.label).toBe(key);
  }
}

/** A fake device with or without the feature, for the choice alone. */
const deviceWith = (features: string[]) =>
  ({ features: new Set(features) }) as unknown as GPUDevice;

/** The programs that reduce, one call of each. */
const reducingCalls = (): ProgramCall[] => [
  layerNormForward(3, 50, EPS),
  layerNormBackward(3, 50, true),
  rmsNormForward(3, 50, EPS, true),
  rmsNormBackward(3, 50, false),
  chunkStatsCall({ n: 3, Vc: 9, v0: 0 }, 0, undefined),
  chunkStatsCall({ n: 3, Vc: 9, v0: 0 }, 0, 5),
  combineCall(3, 2, true),
  gradNormPartialsCall(1024),
  adamwStepCall(1024, 1, { beta1: 0.9, beta2: 0.999, eps: 1e-8 }),
];

describe("the choice of reduction", () => {
  it("is subgroups where the device has them, else workgroup memory; an override forces either", () => {
    const withFeature = deviceWith(["shader-f16", "subgroups"]);
    const without = deviceWith(["shader-f16"]);
    expect(reductionKind(withFeature)).toBe("subgroup");
    expect(reductionKind(without)).toBe("workgroup");
    try {
      setReductionKind("workgroup");
      expect(reductionKind(withFeature)).toBe("workgroup");
      setReductionKind("subgroup");
      expect(reductionKind(withFeature)).toBe("subgroup");
      expect(() => reductionKind(without)).toThrow(DeviceError);
    } finally {
      setReductionKind(undefined);
    }
  });

  it("every reducing program has a subgroup variant with the same bindings, uniforms and workgroup, and its own key", () => {
    const device = deviceWith(["subgroups"]);
    for (const { program } of reducingCalls()) {
      const variant = programFor(device, program);
      expect(variant, program.key).toBe(program.subgroupVariant);
      expect(program.key.endsWith("_wg"), program.key).toBe(true);
      expect(variant.key).toBe(program.key.replace(/_wg$/, "_sg"));
      for (const field of ["storage", "uniforms", "workgroupSize"] as const)
        expect(variant[field], `${variant.key} ${field}`).toEqual(
          program[field],
        );
      expect([program.subgroups, variant.subgroups]).toEqual([false, true]);
      expect(programSource(variant).startsWith("enable subgroups;")).toBe(true);
      expect(programSource(program)).not.toContain("subgroup");
      expect(programFor(deviceWith([]), program)).toBe(program);
    }
  });

  it("refuses subgroup segments narrower than the workgroup, and workgroups that are not powers of two", () => {
    expect(() => segmentSumWGSL(64, 16, true)).toThrow(/whole workgroups/);
    expect(segmentSumWGSL(64, 16)).toContain("fn segmentSum");
    expect(() => workgroupReduceWGSL(96, true)).toThrow(/power of two/);
  });
});

/**
 * Per row of W values, each invocation's copy of: the sum, the max, then the sum of the squares (three calls in a
 * row, so that the third reuses the slots of the first).
 */
function reduceCall(W: number, rows: number): ProgramCall {
  const make = (subgroups: boolean): Program => ({
    key: `testWorkgroupReduce_${W}${reductionSuffix(subgroups)}`,
    subgroups,
    storage: [
      { name: "out", element: "f32", access: "read_write" },
      { name: "x", element: "f32", access: "read" },
    ],
    uniforms: [{ name: "rows", type: "i32" }],
    stepParams: false,
    workgroupSize: [W, 1, 1],
    flat: false,
    body: `${workgroupReduceWGSL(W, subgroups)}
fn main() {
  let row = workgroupId.x;
  let v = x[row * ${W}u + localIndex];
  let sum = workgroupSum(v);
  let top = workgroupMax(v);
  let squares = workgroupSum(v * v);
  let at = (row * ${W}u + localIndex) * 3u;
  out[at] = sum;
  out[at + 1u] = top;
  out[at + 2u] = squares;
}`,
  });
  return {
    program: withSubgroupVariant(make),
    uniforms: [rows],
    workgroups: [rows, 1, 1],
  };
}

/** x [N, C] with a non-zero mean per row, a weight around 1, a bias, dy. */
function normData(N: number, C: number) {
  return {
    x: seededValues(N * C, 21).map(
      (v, i) => 2 * v + 0.3 * (Math.floor(i / C) % 5),
    ),
    weight: seededValues(C, 22).map((v) => 1 + 0.5 * v),
    bias: seededValues(C, 23),
    dy: seededValues(N * C, 24),
  };
}

// One row of 3 (a row of 1 makes RMSNorm's dx a difference of nearly equal terms, whatever the reduction).
const NORM_SHAPES: [number, number][] = [
  [1, 3],
  [3, 63],
  [5, 65],
  [2, 4099],
];

/** Cross-entropy cases: rows, chunk widths, softcap. Targets fall in every chunk, and some rows are ignored. */
const CE_CASES: { n: number; widths: number[]; softcap?: number }[] = [
  { n: 1, widths: [5000, 3] },
  { n: 300, widths: [1, 7, 257], softcap: 5 },
];

/** Tensor sizes of AdamW's flat buffers: one element; odd sizes; more than MAX workgroups × 256 vec4s. */
const ADAMW_CASES: number[][] = [[1], [300, 1030, 7], [300_001, 7]];

for (const kind of KINDS) {
  describe(`${kind} reductions`, () => {
    beforeAll(() => setReductionKind(kind));
    afterAll(() => setReductionKind(undefined));

    for (const W of [4, 64, 256, 1024]) {
      it(`sum, max and sum of squares over workgroups of ${W}, every invocation getting them`, async (ctx) => {
        const rows = 3;
        const call = reduceCall(W, rows);
        await needKind(ctx, kind, [call]);
        const x = seededValues(rows * W, W).map((v, i) => v + (i % 7) * 0.1);
        const pc = new ProgramCase();
        const out = pc.output("out", rows * W * 3);
        pc.dispatch("reduce", call, [out, pc.input("x", x)]);
        const [got] = await pc.run();
        const references: [string, (r: Float32Array) => number][] = [
          ["sum", (r) => r.reduce((s, v) => s + v, 0)],
          ["max", (r) => Math.max(...r)],
          ["sum of squares", (r) => r.reduce((s, v) => s + v * v, 0)],
        ];
        references.forEach(([what, reference], c) => {
          const want = Array.from({ length: rows }, (_, r) =>
            reference(x.subarray(r * W, (r + 1) * W)),
          );
          expectClose(
            Array.from({ length: rows }, (_, r) => got![r * W * 3 + c]!),
            want,
            RTOL,
            `W ${W} ${what}`,
          );
          // Every invocation holds exactly invocation 0's result.
          for (let r = 0; r < rows; r++)
            for (let i = 1; i < W; i++)
              if (got![(r * W + i) * 3 + c] !== got![r * W * 3 + c])
                expect.fail(`W ${W} ${what}: invocation ${i} of row ${r}`);
        });
      });
    }

    for (const [N, C] of NORM_SHAPES) {
      it(`LayerNorm and RMSNorm forward and backward [${N}, ${C}] match the references`, async (ctx) => {
        const calls = {
          ln: layerNormForward(N, C, EPS),
          lnBack: layerNormBackward(N, C, false),
          rms: rmsNormForward(N, C, EPS),
          rmsBack: rmsNormBackward(N, C, false),
        };
        await needKind(ctx, kind, Object.values(calls));
        const shape = { N, C, eps: EPS };
        const d = normData(N, C);
        const ln = layerNormForwardReference(d.x, d.weight, d.bias, shape);
        const rms = rmsNormForwardReference(d.x, d.weight, shape);
        const pc = new ProgramCase();
        const [x, dy, w] = [d.x, d.dy, d.weight].map((v, i) =>
          pc.input(`in ${i}`, v),
        );
        const outs = {
          y: pc.output("ln y", N * C),
          mean: pc.output("ln mean", N),
          rstd: pc.output("ln rstd", N),
          dx: pc.output("ln dx", N * C),
          rmsY: pc.output("rms y", N * C),
          rmsRstd: pc.output("rms rstd", N),
          rmsDx: pc.output("rms dx", N * C),
        };
        pc.dispatch("ln", calls.ln, [
          outs.y,
          outs.mean,
          outs.rstd,
          x!,
          w!,
          pc.input("bias", d.bias),
        ]);
        pc.dispatch("ln dx", calls.lnBack, [
          outs.dx,
          dy!,
          x!,
          pc.input("mean", f32(ln.mean)),
          pc.input("rstd", f32(ln.rstd)),
          w!,
        ]);
        pc.dispatch("rms", calls.rms, [outs.rmsY, outs.rmsRstd, x!, w!]);
        pc.dispatch("rms dx", calls.rmsBack, [
          outs.rmsDx,
          dy!,
          x!,
          pc.input("rms rstd", f32(rms.rstd)),
          w!,
        ]);
        const [y, mean, rstd, dx, rmsY, rmsRstd, rmsDx] = await pc.run();
        expectClose(y!, ln.y, RTOL, "LayerNorm y");
        expectClose(mean!, ln.mean, RTOL, "LayerNorm mean");
        expectClose(rstd!, ln.rstd, RTOL, "LayerNorm rstd");
        expectClose(
          dx!,
          layerNormBackwardReference(d.dy, d.x, d.weight, shape),
          RTOL,
          "LayerNorm dx",
        );
        expectClose(rmsY!, rms.y, RTOL, "RMSNorm y");
        expectClose(rmsRstd!, rms.rstd, RTOL, "RMSNorm rstd");
        expectClose(
          rmsDx!,
          rmsNormBackwardReference(d.dy, d.x, d.weight, shape),
          RTOL,
          "RMSNorm dx",
        );
      });
    }

    it("the tfjs norm kernels match the references, and the compiled step's forward to the bit", async (ctx) => {
      const [N, C] = [5, 4099];
      const calls = [layerNormForward(N, C, EPS), rmsNormForward(N, C, EPS)];
      await needKind(ctx, kind, calls);
      const d = normData(N, C);
      const pc = new ProgramCase();
      const x = pc.input("x", d.x);
      const w = pc.input("weight", d.weight);
      const engineY = [pc.output("ln y", N * C), pc.output("rms y", N * C)];
      const stats = [N, N, N].map((n, i) => pc.output(`stats ${i}`, n));
      pc.dispatch("ln", calls[0]!, [
        engineY[0]!,
        stats[0]!,
        stats[1]!,
        x,
        w,
        pc.input("bias", d.bias),
      ]);
      pc.dispatch("rms", calls[1]!, [engineY[1]!, stats[2]!, x, w]);
      const [engineLn, engineRms] = await pc.run();
      const [tfjsLn, tfjsRms] = await Promise.all(
        tf
          .tidy(() => {
            const xt = tf.tensor2d(d.x, [N, C]);
            const wt = tf.tensor1d(d.weight);
            return [
              layerNorm(xt, wt, tf.tensor1d(d.bias), EPS),
              rmsNorm(xt, wt, EPS),
            ];
          })
          .map(async (t) => {
            const values = (await t.data()) as Float32Array;
            t.dispose();
            return values;
          }),
      );
      const shape = { N, C, eps: EPS };
      expectClose(
        tfjsLn!,
        layerNormForwardReference(d.x, d.weight, d.bias, shape).y,
        RTOL,
        "tfjs LayerNorm",
      );
      expectClose(
        tfjsRms!,
        rmsNormForwardReference(d.x, d.weight, shape).y,
        RTOL,
        "tfjs RMSNorm",
      );
      expect(tfjsLn).toEqual(engineLn);
      expect(tfjsRms).toEqual(engineRms);
    });

    for (const { n, widths, softcap } of CE_CASES) {
      it(`cross-entropy stats, lse, loss and dz of ${n} rows over chunks [${widths}], softcap ${softcap ?? "none"}`, async (ctx) => {
        const K = widths.length;
        const V = widths.reduce((a, b) => a + b, 0);
        const starts = widths.map((_, k) =>
          widths.slice(0, k).reduce((a, b) => a + b, 0),
        );
        const shapes = widths.map((Vc, k) => ({ n, Vc, v0: starts[k]! }));
        const calls = {
          stats: shapes.map((shape, k) => chunkStatsCall(shape, k, softcap)),
          combine: combineCall(n, K, true),
          grads: shapes.map((shape) => chunkGradCall(shape, softcap)),
        };
        await needKind(ctx, kind, [...calls.stats, calls.combine]);
        const targets = Int32Array.from({ length: n }, (_, r) =>
          r % 7 === 6 ? -100 : (r * 131 + 3 + (r % 3)) % V,
        );
        const valid = targets.filter((t) => t !== -100).length;
        const lossScale = 1 / valid;
        const z = widths.map((Vc, k) =>
          seededValues(n * Vc, 60 + k).map((v) => 12 * v),
        );
        const pc = new ProgramCase();
        const t = pc.input("targets", targets);
        const stats = pc.output("stats", K * n * STATS_WIDTH);
        const lse = pc.output("lse", n);
        const loss = pc.output("loss", 1);
        const dz = z.map((zk, k) => pc.output(`z${k}`, zk.length, zk));
        calls.stats.forEach((call, k) =>
          pc.dispatch(`stats ${k}`, call, [stats, dz[k]!, t]),
        );
        pc.dispatch("combine", calls.combine, [lse, loss, stats, t]);
        calls.grads.forEach((call, k) =>
          pc.dispatch(`grad ${k}`, call, [dz[k]!, lse, t]),
        );
        const [gotStats, gotLse, gotLoss, ...gotDz] = await pc.run({
          dropoutSeed: 0,
          accumulate: false,
          lossScale,
          maxGradNorm: 0,
          adam: [],
        });
        const wantStats = z.map((zk, k) =>
          chunkStatsReference(zk, targets, starts[k]!, softcap),
        );
        const combined = combineReference(wantStats, targets, lossScale, 0);
        wantStats.forEach((s, k) => {
          const part = gotStats!.subarray(
            k * n * STATS_WIDTH,
            (k + 1) * n * STATS_WIDTH,
          );
          ["max", "sum", "target logit", "found"].forEach((name, c) =>
            expectNear(
              part.filter((_, i) => i % STATS_WIDTH === c),
              s.filter((_, i) => i % STATS_WIDTH === c),
              RTOL,
              `chunk ${k} ${name}`,
            ),
          );
        });
        expectNear(gotLse!, combined.lse, RTOL, "lse");
        expectNear(gotLoss!, [combined.loss], RTOL, "loss");
        gotDz.forEach((d, k) =>
          expectNear(
            d,
            chunkGradReference(
              z[k]!,
              targets,
              combined.lse,
              starts[k]!,
              softcap,
              lossScale,
            ),
            RTOL,
            `dz ${k}`,
          ),
        );
      });
    }

    for (const sizes of ADAMW_CASES) {
      it(`the gradient norm and a clipped AdamW step over tensors of [${sizes}] elements`, async (ctx) => {
        const { offsets, P, groupOf } = flatLayout(
          sizes,
          sizes.map(() => 0),
        );
        const W = gradNormWorkgroups(P);
        const [beta1, beta2, eps] = [0.9, 0.999, 1e-8];
        const calls = {
          norm: gradNormPartialsCall(P),
          step: adamwStepCall(P, W, { beta1, beta2, eps }),
        };
        await needKind(ctx, kind, [calls.norm, calls.step]);
        if (sizes.length > 2) expect(W).toBe(2);
        if (sizes[0]! > 1000) expect(W).toBe(MAX_ADAMW_WORKGROUPS);
        // The tensors in their regions of the flat buffers, zeros between them.
        const flat = (seed: number, f: (v: number) => number) => {
          const out = new Float32Array(P);
          sizes.forEach((size, i) =>
            out.set(seededValues(size, seed + i).map(f), offsets[i]!),
          );
          return out;
        };
        const p = flat(70, (v) => v);
        const g = flat(80, (v) => 0.5 * v);
        const m = flat(90, (v) => 0.1 * v);
        const v = flat(100, (x) => 0.01 * x * x);
        const norm = Math.sqrt(g.reduce((s, x) => s + x * x, 0));
        const maxGradNorm = 0.5 * norm;
        const coef = Math.min(maxGradNorm / (norm + 1e-6), 1);
        const adam = {
          stepSize: 0.01 / (1 - beta1),
          bias2Sqrt: Math.sqrt(1 - beta2),
          decay: 0.999,
        };
        const pc = new ProgramCase();
        const outs = [p, m, v].map((init, i) =>
          pc.output(`state ${i}`, P, init),
        );
        const gotNorm = pc.output("norm", 1);
        const partials = pc.g.activation("partials", [W]);
        const grads = pc.input("grads", g);
        pc.dispatch("norm", calls.norm, [partials, grads]);
        pc.dispatch("adamw", calls.step, [
          ...outs,
          gotNorm,
          grads,
          pc.g.constant("groupOf", [groupOf.length], groupOf),
          partials,
        ]);
        const [gotP, gotM, gotV, normOut] = await pc.run({
          dropoutSeed: 0,
          accumulate: false,
          lossScale: 1,
          maxGradNorm,
          adam: [adam],
        });
        expectClose(normOut!, [norm], RTOL, "norm");
        // torch's clip_grad_norm_ then AdamW, in float64.
        const want = [
          new Float64Array(P),
          new Float64Array(P),
          new Float64Array(P),
        ];
        for (let i = 0; i < P; i++) {
          const gi = g[i]! * coef;
          const mi = beta1 * m[i]! + (1 - beta1) * gi;
          const vi = beta2 * v[i]! + (1 - beta2) * gi * gi;
          const denom = Math.sqrt(vi) / adam.bias2Sqrt + eps;
          want[0]![i] = p[i]! * adam.decay - (adam.stepSize * mi) / denom;
          want[1]![i] = mi;
          want[2]![i] = vi;
        }
        ["params", "m", "v"].forEach((role, r) =>
          expectClose([gotP, gotM, gotV][r]!, want[r]!, RTOL, role),
        );
      });
    }
  });
}
