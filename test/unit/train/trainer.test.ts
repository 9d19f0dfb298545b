/**
 * The training loop on a tiny Llama with a learnable synthetic task (each token is followed by the next id):
 * the validation loss falls, accumulation 4×2 equals one batch of 8, the reported gradient norm is the global
 * norm, early stopping restores the best adapter, a resumed checkpoint equals an uninterrupted run, abort
 * stops, and the tensor count stays flat.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { describe, expect, it } from "vitest";
import { FullFineTune, loadModel } from "@webtune/core";
import { directoryStore } from "../../../packages/core/src/io/checkpoint_store.js";
import { GOLDEN_DIR } from "../../helpers/golden.js";
import {
  Trainer,
  type TrainBatch,
  type TrainEvent,
} from "../../../packages/core/src/train/trainer.js";
import { needGpu } from "../../helpers/gpu.js";
import { useTinyModels } from "../../helpers/lora.js";

const { models, peftOf } = useTinyModels(["llama_untied"]);
const V = 72;

/** Rows counting upward from a seeded start, of seeded lengths; right-padded with -100 labels. */
function batch(rows: number, seed: number, maxLen = 12): TrainBatch {
  const lengths = Array.from(
    { length: rows },
    (_, i) => 6 + ((seed * 7 + i * 3) % (maxLen - 5)),
  );
  const T = Math.max(...lengths);
  const inputIds = lengths.map((len, i) =>
    Array.from({ length: T }, (_, t) =>
      t < len ? (seed * 13 + i * 5 + t) % V : 0,
    ),
  );
  const labels = inputIds.map((row, i) =>
    row.map((id, t) => (t < lengths[i]! ? id : -100)),
  );
  return { inputIds, labels };
}

function split(b: TrainBatch, at: number): [TrainBatch, TrainBatch] {
  const cut = (rows: number[][]) => [rows.slice(0, at), rows.slice(at)];
  const [i0, i1] = cut(b.inputIds);
  const [l0, l1] = cut(b.labels);
  return [
    { inputIds: i0!, labels: l0! },
    { inputIds: i1!, labels: l1! },
  ];
}

async function values(vars: tf.Variable[]): Promise<number[]> {
  return (await Promise.all(vars.map((v) => v.data()))).flatMap((d) =>
    Array.from(d),
  );
}

describe("Trainer", () => {
  it("lowers the validation loss on a learnable task, reporting every step", async (ctx) => {
    await needGpu(ctx);
    const peft = peftOf("llama_untied");
    peft.addAdapter("default", {
      r: 8,
      loraAlpha: 16,
      targetModules: "all-linear",
    });
    const events: TrainEvent[] = [];
    const trainer = new Trainer(peft, {
      learningRate: 1e-2,
      schedule: "cosine",
      warmupSteps: 2,
      onEvent: (e) => events.push(e),
    });
    const train = Array.from({ length: 80 }, (_, i) => batch(4, i + 1));
    const val = [batch(4, 101), batch(4, 102)];
    const before = await trainer.evaluate(val);
    const result = await trainer.train({ train, val });
    expect(result.steps).toBe(80);
    const steps = events.filter((e) => e.type === "step");
    expect(steps.map((e) => e.step)).toEqual(
      Array.from({ length: 80 }, (_, i) => i + 1),
    );
    for (const e of steps) {
      expect(
        Number.isFinite(e.loss) &&
          e.gradNorm > 0 &&
          e.tokensPerSec > 0 &&
          e.gpuBytes > 0,
      ).toBe(true);
    }
    expect(steps[0]!.lr).toBe(0); // warmup starts at 0, as HF's schedules
    const after = result.history.at(-1)!;
    expect(after.type).toBe("eval");
    console.log(
      `validation loss ${before.loss.toFixed(3)} -> ${after.loss.toFixed(3)}`,
    );
    expect(after.loss).toBeLessThan(before.loss - 0.5);
  });

  it("accumulating 4×2 equals one batch of 8 (loss weighted by tokens), to 1e-5", async (ctx) => {
    await needGpu(ctx);
    const big = batch(8, 5);
    const run = async (batches: TrainBatch[], gradAccum: number) => {
      const peft = peftOf("llama_untied");
      peft.addAdapter(
        "default",
        { r: 4, targetModules: ["q_proj", "v_proj"], initLoraWeights: false },
        { seed: 9 },
      );
      const events: TrainEvent[] = [];
      await new Trainer(peft, {
        learningRate: 1e-3,
        schedule: "constant",
        gradAccum,
        maxSteps: 1,
        maxGradNorm: 0.5,
        onEvent: (e) => events.push(e),
      }).train({
        train: batches,
      });
      const v = await values(peft.trainableVariables());
      peft.dispose();
      return { v, event: events[0] as Extract<TrainEvent, { type: "step" }> };
    };
    const one = await run([big], 1);
    const accumulated = await run(split(big, 4), 2);
    let worst = 0;
    one.v.forEach(
      (x, i) =>
        (worst = Math.max(
          worst,
          Math.abs(x - accumulated.v[i]!) / Math.max(Math.abs(x), 1e-3),
        )),
    );
    expect(worst).toBeLessThan(1e-5);
    expect(
      Math.abs(accumulated.event.loss - one.event.loss) / one.event.loss,
    ).toBeLessThan(1e-5);
    expect(
      Math.abs(accumulated.event.gradNorm - one.event.gradNorm) /
        one.event.gradNorm,
    ).toBeLessThan(1e-5);
  });

  it("reports the global gradient norm before clipping", async (ctx) => {
    await needGpu(ctx);
    const peft = peftOf("llama_untied");
    peft.addAdapter(
      "default",
      { r: 4, targetModules: ["q_proj"], initLoraWeights: false },
      { seed: 2 },
    );
    const b = batch(4, 3);
    const vars = peft.trainableVariables();
    const { grads, value } = tf.variableGrads(
      () => peft.loss(b.inputIds, b.labels) as tf.Scalar,
      vars,
    );
    const expected = Math.sqrt(
      (
        await Promise.all(
          Object.values(grads).map((g) => g.square().sum().data()),
        )
      ).reduce((s, d) => s + d[0]!, 0),
    );
    tf.dispose([value, ...Object.values(grads)]);
    const events: TrainEvent[] = [];
    await new Trainer(peft, {
      maxSteps: 1,
      maxGradNorm: 1e-3,
      onEvent: (e) => events.push(e),
    }).train({ train: [b] });
    const e = events[0] as Extract<TrainEvent, { type: "step" }>;
    expect(Math.abs(e.gradNorm - expected) / expected).toBeLessThan(1e-4);
    expect(expected).toBeGreaterThan(1e-3); // so the clip really applied
  });

  it("stops early when validation stops improving, and restores the best adapter", async (ctx) => {
    await needGpu(ctx);
    const peft = peftOf("llama_untied");
    peft.addAdapter("default", { r: 8, targetModules: "all-linear" });
    // A learning rate far too high: validation improves at first, then gets worse.
    const trainer = new Trainer(peft, {
      learningRate: 0.5,
      schedule: "constant",
      evalEvery: 1,
      earlyStopping: { patience: 2 },
    });
    const train = Array.from({ length: 30 }, (_, i) => batch(4, i + 1));
    const val = [batch(4, 101)];
    const result = await trainer.train({ train, val });
    expect(result.stoppedEarly).toBe(true);
    expect(result.steps).toBeLessThan(30);
    const evals = result.history.filter((e) => e.type === "eval");
    const best = Math.min(...evals.map((e) => e.loss));
    expect(result.bestEval!.loss).toBe(best);
    const restored = await trainer.evaluate(val);
    expect(Math.abs(restored.loss - best) / best).toBeLessThan(1e-5);
  });

  it("keeps the trained adapter when early stopping's only evaluation is the last one", async (ctx) => {
    await needGpu(ctx);
    const train = Array.from({ length: 6 }, (_, i) => batch(4, i + 1));
    const val = [batch(4, 101)];
    const run = async (earlyStopping?: { patience: number }) => {
      const peft = peftOf("llama_untied");
      peft.addAdapter(
        "default",
        { r: 4, targetModules: ["q_proj", "v_proj"] },
        { seed: 5 },
      );
      const start = await values(peft.trainableVariables());
      const trainer = new Trainer(peft, {
        learningRate: 1e-2,
        maxSteps: 6,
        earlyStopping,
      });
      const result = await trainer.train({ train, val });
      const v = await values(peft.trainableVariables());
      const loss = (await trainer.evaluate(val)).loss;
      peft.dispose();
      return { start, v, loss, best: result.bestEval!.loss };
    };
    const plain = await run();
    const stopping = await run({ patience: 3 });
    // The weights after the run are the trained ones (they scored the best, and only, evaluation), not the start.
    expect(stopping.v).toEqual(plain.v);
    expect(stopping.v).not.toEqual(stopping.start);
    expect(
      Math.abs(stopping.loss - stopping.best) / stopping.best,
    ).toBeLessThan(1e-5);
  });

  it("resumes from a checkpoint to the same adapter as an uninterrupted run, to 1e-5", async (ctx) => {
    await needGpu(ctx);
    const train = Array.from({ length: 10 }, (_, i) => batch(2, i + 1, 8));
    const options = {
      learningRate: 5e-3,
      schedule: "cosine" as const,
      warmupSteps: 2,
      maxSteps: 10,
      weightDecay: 0.01,
    };
    const fresh = () => {
      const peft = peftOf("llama_untied");
      peft.addAdapter(
        "default",
        { r: 4, targetModules: ["q_proj", "v_proj"], loraDropout: 0.1 },
        { seed: 4 },
      );
      return peft;
    };
    const straight = fresh();
    await new Trainer(straight, options).train({ train });
    const expected = await values(straight.trainableVariables());
    straight.dispose();

    const store = directoryStore(mkdtempSync(join(tmpdir(), "webtune-ckpt-")));
    const first = fresh();
    const interrupted = new Trainer(first, {
      ...options,
      checkpoint: { store, every: 5 },
    });
    await interrupted.train({ train }); // saves step-000005 and step-000010
    first.dispose();
    expect(await store.list()).toEqual(["step-000005", "step-000010"]);

    const second = fresh(); // a new process would start here: new variables, new optimizer
    const result = await new Trainer(second, options).train(
      { train },
      await store.load("step-000005"),
    );
    expect(result.steps).toBe(10);
    const resumed = await values(second.trainableVariables());
    let worst = 0;
    expected.forEach(
      (x, i) =>
        (worst = Math.max(
          worst,
          Math.abs(x - resumed[i]!) / Math.max(Math.abs(x), 1e-3),
        )),
    );
    expect(worst).toBeLessThan(1e-5);
  });

  it("fully fine-tunes every weight of a model loaded as trainable, and resumes it from a checkpoint", async (ctx) => {
    await needGpu(ctx);
    const load = () =>
      loadModel(`${GOLDEN_DIR}tiny/llama_untied`, {
        cache: false,
        trainable: true,
      });
    const train = Array.from({ length: 8 }, (_, i) => batch(4, i + 1));
    const val = [batch(4, 101)];
    const options = {
      learningRate: 3e-3,
      schedule: "constant" as const,
      maxSteps: 8,
    };
    const model = await load();
    const full = new FullFineTune(model);
    const vars = full.namedTrainableVariables();
    expect(vars.reduce((n, v) => n + v.variable.size, 0)).toBe(
      model.lm.parameterCount(),
    );
    const trainer = new Trainer(full, options);
    const before = await trainer.evaluate(val);
    const store = directoryStore(mkdtempSync(join(tmpdir(), "webtune-full-")));
    await new Trainer(full, {
      ...options,
      checkpoint: { store, every: 4 },
    }).train({ train });
    expect((await trainer.evaluate(val)).loss).toBeLessThan(before.loss);
    const expected = await values(vars.map((v) => v.variable));
    model.dispose();

    const again = await load();
    const resumed = new FullFineTune(again);
    await new Trainer(resumed, options).train(
      { train },
      await store.load("step-000004"),
    );
    const got = await values(
      resumed.namedTrainableVariables().map((v) => v.variable),
    );
    let worst = 0;
    expected.forEach(
      (x, i) =>
        (worst = Math.max(
          worst,
          Math.abs(x - got[i]!) / Math.max(Math.abs(x), 1e-3),
        )),
    );
    expect(worst).toBeLessThan(1e-5);
    again.dispose();
    const frozen = await loadModel(`${GOLDEN_DIR}tiny/llama_untied`, {
      cache: false,
    });
    expect(() => new FullFineTune(frozen)).toThrow(
      /load the model with loadModel\(source, \{ trainable: true \}\)/,
    );
    frozen.dispose();
  });

  it("aborts after the step in flight, and keeps the tensor count flat from step 2 to step 501", async (ctx) => {
    await needGpu(ctx);
    const peft = peftOf("llama_untied");
    peft.addAdapter("default", {
      r: 4,
      targetModules: ["q_proj", "v_proj"],
      loraDropout: 0.1,
    });
    const counts: number[] = [];
    const trainer = new Trainer(peft, {
      learningRate: 1e-3,
      onEvent: (e) => {
        if (e.type !== "step") return;
        counts.push(tf.memory().numTensors);
        if (e.step === 500) trainer.abort();
      },
    });
    const train = Array.from({ length: 50 }, (_, i) => batch(1, i + 1, 6));
    // 600 batches planned, so only the abort ends the run.
    const result = await trainer.train({
      train: Array.from({ length: 600 }, (_, i) => train[i % 50]!),
    });
    // Step 501 was already enqueued when step 500's event fired (the compiled step overlaps them).
    expect(result.aborted).toBe(true);
    expect(result.steps).toBe(501);
    expect(counts).toHaveLength(501);
    expect(new Set(counts.slice(1)).size).toBe(1);
    expect(models["llama_untied"]).toBeDefined();
  });
});
