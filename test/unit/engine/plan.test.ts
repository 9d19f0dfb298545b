/**
 * The engine's buffer plan and its steady state, on a real model's step graph:
 * - no two activations alive at the same time overlap in an arena (checked on the plan, with and without
 *   gradient checkpointing, which reuses the same bytes more);
 * - no dispatch reads an activation before a dispatch of the same run wrote it: the arenas are filled with NaN
 *   canaries before a run, and the loss and every gradient are bit-identical to those of a clean run;
 * - a steady optimizer step creates no buffer, bind group or pipeline, and costs at most 3 writeBuffers and one
 *   submit (counted at the WebGPU API);
 * - bad batches are refused with the position named, before anything runs or changes.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  disposeRuntime,
  gpuDevice,
  LoraModel,
  PretrainedModel,
  ShapeError,
} from "@webtune/core";
import { StepBuilder } from "../../../packages/core/src/engine/builder.js";
import {
  graphLimits,
  StepGraph,
} from "../../../packages/core/src/engine/graph.js";
import {
  lifetimes,
  planBuffers,
} from "../../../packages/core/src/engine/plan.js";
import type { TrainingSession } from "../../../packages/core/src/engine/session.js";
import { TrainState } from "../../../packages/core/src/engine/state.js";
import { resolveConfig } from "../../../packages/core/src/models/registry.js";
import { recordStep } from "../../../packages/core/src/models/step.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { compileLora } from "../../helpers/session.js";
import { randomWeightSource } from "../../helpers/random_weights.js";
import { TINY_CONFIGS } from "../models/tiny_configs.js";

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

async function loraModel(type: string): Promise<LoraModel> {
  const raw = TINY_CONFIGS[type]!;
  const lm = await resolveConfig(raw, `${type}/config.json`).load(
    randomWeightSource(raw, `${type} (random)`),
    1 << 30,
  );
  const peft = new LoraModel(
    new PretrainedModel(lm, undefined, raw, {}, `${type} (random)`),
  );
  peft.addAdapter(
    "default",
    {
      r: 4,
      targetModules: "all-linear",
      loraDropout: 0.1,
      initLoraWeights: false,
    },
    { seed: 1 },
  );
  return peft;
}

const compile = (peft: LoraModel, batchSize = 2): TrainingSession =>
  compileLora(peft, { batchSize });

const batch = {
  inputIds: [
    [5, 9, 2, 7, 1, 3, 8, 4, 6, 11, 12, 13],
    [3, 3, 1, 0, 9, 5, 0, 0, 0, 0, 0, 0],
  ],
  labels: [
    [5, 9, 2, 7, 1, 3, 8, 4, 6, 11, 12, 13],
    [3, 3, 1, 0, 9, 5, -100, -100, -100, -100, -100, -100],
  ],
};

describe("buffer plan", () => {
  it("places no two live activations on the same bytes, and checkpointing shrinks the plan (gemma3_text)", async (ctx) => {
    await needGpu(ctx);
    const peft = await loraModel("gemma3_text");
    const state = new TrainState(
      gpuDevice(),
      peft.trainableVariables().map((variable) => ({ variable, group: 0 })),
    );
    try {
      const arenaBytes = (checkpointing: boolean) => {
        const g = new StepGraph(graphLimits(gpuDevice()));
        const s = new StepBuilder(g, true, "train", state);
        recordStep(s, peft.base.lm.stepArchitecture()!, 2, 16, {
          checkpointing,
        });
        const plan = planBuffers(g, { maxArenaBytes: 1 << 20, alignment: 256 });
        const spans = lifetimes(g);
        expect(spans.length).toBeGreaterThan(100);
        expect(plan.place.size).toBe(spans.length);
        let pairs = 0;
        for (let i = 0; i < spans.length; i++) {
          const a = spans[i]!;
          const pa = plan.place.get(a.tensor)!;
          expect(pa.offset % 256).toBe(0);
          expect(pa.offset + a.tensor.bytes).toBeLessThanOrEqual(
            plan.arenas[pa.arena]!,
          );
          for (let j = i + 1; j < spans.length; j++) {
            const b = spans[j]!;
            const pb = plan.place.get(b.tensor)!;
            const live = a.first <= b.last && b.first <= a.last;
            if (!live || pa.arena !== pb.arena) continue;
            pairs++;
            const apart =
              pa.offset + a.tensor.bytes <= pb.offset ||
              pb.offset + b.tensor.bytes <= pa.offset;
            expect(apart, `${a.tensor.name} and ${b.tensor.name}`).toBe(true);
          }
        }
        expect(pairs).toBeGreaterThan(100);
        const total = spans.reduce((n, sp) => n + sp.tensor.bytes, 0);
        const arenas = plan.arenas.reduce((n, b) => n + b, 0);
        // Bytes are reused: the arenas hold less than every activation side by side.
        expect(arenas).toBeLessThan(total);
        return arenas;
      };
      expect(arenaBytes(true)).toBeLessThan(arenaBytes(false));
    } finally {
      state.dispose();
      peft.dispose();
    }
  });

  it("reads no activation before writing it: NaN canaries in the arenas change nothing", async (ctx) => {
    await needGpu(ctx);
    const peft = await loraModel("llama");
    const session = compile(peft);
    try {
      const scalars = { lossScale: 1 / 15, dropoutSeed: 4 };
      const clean = await session.lossAndGradients(batch, scalars);
      for (const arena of session.engine.arenas.buffers) {
        const nan = new Uint32Array(arena.size / 4).fill(0x7fc00000);
        gpuDevice().queue.writeBuffer(arena, 0, nan);
      }
      const canaried = await session.lossAndGradients(batch, scalars);
      expect(canaried.loss).toBe(clean.loss);
      canaried.gradients.forEach((g, i) =>
        expect(Array.from(g)).toEqual(Array.from(clean.gradients[i]!)),
      );
    } finally {
      session.dispose();
      peft.dispose();
    }
  });
});

describe("steady state", () => {
  it("creates no buffer, bind group or pipeline per step, with at most 3 writeBuffers and one submit", async (ctx) => {
    await needGpu(ctx);
    const peft = await loraModel("gpt2");
    const session = compile(peft);
    const counts = new Map<string, number>();
    const restore: (() => void)[] = [];
    const count = (proto: object, name: string) => {
      const p = proto as Record<string, (...a: unknown[]) => unknown>;
      const original = p[name]!;
      p[name] = function (this: unknown, ...args: unknown[]) {
        counts.set(name, (counts.get(name) ?? 0) + 1);
        return original.apply(this, args);
      };
      restore.push(() => (p[name] = original));
    };
    try {
      const step = () =>
        session.step([batch], {
          lr: 1e-3,
          lossScales: [1 / 15],
          dropoutSeeds: [7],
        });
      await step();
      await step();
      count(GPUDevice.prototype, "createBuffer");
      count(GPUDevice.prototype, "createBindGroup");
      count(GPUDevice.prototype, "createComputePipeline");
      count(GPUQueue.prototype, "writeBuffer");
      count(GPUQueue.prototype, "submit");
      count(GPUComputePassEncoder.prototype, "dispatchWorkgroups");
      const pending = step();
      for (const f of restore) f();
      restore.length = 0;
      const { loss, gradNorm } = await pending;
      expect(Number.isFinite(loss) && Number.isFinite(gradNorm)).toBe(true);
      expect(counts.get("createBuffer") ?? 0).toBe(0);
      expect(counts.get("createBindGroup") ?? 0).toBe(0);
      expect(counts.get("createComputePipeline") ?? 0).toBe(0);
      expect(counts.get("writeBuffer")).toBeLessThanOrEqual(3);
      expect(counts.get("submit")).toBe(1);
      expect(counts.get("dispatchWorkgroups")).toBeGreaterThan(20);
    } finally {
      for (const f of restore) f();
      session.dispose();
      peft.dispose();
    }
  });
});

describe("bad batches", () => {
  it("are refused with the position named, before any step runs", async (ctx) => {
    await needGpu(ctx);
    const peft = await loraModel("llama");
    const session = compile(peft);
    try {
      const scalars = { lr: 1e-3, lossScales: [1], dropoutSeeds: [0] };
      const V = peft.base.dims.vocabSize;
      const badId = { inputIds: [[1, V, 2]], labels: [[1, 2, 3]] };
      expect(() => session.step([badId], scalars)).toThrow(
        new ShapeError(
          `token id ${V} at [0, 1] is outside the vocabulary [0, ${V}).`,
        ),
      );
      const badLabel = { inputIds: [[1, 2, 3]], labels: [[1, -5, 3]] };
      expect(() => session.step([badLabel], scalars)).toThrow(
        /label -5 at \[0, 1\]/,
      );
      const tooMany = {
        inputIds: [
          [1, 2],
          [3, 4],
          [5, 6],
        ],
        labels: [
          [1, 2],
          [3, 4],
          [5, 6],
        ],
      };
      expect(() => session.step([tooMany], scalars)).toThrow(
        /3 rows is larger than the session's batch size 2/,
      );
      const ragged = { inputIds: [[1, 2, 3]], labels: [[1, 2]] };
      expect(() => session.step([batch, ragged], scalars)).toThrow(
        /2 labels for 3 token ids/,
      );
      expect(session.steps).toBe(0);
    } finally {
      session.dispose();
      peft.dispose();
    }
  });
});
