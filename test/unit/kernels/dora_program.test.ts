/**
 * DoRA's programs of the compiled step (kernels/dora/program.ts) on the real device, against their float64
 * references:
 * - A·Aᵀ for R = 1, 4, 16, 64 over IN = 40 and 1000, and R = 257 (a grid wrapped into y);
 * - the norm for OUT = 50 and 576 by R = 1, 4, 16 and 64;
 * - the scaling for N = 37 and 1500 rows by OUT = 50 and 576, with and without a bias (and a residual);
 * - the backward, dm written (a step's first micro-batch) and added to (a later one) inside a range of a larger
 *   gradient buffer whose other values must stay, and a column grid of more than 65535 workgroups;
 * - the assembled layer on a tiny case in both weight layouts: A·Aᵀ, norm, y, dz and dm from the programs against
 *   a float64 DoRA forward written from lora/layer.ts and its central finite differences with the norm detached
 *   (as PEFT), and dA, dB pushed from the programs' dz through LoRA's backward.
 *
 * Tolerance: 1e-5 of each output's largest magnitude (`expectNear`): f32 sums of at most 1500 terms against
 * float64 (worst seen: 4e-7).
 *
 * Letters: N rows, IN and OUT features, R rank.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { disposeRuntime, gpuDevice, ShapeError } from "@webtune/core";
import { Engine } from "../../../packages/core/src/engine/engine.js";
import {
  graphLimits,
  StepGraph,
  type GraphTensor,
} from "../../../packages/core/src/engine/graph.js";
import {
  doraBackward,
  doraGram,
  doraNorm,
  doraScaleForward,
} from "../../../packages/core/src/kernels/dora/program.js";
import {
  doraBackwardReference,
  doraLinearReference,
  doraNormInputsReference,
  doraNormReference,
  doraScaleForwardReference,
  type DoraLayer,
  type DoraShape,
} from "../../../packages/core/src/kernels/dora/reference.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { expectNear, seededValues } from "../../helpers/tensors.js";
import { f32, finiteDifferenceGradient, ProgramCase } from "./program_case.js";

const RTOL = 1e-5;
const IN = 40;

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

const near = (a: ArrayLike<number>, e: ArrayLike<number>, what: string) =>
  expectNear(a, e, RTOL, what);

const scaled = (values: Float32Array, k: number, shift = 0) =>
  values.map((v) => k * v + shift);

/** W [OUT, IN], A, B and m of one layer: s·B·A as large as W, so every term of the norm counts. */
function layerData(OUT: number, R: number): DoraLayer {
  return {
    x: seededValues(IN, 21),
    W: seededValues(OUT * IN, 22),
    layout: "out_in",
    A: seededValues(R * IN, 23),
    B: seededValues(OUT * R, 24),
    magnitude: scaled(seededValues(OUT, 25), 1, 2),
    bias: seededValues(OUT, 26),
    scale: 0.75,
  };
}

/** Each run's feeds, then every read-back tensor's values, from one compiled graph: one run per accumulate flag. */
async function runSteps(
  g: StepGraph,
  feeds: [GraphTensor, Float32Array][],
  reads: GraphTensor[],
  accumulates: boolean[],
): Promise<Float32Array[][]> {
  const engine = new Engine(gpuDevice());
  try {
    const compiled = engine.compile(g);
    const results: Float32Array[][] = [];
    for (const accumulate of accumulates) {
      const values = await engine.run({
        graphs: [compiled],
        inputs: feeds.map(([t, data]) => [compiled, t, data]),
        params: {
          dropoutSeed: 0,
          accumulate,
          lossScale: 1,
          maxGradNorm: 0,
          adam: [],
        },
        readback: reads.map((t) => [compiled, t]),
      });
      results.push(values.map((v) => v.slice()));
    }
    return results;
  } finally {
    engine.dispose();
  }
}

/** A host array fed before every run. */
function feed(
  g: StepGraph,
  feeds: [GraphTensor, Float32Array][],
  name: string,
  data: Float32Array,
): GraphTensor {
  const t = g.input(name, [data.length], "f32");
  feeds.push([t, data]);
  return t;
}

/** doraGram on A [R, IN] against the reference; nothing past AAt's R² entries is written. */
async function checkGram(R: number, width: number) {
  const A = seededValues(R * width, 61);
  const pc = new ProgramCase();
  const AAt = pc.output("AAt", R * R + 1, new Float32Array(R * R + 1));
  pc.dispatch("dora gram", doraGram(R, width), [AAt, pc.input("A", A)]);
  const [got] = await pc.run();
  const shape = { N: 1, IN: width, OUT: 1, R };
  const want = doraNormInputsReference(
    new Float32Array(width),
    "out_in",
    A,
    shape,
  );
  near(got!.subarray(0, R * R), want.AAt, "AAt");
  expect(got![R * R]).toBe(0);
}

/** doraScaleForward on one graph against the reference. */
async function checkForward(
  N: number,
  OUT: number,
  bias: boolean,
  residual: boolean,
) {
  const z = scaled(seededValues(N * OUT, 41), 3);
  const ratio = scaled(seededValues(OUT, 42), 0.5, 1);
  const b = seededValues(OUT, 43);
  const skip = seededValues(N * OUT, 44);
  const pc = new ProgramCase();
  const y = pc.output("y", N * OUT);
  pc.dispatch("dora scale", doraScaleForward(N, OUT, bias, residual), [
    y,
    pc.input("z", z),
    pc.input("ratio", ratio),
    ...(bias ? [pc.input("bias", b)] : []),
    ...(residual ? [pc.input("residual", skip)] : []),
  ]);
  const [got] = await pc.run();
  const want = doraScaleForwardReference(
    z,
    ratio,
    bias ? b : undefined,
    { N, OUT },
    residual ? skip : undefined,
  );
  near(got!, want, "y");
}

/** Elements of the gradient buffer before dm's range, and after it (a multiple of 64: 256-byte binding offsets). */
const PAD = 64;

/**
 * doraBackward on one graph, dm a range of a gradient buffer that holds `prior` before the run (an input, which
 * the host rewrites each run); runs once per accumulate flag and checks dz, dm and the untouched padding.
 */
async function checkBackward(N: number, OUT: number, what: string) {
  const dy = seededValues(N * OUT, 31);
  const z = scaled(seededValues(N * OUT, 32), 3);
  const ratio = scaled(seededValues(OUT, 33), 0.5, 1);
  const norm = scaled(seededValues(OUT, 34), 2, 4);
  const prior = seededValues(OUT + 2 * PAD, 35);
  const g = new StepGraph(graphLimits(gpuDevice()));
  const feeds: [GraphTensor, Float32Array][] = [];
  const grad = feed(g, feeds, "grad", prior);
  const dz = g.activation("dz", [N, OUT]);
  g.dispatch("dora backward", doraBackward(N, OUT), [
    dz,
    grad.range(PAD, OUT),
    feed(g, feeds, "dy", dy),
    feed(g, feeds, "z", z),
    feed(g, feeds, "ratio", ratio),
    feed(g, feeds, "norm", norm),
  ]);
  g.readback(dz);
  const runs = await runSteps(g, feeds, [dz, grad], [false, true, false]);
  const want = doraBackwardReference(dy, z, ratio, norm, { N, OUT });
  runs.forEach(([gotDz, gotGrad], run) => {
    const accumulate = run === 1;
    const tag = `${what}, accumulate ${accumulate}`;
    near(gotDz!, want.dz, `${tag}: dz`);
    const start = prior.subarray(PAD, PAD + OUT);
    near(
      gotGrad!.subarray(PAD, PAD + OUT),
      accumulate ? want.dm.map((v, o) => v + start[o]!) : want.dm,
      `${tag}: dm`,
    );
    expect(gotGrad!.subarray(0, PAD), `${tag}: before dm`).toEqual(
      prior.subarray(0, PAD),
    );
    expect(gotGrad!.subarray(PAD + OUT), `${tag}: after dm`).toEqual(
      prior.subarray(PAD + OUT),
    );
  });
}

describe("DoRA programs", () => {
  for (const OUT of [50, 576])
    for (const R of [1, 4, 16, 64]) {
      it(`doraNorm [OUT ${OUT}, R ${R}] gives the norm and ratio of the reference`, async (ctx) => {
        await needGpu(ctx);
        const layer = layerData(OUT, R);
        const shape: DoraShape = { N: 1, IN, OUT, R };
        const inputs = doraNormInputsReference(
          layer.W,
          layer.layout,
          layer.A,
          shape,
        );
        const [rowNormSq, WAt, AAt] = [
          inputs.rowNormSq,
          inputs.WAt,
          inputs.AAt,
        ].map(f32);
        const pc = new ProgramCase();
        const norm = pc.output("norm", OUT);
        const ratio = pc.output("ratio", OUT);
        pc.dispatch("dora norm", doraNorm(OUT, R, layer.scale), [
          norm,
          ratio,
          pc.input("rowNormSq", rowNormSq!),
          pc.input("B", f32(layer.B)),
          pc.input("WAt", WAt!),
          pc.input("AAt", AAt!),
          pc.input("magnitude", f32(layer.magnitude)),
        ]);
        const [gotNorm, gotRatio] = await pc.run();
        const want = doraNormReference(
          rowNormSq!,
          layer.B,
          WAt!,
          AAt!,
          layer.magnitude,
          shape,
          layer.scale,
        );
        near(gotNorm!, want.norm, "norm");
        near(gotRatio!, want.ratio, "ratio");
        // The adapter moves the norm: a program that dropped a term would fail.
        const frozen = Float64Array.from(inputs.rowNormSq, Math.sqrt);
        expect(
          Math.max(...want.norm.map((v, o) => Math.abs(v - frozen[o]!))),
        ).toBeGreaterThan(0.05 * Math.max(...want.norm));
      });
    }

  for (const R of [1, 4, 16, 64])
    for (const width of [40, 1000])
      it(`doraGram [R ${R}, IN ${width}] gives A·Aᵀ`, async (ctx) => {
        await needGpu(ctx);
        await checkGram(R, width);
      });

  it("doraGram wraps more than 65535 entries into y", async (ctx) => {
    await needGpu(ctx);
    expect(doraGram(257, 3).workgroups).toEqual([65535, 2, 1]);
    await checkGram(257, 3);
  });

  for (const N of [37, 1500])
    for (const OUT of [50, 576])
      for (const bias of [false, true])
        it(`doraScaleForward [${N}, ${OUT}] ${bias ? "with" : "without"} a bias matches the reference`, async (ctx) => {
          await needGpu(ctx);
          await checkForward(N, OUT, bias, false);
        });

  for (const bias of [false, true])
    it(`doraScaleForward adds a residual, ${bias ? "with" : "without"} a bias`, async (ctx) => {
      await needGpu(ctx);
      await checkForward(37, 50, bias, true);
    });

  for (const N of [37, 1500])
    for (const OUT of [50, 576])
      it(`doraBackward [${N}, ${OUT}] gives dz, and dm written then added into its range of the gradient buffer`, async (ctx) => {
        await needGpu(ctx);
        await checkBackward(N, OUT, `[${N}, ${OUT}]`);
      });

  it("doraBackward wraps more than 65535 column blocks into y", async (ctx) => {
    await needGpu(ctx);
    const OUT = 65535 * 32 + 40;
    expect(doraBackward(1, OUT).workgroups).toEqual([65535, 2, 1]);
    await checkBackward(1, OUT, "wrapped");
  });

  it("refuses shapes that are not positive integers, and a scale that is not finite", () => {
    expect(() => doraNorm(0, 4, 1)).toThrow(ShapeError);
    expect(() => doraNorm(8, 4, NaN)).toThrow(/scale must be finite/);
    expect(() => doraScaleForward(3.5, 8, false)).toThrow(/N must be/);
    expect(() => doraBackward(3, -1)).toThrow(/OUT must be/);
    expect(() => doraGram(4, 0)).toThrow(/IN must be/);
  });

  it("one pipeline per choice spliced into the source: the key names the bias and residual, not the shape", () => {
    const keys = [
      doraScaleForward(3, 8, false).program.key,
      doraScaleForward(3, 8, true).program.key,
      doraScaleForward(3, 8, true, true).program.key,
    ];
    expect(new Set(keys).size).toBe(3);
    expect(doraScaleForward(5, 9, true).program.key).toBe(keys[1]);
    expect(doraNorm(5, 2, 0.5).program.key).toBe(doraNorm(9, 7, 2).program.key);
    expect(doraBackward(5, 9).program.stepParams).toBe(true);
  });
});

describe("the assembled DoRA layer", () => {
  const shape: DoraShape = { N: 3, IN: 5, OUT: 4, R: 2 };
  const { N, OUT, R } = shape;

  /** A tiny layer in `layout`, with s·B·A as large as W. */
  function tinyLayer(layout: DoraLayer["layout"]): DoraLayer {
    return {
      x: seededValues(N * shape.IN, 51),
      W: seededValues(OUT * shape.IN, 52),
      layout,
      A: seededValues(R * shape.IN, 53),
      B: seededValues(OUT * R, 54),
      magnitude: scaled(seededValues(OUT, 55), 1, 2),
      bias: seededValues(OUT, 56),
      scale: 0.75,
    };
  }

  for (const layout of ["in_out", "out_in"] as const) {
    it(`the norm's expansion is the norm of the merged rows (${layout})`, () => {
      const layer = tinyLayer(layout);
      const inputs = doraNormInputsReference(layer.W, layout, layer.A, shape);
      const { norm } = doraNormReference(
        inputs.rowNormSq,
        layer.B,
        inputs.WAt,
        inputs.AAt,
        layer.magnitude,
        shape,
        layer.scale,
      );
      expectNear(norm, doraLinearReference(layer, shape).norm, 1e-12, "norm");
    });

    it(`norm, y, dz and dm from the programs match the float64 layer and its finite differences (${layout})`, async (ctx) => {
      await needGpu(ctx);
      const layer = tinyLayer(layout);
      const dy = seededValues(N * OUT, 57);
      const forward = doraLinearReference(layer, shape);
      const inputs = doraNormInputsReference(layer.W, layout, layer.A, shape);
      const g = new StepGraph(graphLimits(gpuDevice()));
      const feeds: [GraphTensor, Float32Array][] = [];
      const z = feed(g, feeds, "z", f32(forward.z));
      const [AAt, norm, ratio, y, dz, dm] = (
        [
          ["AAt", [R, R]],
          ["norm", [OUT]],
          ["ratio", [OUT]],
          ["y", [N, OUT]],
          ["dz", [N, OUT]],
          ["dm", [OUT]],
        ] as const
      ).map(([name, dims]) => g.activation(name, dims));
      g.dispatch("gram", doraGram(R, shape.IN), [
        AAt!,
        feed(g, feeds, "A", f32(layer.A)),
      ]);
      g.dispatch("norm", doraNorm(OUT, R, layer.scale), [
        norm!,
        ratio!,
        feed(g, feeds, "rowNormSq", f32(inputs.rowNormSq)),
        feed(g, feeds, "B", f32(layer.B)),
        feed(g, feeds, "WAt", f32(inputs.WAt)),
        AAt!,
        feed(g, feeds, "magnitude", f32(layer.magnitude)),
      ]);
      g.dispatch("scale", doraScaleForward(N, OUT, true), [
        y!,
        z,
        ratio!,
        feed(g, feeds, "bias", f32(layer.bias!)),
      ]);
      g.dispatch("backward", doraBackward(N, OUT), [
        dz!,
        dm!,
        feed(g, feeds, "dy", dy),
        z,
        ratio!,
        norm!,
      ]);
      const reads = [norm!, y!, dz!, dm!];
      for (const t of reads) g.readback(t);
      const [run] = await runSteps(g, feeds, reads, [false]);
      const [gotNorm, gotY, gotDz, gotDm] = run!;
      near(gotNorm!, forward.norm, "norm");
      near(gotY!, forward.y, "y");

      // Central differences of L = Σ dy·y, the norm held at its value (detached).
      const detached = (change: Partial<DoraLayer>) =>
        doraLinearReference({ ...layer, ...change }, shape, forward.norm).y;
      const ratio64 = Float64Array.from(
        layer.magnitude,
        (m, o) => m / forward.norm[o]!,
      );
      near(
        gotDz!,
        finiteDifferenceGradient(
          (zs) => doraScaleForwardReference(zs, ratio64, layer.bias, shape),
          forward.z,
          dy,
        ),
        "dz",
      );
      near(
        gotDm!,
        finiteDifferenceGradient(
          (m) => detached({ magnitude: m }),
          layer.magnitude,
          dy,
        ),
        "dm",
      );
      // dz is what LoRA's backward takes: dB = s·dzᵀ·(x·Aᵀ), dA = s·(dz·B)ᵀ·x.
      const { dA, dB } = loraGradients(layer, gotDz!);
      const fdA = finiteDifferenceGradient((A) => detached({ A }), layer.A, dy);
      near(dA, fdA, "dA");
      near(
        dB,
        finiteDifferenceGradient((B) => detached({ B }), layer.B, dy),
        "dB",
      );
      // Not detaching the norm changes dA well beyond the tolerance: the check above can tell them apart.
      const attached = finiteDifferenceGradient(
        (A) => doraLinearReference({ ...layer, A }, shape).y,
        layer.A,
        dy,
      );
      const gap = Math.max(...fdA.map((v, i) => Math.abs(v - attached[i]!)));
      expect(gap).toBeGreaterThan(100 * RTOL * Math.max(...fdA.map(Math.abs)));
    });
  }

  /** dA [R, IN] = s·(dz·B)ᵀ·x and dB [OUT, R] = s·dzᵀ·(x·Aᵀ), from dz: what LoRA's backward does with it. */
  function loraGradients(layer: DoraLayer, dz: ArrayLike<number>) {
    const { IN } = shape;
    const { x, A, B, scale } = layer;
    const h = new Float64Array(N * R); // x·Aᵀ
    const gr = new Float64Array(N * R); // dz·B
    for (let n = 0; n < N; n++)
      for (let r = 0; r < R; r++) {
        let [hv, gv] = [0, 0];
        for (let i = 0; i < IN; i++) hv += x[n * IN + i]! * A[r * IN + i]!;
        for (let o = 0; o < OUT; o++) gv += dz[n * OUT + o]! * B[o * R + r]!;
        [h[n * R + r], gr[n * R + r]] = [hv, gv];
      }
    const dA = new Float64Array(R * IN);
    for (let r = 0; r < R; r++)
      for (let i = 0; i < IN; i++) {
        let sum = 0;
        for (let n = 0; n < N; n++) sum += gr[n * R + r]! * x[n * IN + i]!;
        dA[r * IN + i] = scale * sum;
      }
    const dB = new Float64Array(OUT * R);
    for (let o = 0; o < OUT; o++)
      for (let r = 0; r < R; r++) {
        let sum = 0;
        for (let n = 0; n < N; n++) sum += dz[n * OUT + o]! * h[n * R + r]!;
        dB[o * R + r] = scale * sum;
      }
    return { dA, dB };
  }
});
