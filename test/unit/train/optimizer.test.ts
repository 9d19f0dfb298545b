/**
 * AdamW on WebGPU against a float64 JavaScript transcription of torch.optim.AdamW (two param groups with different
 * lr scales and weight decays), bit-identical resume from exported state, global-norm clipping as torch's
 * clip_grad_norm_, and a flat tensor count over 200 steps.
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ConfigError,
  FormatError,
  ShapeError,
  disposeRuntime,
} from "@webtune/core";
import {
  AdamW,
  loraPlusGroups,
  type AdamWConfig,
} from "../../../packages/core/src/train/optimizer.js";
import {
  clipGradNorm,
  clipGradNormAsync,
} from "../../../packages/core/src/train/clip.js";
import { createSchedule } from "../../../packages/core/src/train/schedule.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { expectClose, seededValues } from "../../helpers/tensors.js";

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

/**
 * torch.optim.AdamW's single-tensor update (torch/optim/adamw.py, `_single_tensor_adamw`), in float64:
 *   param.mul_(1 - lr * weight_decay)
 *   exp_avg.lerp_(grad, 1 - beta1); exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
 *   step_size = lr / (1 - beta1**step); denom = exp_avg_sq.sqrt() / sqrt(1 - beta2**step) + eps
 *   param.addcdiv_(exp_avg, denom, value=-step_size)
 */
function referenceAdamW(
  param: Float64Array,
  m: Float64Array,
  v: Float64Array,
  grad: ArrayLike<number>,
  step: number,
  lr: number,
  weightDecay: number,
  { betas: [b1, b2], eps }: Pick<AdamWConfig, "betas" | "eps">,
): void {
  const stepSize = lr / (1 - b1 ** step);
  const bias2Sqrt = Math.sqrt(1 - b2 ** step);
  for (let i = 0; i < param.length; i++) {
    const g = grad[i]!;
    param[i]! *= 1 - lr * weightDecay;
    m[i] = m[i]! + (g - m[i]!) * (1 - b1);
    v[i] = v[i]! * b2 + g * g * (1 - b2);
    param[i]! -= (stepSize * m[i]!) / (Math.sqrt(v[i]!) / bias2Sqrt + eps);
  }
}

const shapes: [number, number][] = [
  [4, 6], // group 0 ("A"-like)
  [3, 5], // group 0
  [6, 4], // group 1 ("B"-like, LoRA+ ratio)
];
const gradFor = (step: number, i: number) =>
  // Gradients of different scales per variable: at 1e-5 the eps (1e-6) changes the update by ~10%.
  seededValues(shapes[i]![0] * shapes[i]![1], 1000 * step + i).map(
    (x) => x * [1e-5, 1, 10][i]!,
  );
const makeVariables = (values?: Float32Array[]) =>
  shapes.map((shape, i) =>
    tf.variable(
      tf.tensor2d(
        values?.[i] ?? seededValues(shape[0] * shape[1], 50 + i),
        shape,
      ),
    ),
  );
const gradMap = (vars: tf.Variable[], step: number): tf.NamedTensorMap =>
  Object.fromEntries(
    vars.map((v, i) => [v.name, tf.tensor2d(gradFor(step, i), shapes[i]!)]),
  );
const values = async (vars: tf.Variable[]) =>
  Promise.all(vars.map(async (v) => (await v.data()) as Float32Array));

describe("AdamW", () => {
  it("matches torch's AdamW (float64 reference) over 8 steps with two param groups", async (ctx) => {
    await needGpu(ctx);
    const config = {
      betas: [0.9, 0.95] as [number, number],
      eps: 1e-6,
      weightDecay: 0.01,
    };
    const vars = makeVariables();
    const groupOf = [0, 0, 1];
    const groups = [
      { variables: [vars[0]!, vars[1]!] }, // lrScale 1, the optimizer's weight decay 0.01
      { variables: [vars[2]!], lrScale: 4, weightDecay: 0.1 },
    ];
    const opt = new AdamW(groups, config);
    const schedule = createSchedule({
      type: "linear",
      baseLr: 0.02,
      warmupSteps: 2,
      totalSteps: 10,
    });

    const ref = shapes.map((s, i) => ({
      p: Float64Array.from(seededValues(s[0] * s[1], 50 + i)),
      m: new Float64Array(s[0] * s[1]),
      v: new Float64Array(s[0] * s[1]),
    }));
    for (let k = 0; k < 8; k++) {
      const lr = schedule.lrAt(k); // 0 at k = 0: moments still advance, the weights do not move
      const grads = gradMap(vars, k);
      opt.step(grads, lr);
      tf.dispose(grads);
      ref.forEach((r, i) => {
        const g = groupOf[i]!;
        referenceAdamW(
          r.p,
          r.m,
          r.v,
          gradFor(k, i),
          k + 1,
          lr * (g ? 4 : 1),
          g ? 0.1 : 0.01,
          config,
        );
      });
    }
    expect(opt.stepCount).toBe(8);
    const got = await values(vars);
    got.forEach((p, i) => expectClose(p, ref[i]!.p, 1e-5, `param ${i}`));
    // The weights moved by much more than the tolerance, so the comparison means something.
    const start = seededValues(shapes[2]![0] * shapes[2]![1], 52);
    expect(Math.abs(got[2]![0]! - start[0]!)).toBeGreaterThan(1e-2);
    const state = await opt.exportState();
    expectClose(state.moments[2]!.m, ref[2]!.m, 1e-5, "m of param 2");
    expectClose(state.moments[2]!.v, ref[2]!.v, 1e-5, "v of param 2");
    opt.dispose();
    tf.dispose(vars);
  });

  it("resumes bit-identically from exported state", async (ctx) => {
    await needGpu(ctx);
    const lrAt = (k: number) => 0.01 / (1 + k);
    const a = makeVariables();
    const optA = new AdamW([
      { variables: a.slice(0, 2) },
      { variables: a.slice(2), lrScale: 16 },
    ]);
    for (let k = 0; k < 3; k++) {
      const grads = gradMap(a, k);
      optA.step(grads, lrAt(k));
      tf.dispose(grads);
    }
    // A checkpoint: weights and optimizer state as plain arrays. Round-trip the state through copies.
    const saved = await optA.exportState();
    const copy = structuredClone(saved);
    const b = makeVariables(await values(a));
    const optB = new AdamW([
      { variables: b.slice(0, 2) },
      { variables: b.slice(2), lrScale: 16 },
    ]);
    // Fresh variables have new tfjs names: the state is matched by position.
    optB.importState(copy);
    expect(optB.stepCount).toBe(3);
    for (let k = 3; k < 6; k++) {
      for (const [vars, opt] of [
        [a, optA],
        [b, optB],
      ] as const) {
        const grads = gradMap(vars, k);
        opt.step(grads, lrAt(k));
        tf.dispose(grads);
      }
    }
    const [pa, pb] = [await values(a), await values(b)];
    pa.forEach((p, i) =>
      expect(Array.from(pb[i]!), `param ${i}`).toEqual(Array.from(p)),
    );
    const [sa, sb] = [await optA.exportState(), await optB.exportState()];
    expect(sb.step).toBe(6);
    sa.moments.forEach((ma, i) => {
      const mb = sb.moments[i]!;
      expect(mb.name).toBe(b[i]!.name);
      expect(Array.from(mb.m), `m ${i}`).toEqual(Array.from(ma.m));
      expect(Array.from(mb.v), `v ${i}`).toEqual(Array.from(ma.v));
    });
    optA.dispose();
    optB.dispose();
    tf.dispose([...a, ...b]);
  });

  it("rejects state for other variables or shapes with a FormatError, and use after dispose", async (ctx) => {
    await needGpu(ctx);
    const vars = makeVariables();
    const opt = new AdamW(vars);
    const state = await opt.exportState();
    const [first, ...rest] = state.moments;
    expect(() => opt.importState({ step: 1, moments: rest })).toThrow(
      FormatError,
    );
    expect(() => opt.importState({ step: 1, moments: rest })).toThrow(
      /moments for 2 variables, but this optimizer updates 3/,
    );
    expect(() =>
      opt.importState({
        step: 1,
        moments: [{ ...first!, shape: [6, 4] }, ...rest],
      }),
    ).toThrow(/expected shape \[4,6\]/);
    expect(() =>
      opt.importState({ step: 1.5, moments: state.moments }),
    ).toThrow(/1\.5/);
    opt.importState(state);
    opt.dispose();
    expect(() => opt.importState(state)).toThrow(/disposed/);
    tf.dispose(vars);
  });

  it("rejects bad hyperparameters and missing gradients with typed errors naming the value", async (ctx) => {
    await needGpu(ctx);
    expect(() => new AdamW([], { betas: [0.9, 1] })).toThrow(ConfigError);
    expect(() => new AdamW([], { betas: [0.9, 1] })).toThrow(
      /betas\[1\].*got 1/,
    );
    expect(() => new AdamW([], { eps: -1 })).toThrow(/eps.*-1/);
    expect(() => new AdamW([], { weightDecay: NaN })).toThrow(
      /weightDecay.*NaN/,
    );
    const vars = makeVariables();
    expect(() => new AdamW([{ variables: vars, lrScale: -2 }])).toThrow(
      /lrScale.*-2/,
    );
    expect(
      () => new AdamW([{ variables: vars }, { variables: [vars[0]!] }]),
    ).toThrow(/more than one param group/);
    const opt = new AdamW(vars);
    const grads = gradMap(vars, 0);
    expect(() => opt.step(grads, -1e-3)).toThrow(/-0\.001/);
    const { [vars[1]!.name]: dropped, ...partial } = grads;
    expect(() => opt.step(partial, 1e-3)).toThrow(ShapeError);
    expect(() =>
      opt.step({ ...grads, [vars[0]!.name]: dropped! }, 1e-3),
    ).toThrow(/shape \[3,5\]/);
    expect(opt.stepCount).toBe(0);
    // A gradient the kernel refuses (int32) for the last variable: no variable moves, the count stays.
    const last = vars.at(-1)!;
    const before = await Promise.all(vars.map((v) => v.data()));
    const bad = tf.zeros(last.shape, "int32");
    expect(() => opt.step({ ...grads, [last.name]: bad }, 1e-3)).toThrow(
      /grad must be float32/,
    );
    expect(opt.stepCount).toBe(0);
    const after = await Promise.all(vars.map((v) => v.data()));
    after.forEach((values, i) => expect(values).toEqual(before[i]));
    bad.dispose();
    expect(() =>
      loraPlusGroups({ variables: vars, isB: () => false, loraplusLrRatio: 0 }),
    ).toThrow(/loraplus_lr_ratio.*0/);
    opt.dispose();
    tf.dispose([...vars, ...Object.values(grads)]);
  });

  it("LoRA+ groups put B (and 1-D tensors) at lr × ratio", async (ctx) => {
    await needGpu(ctx);
    const [A, B, mag] = [
      tf.variable(tf.zeros([2, 8])),
      tf.variable(tf.zeros([8, 2])),
      tf.variable(tf.ones([8])),
    ];
    const groups = loraPlusGroups({
      variables: [A, B, mag],
      isB: (v) => v === B,
      loraplusLrRatio: 16,
      weightDecay: 0,
    });
    expect(groups).toEqual([
      { variables: [A], lrScale: 1, weightDecay: 0 },
      { variables: [B, mag], lrScale: 16, weightDecay: 0 },
    ]);
    tf.dispose([A, B, mag]);
  });

  it("keeps the tensor count flat over 200 steps with clipping", async (ctx) => {
    await needGpu(ctx);
    const vars = makeVariables();
    const opt = new AdamW(
      loraPlusGroups({
        variables: vars,
        isB: (v) => v === vars[2],
        loraplusLrRatio: 16,
      }),
    );
    const schedule = createSchedule({
      type: "cosine",
      baseLr: 1e-3,
      warmupSteps: 10,
      totalSteps: 200,
    });
    let afterFirst = 0;
    for (let k = 0; k < 200; k++) {
      const grads = gradMap(vars, k % 7);
      const { grads: clipped, totalNorm } = clipGradNorm(grads, 1.0);
      opt.step(clipped, schedule.lrAt(k));
      if (k % 50 === 0) await totalNorm.data(); // as a trainer logs now and then
      tf.dispose([grads, clipped, totalNorm]);
      if (k === 0) afterFirst = tf.memory().numTensors;
    }
    expect(tf.memory().numTensors).toBe(afterFirst);
    const before = tf.memory().numTensors;
    opt.dispose();
    expect(tf.memory().numTensors).toBe(before - 2 * vars.length);
    tf.dispose(vars);
  });
});

describe("clipGradNorm", () => {
  // g1 = [3, 4] (norm 5), g2 = [[12]] (norm 12): total = √(25 + 144) = 13.
  const make = () => ({ g1: tf.tensor1d([3, 4]), g2: tf.tensor2d([[12]]) });

  it("scales by max_norm / (total + 1e-6) and returns the pre-clip norm", async (ctx) => {
    await needGpu(ctx);
    const grads = make();
    const { grads: clipped, totalNorm } = clipGradNorm(grads, 1);
    expect((await totalNorm.data())[0]).toBeCloseTo(13, 5);
    const coef = 1 / (13 + 1e-6);
    expectClose(await clipped["g1"]!.data(), [3 * coef, 4 * coef], 1e-6, "g1");
    expectClose(await clipped["g2"]!.data(), [12 * coef], 1e-6, "g2");
    expect(clipped["g2"]!.shape).toEqual([1, 1]);
    // The inputs are untouched.
    expect(Array.from(await grads.g1.data())).toEqual([3, 4]);
    tf.dispose([grads, clipped, totalNorm]);
  });

  it("leaves gradients unchanged below max_norm, and the async form reads the norm", async (ctx) => {
    await needGpu(ctx);
    const grads = make();
    const before = tf.memory().numTensors;
    const { grads: clipped, totalNorm } = await clipGradNormAsync(grads, 20);
    expect(tf.memory().numTensors).toBe(before + 2); // only the two clipped gradients remain
    expect(totalNorm).toBeCloseTo(13, 5);
    expect(Array.from(await clipped["g1"]!.data())).toEqual([3, 4]);
    expect(Array.from(await clipped["g2"]!.data())).toEqual([12]);
    tf.dispose([grads, clipped]);
    const empty = clipGradNorm({}, 1);
    expect((await empty.totalNorm.data())[0]).toBe(0);
    empty.totalNorm.dispose();
    expect(() => clipGradNorm(make(), 0)).toThrow(/max_grad_norm.*got 0/);
  });
});
