/**
 * The fused AdamW kernel on WebGPU (Dawn; Mesa lavapipe on CI) against its CPU reference, alone and inside the
 * AdamW optimizer (two param groups) against the same optimizer on tfjs's CPU backend.
 * Tolerance: p', m' and v' within 1e-6 relative (see expectClose) after every step. The reference rounds every
 * operation to float32; the GPU may fuse a multiply-add or round ÷ and √ less tightly (WGSL allows 2.5 ulp), a
 * few ulp per step, and the state feeds back, so errors compound a little over the steps.
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { disposeRuntime } from "@webtune/core";
import { adamwUpdate } from "../../../packages/core/src/kernels/adamw/op.js";
import {
  adamwReference,
  type AdamWTensors,
} from "../../../packages/core/src/kernels/adamw/reference.js";
import type { AdamWScalars } from "../../../packages/core/src/kernels/adamw/attrs.js";
import {
  AdamW,
  type AdamWState,
  type ParamGroup,
} from "../../../packages/core/src/train/optimizer.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { expectClose, seededValues } from "../../helpers/tensors.js";

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

const RTOL = 1e-6; // p', m' and v' alike
const STEPS = 5;

// Misses every multiple of 4 and of the workgroup (256); the last runs the grid-stride loop (> 1024 × 256).
const shapes: number[][] = [[1], [7], [1025], [33, 31], [2, 150001]];
// Gradient scales: at 1e-5 the eps (1e-6) changes the update by ~10%; at 10, √v dominates.
const gradScale = [1, 1e-5, 0.3, 10, 1];

const gradValues = (i: number, step: number) =>
  seededValues(tf.util.sizeFromShape(shapes[i]!), 100 * step + i).map(
    (x) => x * gradScale[i]!,
  );
const startValues = (i: number) =>
  seededValues(tf.util.sizeFromShape(shapes[i]!), 50 + i);

/** The scalars the optimizer computes for step t (1-based) of a group, as documented in optimizer.ts. */
function scalarsAt(
  t: number,
  lr: number,
  weightDecay: number,
  [beta1, beta2] = [0.9, 0.999],
  eps = 1e-6,
): AdamWScalars {
  return {
    beta1,
    beta2,
    eps,
    stepSize: lr / (1 - beta1 ** t),
    bias2Sqrt: Math.sqrt(1 - beta2 ** t),
    decay: 1 - lr * weightDecay,
  };
}

function expectState(got: AdamWTensors, want: AdamWTensors, what: string) {
  expectClose(got.param, want.param, RTOL, `${what}: p`);
  expectClose(got.expAvg, want.expAvg, RTOL, `${what}: m`);
  expectClose(got.expAvgSq, want.expAvgSq, RTOL, `${what}: v`);
}

describe("fused AdamW kernel", () => {
  for (const weightDecay of [0, 0.1]) {
    it(`matches the CPU reference over ${STEPS} steps, odd sizes, weight decay ${weightDecay}`, async (ctx) => {
      await needGpu(ctx);
      expect(tf.getBackend()).toBe("webgpu");
      for (let i = 0; i < shapes.length; i++) {
        const shape = shapes[i]!;
        let ref: AdamWTensors = {
          param: startValues(i),
          expAvg: new Float32Array(startValues(i).length),
          expAvgSq: new Float32Array(startValues(i).length),
        };
        let gpu = [
          tf.tensor(ref.param, shape),
          tf.zeros(shape),
          tf.zeros(shape),
        ];
        for (let t = 1; t <= STEPS; t++) {
          const s = scalarsAt(t, 0.01 / t, weightDecay);
          const g = gradValues(i, t);
          const grad = tf.tensor(g, shape);
          const next = adamwUpdate(gpu[0]!, grad, gpu[1]!, gpu[2]!, s);
          tf.dispose([...gpu, grad]);
          gpu = next;
          ref = adamwReference(ref, g, s);
          const [param, expAvg, expAvgSq] = (await Promise.all(
            gpu.map((x) => x.data()),
          )) as Float32Array[];
          expectState(
            { param: param!, expAvg: expAvg!, expAvgSq: expAvgSq! },
            ref,
            `${JSON.stringify(shape)}, step ${t}`,
          );
        }
        // The weights moved by much more than the tolerance, so the comparison means something.
        expect(Math.abs(ref.param[0]! - startValues(i)[0]!)).toBeGreaterThan(
          1e-3,
        );
        tf.dispose(gpu);
      }
    });
  }

  it("runs one GPU dispatch per variable and step, and leaves clones of the old values alone", async (ctx) => {
    await needGpu(ctx);
    const vars = shapes.map((s, i) =>
      tf.variable(tf.tensor(startValues(i), s)),
    );
    const opt = new AdamW(vars);
    const snapshot = vars.map((v) => v.clone()); // as train/best.ts keeps the best weights
    const grads = Object.fromEntries(
      vars.map((v, i) => [v.name, tf.tensor(gradValues(i, 1), v.shape)]),
    );
    await Promise.all(Object.values(grads).map((g) => g.data())); // uploaded before counting
    const dispatch = vi.spyOn(
      GPUComputePassEncoder.prototype,
      "dispatchWorkgroups",
    );
    try {
      opt.step(grads, 1e-2);
      expect(dispatch).toHaveBeenCalledTimes(vars.length);
    } finally {
      dispatch.mockRestore();
    }
    for (let i = 0; i < vars.length; i++) {
      expect(Array.from(await snapshot[i]!.data()), `clone ${i}`).toEqual(
        Array.from(startValues(i)),
      );
      expect((await vars[i]!.data())[0]).not.toBe(startValues(i)[0]);
    }
    opt.dispose();
    tf.dispose([...vars, ...snapshot, ...Object.values(grads)]);
  });

  it("keeps tensors and GPU memory flat across steps", async (ctx) => {
    await needGpu(ctx);
    const vars = shapes.map((s, i) =>
      tf.variable(tf.tensor(startValues(i), s)),
    );
    const opt = new AdamW(vars, { weightDecay: 0.01 });
    const grads = Object.fromEntries(
      vars.map((v, i) => [v.name, tf.tensor(gradValues(i, 1), v.shape)]),
    );
    const usage = async () => {
      await vars[0]!.data(); // submits, so that released buffers are counted as released
      const { numTensors, numDataBuffers } = tf.memory();
      const { numBytesInGPU } = tf.memory() as { numBytesInGPU?: number };
      return { numTensors, numDataBuffers, numBytesInGPU };
    };
    opt.step(grads, 1e-3);
    const after1 = await usage();
    for (let k = 0; k < 20; k++) opt.step(grads, 1e-3);
    expect(await usage()).toEqual(after1);
    opt.dispose();
    tf.dispose([...vars, ...Object.values(grads)]);
  });
});

describe("AdamW optimizer on the fused kernel", () => {
  /** Runs the optimizer with two groups (lrScale 1, no decay; lrScale 4, decay 0.1) and returns its state. */
  async function train(): Promise<{
    params: Float32Array[];
    state: AdamWState;
  }> {
    const vars = shapes.map((s, i) =>
      tf.variable(tf.tensor(startValues(i), s)),
    );
    const groups: ParamGroup[] = [
      { variables: vars.slice(0, 3), weightDecay: 0 },
      { variables: vars.slice(3), lrScale: 4, weightDecay: 0.1 },
    ];
    const opt = new AdamW(groups, { betas: [0.9, 0.95], eps: 1e-6 });
    for (let t = 1; t <= STEPS; t++) {
      const grads = Object.fromEntries(
        vars.map((v, i) => [v.name, tf.tensor(gradValues(i, t), v.shape)]),
      );
      opt.step(grads, 0.01 / t);
      tf.dispose(grads);
    }
    const params = await Promise.all(
      vars.map(async (v) => (await v.data()) as Float32Array),
    );
    const state = await opt.exportState();
    opt.dispose();
    tf.dispose(vars);
    return { params, state };
  }

  it("matches the same optimizer on tfjs's CPU backend (the reference kernel), two param groups", async (ctx) => {
    await needGpu(ctx);
    const gpu = await train();
    await tf.setBackend("cpu");
    let cpu: Awaited<ReturnType<typeof train>>;
    try {
      cpu = await train();
    } finally {
      await tf.setBackend("webgpu");
    }
    expect(gpu.state.step).toBe(STEPS);
    expect(cpu.state.step).toBe(STEPS);
    shapes.forEach((shape, i) => {
      const what = `${JSON.stringify(shape)} (group ${i < 3 ? 0 : 1})`;
      expect(gpu.state.moments[i]!.shape).toEqual(shape);
      expectState(
        {
          param: gpu.params[i]!,
          expAvg: gpu.state.moments[i]!.m,
          expAvgSq: gpu.state.moments[i]!.v,
        },
        {
          param: cpu.params[i]!,
          expAvg: cpu.state.moments[i]!.m,
          expAvgSq: cpu.state.moments[i]!.v,
        },
        what,
      );
    });
  });
});
