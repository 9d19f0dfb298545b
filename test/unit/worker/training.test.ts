/**
 * The worker's job API, in-thread on Dawn: a FineTuneJob runs with live events on the model it loads (or on the
 * one loaded), is evaluated, saved and loaded into a fresh service; a bad job names its fields and loads nothing;
 * a separate test file, base and tuned scores, a merged folder that leaves the adapter as it was, checkpoints to
 * resume from; Stop and Skip answer while scoring; full fine-tuning through the same API.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  directoryStore,
  JobError,
  type JobEvent,
  type FineTuneJobInput,
} from "@webtune/core";
import { TrainerService } from "../../../packages/worker/src/service.js";
import { chatModelFolder } from "../../helpers/chat_model.js";
import { allowNoGpu } from "../../helpers/gpu.js";

const services: TrainerService[] = [];
afterAll(async () => {
  for (const s of services) await s.dispose();
});

async function started(
  ctx: { skip: (why: string) => void },
  service = new TrainerService(),
) {
  services.push(service);
  await service
    .init()
    .catch((e: unknown) =>
      allowNoGpu ? ctx.skip(String(e)) : Promise.reject(e),
    );
  return service;
}

const rows = ["cat", "dog", "bird", "fox", "cow", "pig"]
  .flatMap((a) =>
    ["mat", "rug", "bed", "box"].map((p) =>
      JSON.stringify({ text: `the ${a} sat on the ${p}.` }),
    ),
  )
  .join("\n");
const testRows = ["owl", "hen"]
  .map((a) => JSON.stringify({ text: `the ${a} sat on the mat.` }))
  .join("\n");
const files = { "animals.jsonl": rows, "test.jsonl": testRows };

const animals = (more: FineTuneJobInput = {}): FineTuneJobInput => ({
  ...more,
  model: { source: chatModelFolder(), ...more.model },
  data: { train: "animals.jsonl", valSplit: 0.25, ...more.data },
  training: { seed: 1, ...more.training },
});

describe("worker job API (in-thread)", () => {
  it("runs a job with live events, evaluates it, and hands the adapter to another worker", async (ctx) => {
    const service = await started(ctx);
    await expect(service.loss([[1, 2]])).rejects.toThrow(
      /No model is loaded in the worker/,
    );
    // Every bad field named at once, before anything is loaded.
    const bad = service.runJob(
      animals({ training: { learningRate: -1, batchSize: 0 } }),
      files,
    );
    await expect(bad).rejects.toThrow(JobError);
    await expect(bad).rejects.toThrow(
      /job\.training\.learningRate must be above 0[^]*job\.training\.batchSize must be a whole number ≥ 1/,
    );
    await expect(service.loss([[1, 2]])).rejects.toThrow(/No model is loaded/);

    const events: JobEvent[] = [];
    const outcome = await service.runJob(
      animals({
        adapter: { r: 8, alpha: 16 },
        training: { learningRate: 2e-2, batchSize: 6, epochs: 8 },
        evaluation: { evalEvery: 8 },
      }),
      files,
      (e) => events.push(e),
    );
    expect(outcome.train.steps).toBe(24);
    expect(events[0]).toEqual({ type: "phase", phase: "loading model" });
    const data = events.find((e) => e.type === "data")!;
    expect(data).toMatchObject({
      format: "completion",
      sizes: { train: 18, val: 6, test: 0 },
      promptTemplate: null,
    });
    const steps = events.filter((e) => e.type === "step");
    expect(steps).toHaveLength(24);
    expect(steps.at(-1)!.epoch).toBeCloseTo(8, 10);
    // The job's splits stay loaded: the validation loss with and without the adapter.
    const base = await service.evaluate("val", { useAdapter: false });
    const tuned = await service.evaluate("val");
    expect(tuned.loss).toBeLessThan(base.loss - 0.2);
    expect(outcome.job.adapter).toMatchObject({ r: 8, alpha: 16 });

    const adapter = await service.saveAdapter();
    const other = await started(ctx);
    await other.loadModel(chatModelFolder(), { cache: false });
    await other.loadAdapter("copy", adapter);
    const ids = [[5, 9, 30, 2, 44, 100, 7]];
    expect(await other.loss(ids)).toBeCloseTo(await service.loss(ids), 6);
  });

  it("scores base and tuned on a test file, saves a merged folder leaving the adapter as it was, and resumes", async (ctx) => {
    const dir = mkdtempSync(join(tmpdir(), "webtune-worker-ckpt-"));
    const service = await started(ctx, new TrainerService(directoryStore(dir)));
    await service.loadModel(chatModelFolder(), { cache: false });
    const job = animals({
      data: { test: "test.jsonl" },
      adapter: { r: 4, targetModules: ["q_proj"] },
      training: { learningRate: 5e-2, batchSize: 6, epochs: 2 },
      checkpointEvery: 2,
    });
    const outcome = await service.runJob(job, files);
    expect(outcome.test.base!.rows).toBe(2);
    expect(outcome.test.tuned!.loss).toBeLessThan(outcome.test.base!.loss);
    expect((await service.listCheckpoints()).map((c) => c.step)).toEqual([
      2, 4, 6,
    ]);
    const tuned = await service.evaluate("test");
    expect(tuned.loss).toBe(outcome.test.tuned!.loss);
    expect((await service.evaluate("test", { useAdapter: false })).loss).toBe(
      outcome.test.base!.loss,
    );

    const mergedFolder = async () =>
      Object.keys(await service.saveMerged()).sort();
    expect(await mergedFolder()).toEqual(
      expect.arrayContaining([
        "config.json",
        "model.safetensors",
        "tokenizer.json",
      ]),
    );
    // Separate before, separate after: the same scores with and without the adapter.
    expect((await service.evaluate("test")).loss).toBeCloseTo(tuned.loss, 6);
    expect((await service.evaluate("test", { useAdapter: false })).loss).toBe(
      outcome.test.base!.loss,
    );
    // Merged before, merged after: with adapters disabled, the merged weights still give the tuned loss.
    await service.merge();
    await mergedFolder();
    const disabled = await service.evaluate("test", { useAdapter: false });
    expect(disabled.loss).toBeCloseTo(tuned.loss, 4);
    expect(Math.abs(disabled.loss - outcome.test.base!.loss)).toBeGreaterThan(
      1e-3,
    );
    await service.unmerge();

    // A fresh adapter resumed from step 4 ends where the uninterrupted run ended.
    const resumed = await service.runJob(job, files, undefined, {
      resumeFrom: "step-000004",
    });
    expect(resumed.train.history[0]!.step).toBe(5);
    expect(
      Math.abs(resumed.test.tuned!.loss - tuned.loss) / tuned.loss,
    ).toBeLessThan(1e-5);
    await service.clearCheckpoints();
    await expect(
      service.runJob(job, files, undefined, { resumeFrom: "step-000004" }),
    ).rejects.toThrow(/No complete checkpoint "step-000004"/);
  });

  it("skips the base scoring on request, and a stop ends the run at once, keeping the adapter unscored", async (ctx) => {
    const service = await started(ctx);
    const job = animals({
      data: { test: "test.jsonl" },
      training: { learningRate: 1e-2, batchSize: 6, epochs: 50 },
    });
    const phases: string[] = [];
    let steps = 0;
    const outcome = await service.runJob(job, files, (e) => {
      if (e.type === "phase") {
        phases.push(e.phase);
        if (e.phase === "scoring base") void service.skipScoring();
      }
      if (e.type === "step" && ++steps === 3) void service.stop();
    });
    expect(phases).toEqual([
      "loading model",
      "reading data",
      "scoring base",
      "training",
    ]);
    expect(outcome.test).toEqual({});
    expect(outcome.train.aborted).toBe(true);
    // The compiled step reads step N's loss while N + 1 runs: a stop at step 3's event ends after step 4.
    expect(outcome.train.steps).toBeLessThanOrEqual(4);
    expect(outcome.summary.stopped).toBe(true);
    // What it trained is there, and can be scored on demand.
    expect((await service.evaluate("test")).rows).toBe(2);
  });

  it("fine-tunes every weight through the same API, and saves the tuned model", async (ctx) => {
    const service = await started(ctx);
    const folder = chatModelFolder();
    await service.loadModel(folder, { cache: false });
    const before = await service.loss([[5, 9, 30, 2, 44, 100, 7]]);
    const outcome = await service.runJob(
      animals({
        model: { source: folder },
        method: "full",
        training: { learningRate: 1e-3, batchSize: 6, maxSteps: 3 },
      }),
      files,
    );
    expect(outcome.train.steps).toBe(3);
    expect(outcome.job.method).toBe("full");
    // A full fine-tune changes the model's own weights; its saved folder is the tuned model.
    const after = await service.loss([[5, 9, 30, 2, 44, 100, 7]]);
    expect(after).not.toBe(before);
    const saved = await service.saveMerged();
    expect(Object.keys(saved)).toContain("model.safetensors");
    // The tuned weights are no longer the base: a LoRA job on the same source loads it afresh.
    const lora = await service.runJob(
      animals({
        model: { source: folder },
        data: { test: "test.jsonl" },
        training: { batchSize: 6, maxSteps: 1 },
      }),
      files,
    );
    const fresh = await started(ctx);
    await fresh.loadModel(folder, { cache: false });
    await fresh.loadData(rows, {
      source: "animals.jsonl",
      valSplit: 0.25,
      seed: 1,
      test: { input: testRows, source: "test.jsonl" },
    });
    expect(lora.test.base!.loss).toBe(
      (await fresh.evaluate("test", { useAdapter: false })).loss,
    );
  });
});
