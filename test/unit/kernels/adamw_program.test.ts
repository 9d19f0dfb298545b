/**
 * The multi-tensor AdamW programs of the compiled step (kernels/adamw/program.ts) on the real device, run by the
 * engine over flat buffers, against float64 loops of torch's clip_grad_norm_ followed by torch's AdamW over a
 * list of tensors in two parameter groups (different lrScale and weight decay): three tensors of odd sizes, and a
 * second case whose buffers are long enough (> 256 workgroups × 256 invocations × 4) that both grid-stride loops
 * go round. Five steps, with clipping active (maxGradNorm below the norm), inactive (above it) and off (0).
 * One step is also compared with the tfjs path (train/clip.ts clipGradNorm + train/optimizer.ts AdamW).
 * Tolerance: params, m, v and the reported norm within 1e-5 relative (see expectClose), f32 against float64 over
 * five steps; the padding between tensors stays exactly zero. A non-finite norm skips the step (exact equality).
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { disposeRuntime, gpuDevice, ShapeError } from "@webtune/core";
import { Engine } from "../../../packages/core/src/engine/engine.js";
import {
  graphLimits,
  StepGraph,
} from "../../../packages/core/src/engine/graph.js";
import {
  ADAMW_WORKGROUP,
  adamwStepCall,
  flatLayout,
  gradNormPartialsCall,
  gradNormWorkgroups,
  MAX_ADAMW_WORKGROUPS,
  type FlatLayout,
} from "../../../packages/core/src/kernels/adamw/program.js";
import type { StepParams } from "../../../packages/core/src/kernels/step_params.js";
import { clipGradNorm } from "../../../packages/core/src/train/clip.js";
import { AdamW } from "../../../packages/core/src/train/optimizer.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { expectClose, seededValues } from "../../helpers/tensors.js";

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

const RTOL = 1e-5;
const [BETA1, BETA2, EPS] = [0.9, 0.999, 1e-8];
const GROUPS = [
  { lrScale: 1, weightDecay: 0.1 },
  { lrScale: 4, weightDecay: 0 },
];
const lrAt = (t: number) => 0.01 / t;
/** maxGradNorm of step t as a fraction of that step's norm: clip, off, inactive, clip, off. */
const CLIP_RATIO = [0.1, 0, 3, 0.5, 0];
const STEPS = CLIP_RATIO.length;

/** Each group's (stepSize, bias2Sqrt, decay) at step t (1-based), in float64, as train/optimizer.ts computes them. */
const adamAt = (t: number): StepParams["adam"] =>
  GROUPS.map(({ lrScale, weightDecay }) => ({
    stepSize: (lrAt(t) * lrScale) / (1 - BETA1 ** t),
    bias2Sqrt: Math.sqrt(1 - BETA2 ** t),
    decay: 1 - lrAt(t) * lrScale * weightDecay,
  }));

interface Case {
  sizes: number[];
  groups: number[];
  gradScale: number[];
}
const SMALL: Case = {
  sizes: [300, 1030, 7],
  groups: [0, 1, 0],
  gradScale: [1, 0.3, 2],
};
const LARGE: Case = {
  sizes: [300_001, 1030, 7],
  groups: [1, 0, 1],
  gradScale: [0.1, 1, 3],
};

const startParams = (c: Case) => c.sizes.map((n, i) => seededValues(n, 50 + i));
const gradsAt = (c: Case, t: number) =>
  c.sizes.map((n, i) =>
    seededValues(n, 100 * t + i).map((x) => x * c.gradScale[i]!),
  );
const normOf = (grads: ArrayLike<number>[]) =>
  Math.sqrt(
    grads.reduce((s, g) => s + Array.from(g).reduce((a, x) => a + x * x, 0), 0),
  );

/** Float64 state of every tensor. */
interface RefState {
  p: Float64Array[];
  m: Float64Array[];
  v: Float64Array[];
}

/**
 * torch's clip_grad_norm_ (coef = min(maxNorm / (total + 1e-6), 1), always multiplied; no clipping when maxNorm is
 * 0) then torch's AdamW, over every tensor with its group's scalars, in float64, in place. Returns the norm and
 * the coefficient.
 */
function clipAdamwReference(
  state: RefState,
  grads: ArrayLike<number>[],
  groups: number[],
  adam: StepParams["adam"],
  maxGradNorm: number,
): { norm: number; coef: number } {
  const norm = normOf(grads);
  const coef = maxGradNorm > 0 ? Math.min(maxGradNorm / (norm + 1e-6), 1) : 1;
  grads.forEach((grad, i) => {
    const { stepSize, bias2Sqrt, decay } = adam[groups[i]!]!;
    const [p, m, v] = [state.p[i]!, state.m[i]!, state.v[i]!];
    for (let j = 0; j < grad.length; j++) {
      const g = grad[j]! * coef;
      p[j] = p[j]! * decay;
      m[j] = BETA1 * m[j]! + (1 - BETA1) * g;
      v[j] = BETA2 * v[j]! + (1 - BETA2) * g * g;
      p[j] = p[j]! - (stepSize * m[j]!) / (Math.sqrt(v[j]!) / bias2Sqrt + EPS);
    }
  });
  return { norm, coef };
}

/** The tensors laid out in one flat [P] array, zeros between them. */
function pack(layout: FlatLayout, tensors: ArrayLike<number>[]): Float32Array {
  const flat = new Float32Array(layout.P);
  tensors.forEach((t, i) => flat.set(t, layout.offsets[i]!));
  return flat;
}

/** Each tensor's region of a flat array, and whether everything between them is zero. */
function unpack(layout: FlatLayout, sizes: number[], flat: Float32Array) {
  const tensors = sizes.map((n, i) =>
    flat.subarray(layout.offsets[i]!, layout.offsets[i]! + n),
  );
  let padding = 0;
  sizes.forEach((n, i) => {
    const end = layout.offsets[i + 1] ?? layout.P;
    for (let j = layout.offsets[i]! + n; j < end; j++)
      padding = Math.max(padding, Math.abs(flat[j]!));
  });
  return { tensors, padding };
}

/** The engine's optimizer step over flat buffers that persist across runs, as the training state would. */
class FlatAdamW {
  readonly layout: FlatLayout;
  readonly engine: Engine;
  private readonly buffers: GPUBuffer[];
  private readonly compiled;
  private readonly gradInput;
  private readonly norm;

  constructor(
    readonly c: Case,
    start: Float32Array[],
  ) {
    const device = gpuDevice();
    this.layout = flatLayout(c.sizes, c.groups);
    const { P, groupOf } = this.layout;
    this.buffers = [pack(this.layout, start), null, null].map((values) => {
      const buffer = device.createBuffer({
        size: P * 4,
        usage:
          GPUBufferUsage.STORAGE |
          GPUBufferUsage.COPY_SRC |
          GPUBufferUsage.COPY_DST,
      });
      device.queue.writeBuffer(buffer, 0, values ?? new Float32Array(P));
      return buffer;
    });
    const g = new StepGraph(graphLimits(device));
    const [p, m, v] = ["params", "m", "v"].map((name, i) =>
      g.external(name, [P], () => this.buffers[i]!),
    );
    this.gradInput = g.input("grads", [P], "f32");
    const table = g.constant("groupOf", [groupOf.length], groupOf);
    const W = gradNormWorkgroups(P);
    const partials = g.activation("partials", [W]);
    this.norm = g.activation("norm", [1]);
    g.dispatch("grad norm", gradNormPartialsCall(P), [
      partials,
      this.gradInput,
    ]);
    g.dispatch(
      "adamw",
      adamwStepCall(P, W, { beta1: BETA1, beta2: BETA2, eps: EPS }),
      [p!, m!, v!, this.norm, this.gradInput, table, partials],
    );
    g.readback(this.norm);
    this.engine = new Engine(device);
    this.compiled = this.engine.compile(g);
  }

  /** One optimizer step; resolves with the norm the GPU reported. */
  async step(
    t: number,
    grads: Float32Array[],
    maxGradNorm: number,
  ): Promise<number> {
    const [norm] = await this.engine.run({
      graphs: [this.compiled],
      inputs: [[this.compiled, this.gradInput, pack(this.layout, grads)]],
      params: {
        dropoutSeed: 0,
        accumulate: false,
        lossScale: 1,
        maxGradNorm,
        adam: adamAt(t),
      },
      readback: [[this.compiled, this.norm]],
    });
    return norm![0]!;
  }

  /** params, m, v as flat arrays (a GPU→CPU read of each). */
  async read(): Promise<Float32Array[]> {
    const device = gpuDevice();
    const bytes = this.layout.P * 4;
    const staging = device.createBuffer({
      size: 3 * bytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const encoder = device.createCommandEncoder();
    this.buffers.forEach((b, i) =>
      encoder.copyBufferToBuffer(b, 0, staging, i * bytes, bytes),
    );
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const all = new Float32Array(staging.getMappedRange().slice(0));
    staging.destroy();
    return [0, 1, 2].map((i) =>
      all.subarray((i * bytes) / 4, ((i + 1) * bytes) / 4),
    );
  }

  dispose(): void {
    this.engine.dispose();
    for (const b of this.buffers) b.destroy();
  }
}

describe("multi-tensor AdamW programs", () => {
  it("lays tensors out in 256-element regions with a group per block, and refuses bad shapes", () => {
    const layout = flatLayout(SMALL.sizes, SMALL.groups);
    expect(layout.offsets).toEqual([0, 512, 1792]);
    expect(layout.P).toBe(2048);
    expect([...layout.groupOf]).toEqual([0, 0, 1, 1, 1, 1, 1, 0]);
    expect(() => flatLayout([10], [4])).toThrow(ShapeError);
    expect(() => gradNormPartialsCall(1000)).toThrow(/multiple of 256/);
    expect(() =>
      adamwStepCall(2048, MAX_ADAMW_WORKGROUPS + 1, {
        beta1: BETA1,
        beta2: BETA2,
        eps: EPS,
      }),
    ).toThrow(ShapeError);
  });

  for (const [name, c] of [
    ["three small tensors", SMALL],
    ["a buffer the grid-stride loops go round", LARGE],
  ] as const) {
    it(`matches float64 clip_grad_norm_ + AdamW over ${STEPS} steps, two groups: ${name}`, async (ctx) => {
      await needGpu(ctx);
      const start = startParams(c);
      const ref: RefState = {
        p: start.map((x) => Float64Array.from(x)),
        m: c.sizes.map((n) => new Float64Array(n)),
        v: c.sizes.map((n) => new Float64Array(n)),
      };
      const gpu = new FlatAdamW(c, start);
      try {
        if (c === LARGE)
          expect(gpu.layout.P).toBeGreaterThan(
            MAX_ADAMW_WORKGROUPS * ADAMW_WORKGROUP * 4,
          );
        const coefs: number[] = [];
        for (let t = 1; t <= STEPS; t++) {
          const grads = gradsAt(c, t);
          const maxGradNorm = CLIP_RATIO[t - 1]! * normOf(grads);
          const norm = await gpu.step(t, grads, maxGradNorm);
          const want = clipAdamwReference(
            ref,
            grads,
            c.groups,
            adamAt(t),
            maxGradNorm,
          );
          coefs.push(want.coef);
          expectClose([norm], [want.norm], RTOL, `step ${t}: norm`);
          const state = await gpu.read();
          (["p", "m", "v"] as const).forEach((role, r) => {
            const { tensors, padding } = unpack(gpu.layout, c.sizes, state[r]!);
            expect(padding, `step ${t}: ${role} padding`).toBe(0);
            tensors.forEach((got, i) =>
              expectClose(
                got,
                ref[role][i]!,
                RTOL,
                `step ${t}: ${role} of tensor ${i}`,
              ),
            );
          });
        }
        // Clipping was active on steps 1 and 4 only.
        expect(coefs.map((k) => k < 1)).toEqual([
          true,
          false,
          false,
          true,
          false,
        ]);
        // The weights moved by much more than the tolerance.
        expect(Math.abs(ref.p[0]![0]! - start[0]![0]!)).toBeGreaterThan(1e-3);
      } finally {
        gpu.dispose();
      }
    });
  }

  it("matches one step of the tfjs path (clipGradNorm, then AdamW with two param groups)", async (ctx) => {
    await needGpu(ctx);
    const c = SMALL;
    const start = startParams(c);
    const grads = gradsAt(c, 1);
    const maxGradNorm = 0.2 * normOf(grads);
    const variables = start.map((x) => tf.variable(tf.tensor1d(x)));
    const opt = new AdamW(
      GROUPS.map((g, k) => ({
        variables: variables.filter((_, i) => c.groups[i] === k),
        ...g,
      })),
      { betas: [BETA1, BETA2], eps: EPS },
    );
    const gradTensors = Object.fromEntries(
      variables.map((v, i) => [v.name, tf.tensor1d(grads[i]!)]),
    );
    const { grads: clipped, totalNorm } = clipGradNorm(
      gradTensors,
      maxGradNorm,
    );
    opt.step(clipped, lrAt(1));
    const gpu = new FlatAdamW(c, start);
    try {
      const norm = await gpu.step(1, grads, maxGradNorm);
      expectClose([norm], await totalNorm.data(), RTOL, "norm");
      const state = await gpu.read();
      const exported = await opt.exportState();
      const tfjs = {
        p: await Promise.all(variables.map((v) => v.data())),
        m: exported.moments.map((x) => x.m),
        v: exported.moments.map((x) => x.v),
      };
      // exportState lists the variables group by group.
      const order = GROUPS.flatMap((_, k) =>
        c.sizes.map((_, i) => i).filter((i) => c.groups[i] === k),
      );
      (["p", "m", "v"] as const).forEach((role, r) => {
        const { tensors } = unpack(gpu.layout, c.sizes, state[r]!);
        tensors.forEach((got, i) => {
          const slot = role === "p" ? i : order.indexOf(i);
          expectClose(got, tfjs[role][slot]!, RTOL, `${role} of tensor ${i}`);
        });
      });
    } finally {
      gpu.dispose();
      opt.dispose();
      tf.dispose([variables, gradTensors, clipped, totalNorm]);
    }
  });

  it("skips a step whose gradient norm is NaN or Inf: params, m and v keep their values, the norm is reported", async (ctx) => {
    await needGpu(ctx);
    const c = SMALL;
    const gpu = new FlatAdamW(c, startParams(c));
    try {
      await gpu.step(1, gradsAt(c, 1), 0);
      const before = (await gpu.read()).map((x) => x.slice());
      const bad: [string, number, number][] = [
        ["NaN", NaN, NaN],
        ["Inf", Infinity, Infinity],
        ["overflowing squares", 3e38, Infinity],
      ];
      for (const [name, value, norm] of bad) {
        const grads = gradsAt(c, 2);
        grads[1]![7] = value;
        for (const maxGradNorm of [0, 1]) {
          expect(await gpu.step(2, grads, maxGradNorm), name).toBe(norm);
          const after = await gpu.read();
          after.forEach((x, r) =>
            expect(x, `${name}: role ${r}`).toEqual(before[r]),
          );
        }
      }
      // A finite step after the skipped ones moves the weights again.
      await gpu.step(2, gradsAt(c, 2), 0);
      expect((await gpu.read())[0]).not.toEqual(before[0]);
    } finally {
      gpu.dispose();
    }
  });
});
