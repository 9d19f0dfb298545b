/**
 * The worker's training API, in-thread on Dawn: load a model and a dataset, add an adapter, train with live
 * events, evaluate, save the adapter and load it into a fresh service, and clear errors for misuse; a separate test
 * file, scoring without the adapter, a merged folder, and checkpoints to resume from.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, directoryStore, type TrainEvent } from "@webtune/core";
import { TrainerService } from "../../../packages/worker/src/service.js";
import { chatModelFolder } from "../../helpers/chat_model.js";
import { allowNoGpu } from "../../helpers/gpu.js";

const services: TrainerService[] = [];
afterAll(async () => {
  for (const s of services) await s.dispose();
});

const rows = ["cat", "dog", "bird", "fox", "cow", "pig"]
  .flatMap((a) =>
    ["mat", "rug", "bed", "box"].map((p) =>
      JSON.stringify({ text: `the ${a} sat on the ${p}.` }),
    ),
  )
  .join("\n");

describe("worker training API (in-thread)", () => {
  it("trains an adapter with live events, evaluates it, and hands it to another worker", async (ctx) => {
    const service = new TrainerService();
    services.push(service);
    await service
      .init()
      .catch((e: unknown) =>
        allowNoGpu ? ctx.skip(String(e)) : Promise.reject(e),
      );
    const folder = chatModelFolder();
    await expect(service.train()).rejects.toThrow(
      /No model is loaded in the worker/,
    );
    await service.loadModel(folder, { cache: false });
    await expect(service.train()).rejects.toThrow(ConfigError);
    const summary = await service.loadData(rows, {
      source: "animals.jsonl",
      valSplit: 0.25,
      seed: 1,
    });
    expect(summary.format).toBe("completion");
    expect(summary.sizes).toEqual({ train: 18, val: 6, test: 0 });
    const added = await service.addAdapter("default", {
      r: 8,
      loraAlpha: 16,
      targetModules: "all-linear",
    });
    expect(added.summary).toMatch(/^trainable params: /);
    const before = await service.evaluate("val");
    const events: TrainEvent[] = [];
    const result = await service.train(
      { learningRate: 2e-2, batchSize: 6, epochs: 8, evalEvery: 8 },
      (e) => events.push(e),
    );
    expect(result.steps).toBe(24);
    expect(events.filter((e) => e.type === "step")).toHaveLength(24);
    expect(events.filter((e) => e.type === "step").at(-1)!.epoch).toBeCloseTo(
      8,
      10,
    );
    const after = await service.evaluate("val");
    expect(after.loss).toBeLessThan(before.loss - 0.2);

    const files = await service.saveAdapter();
    const other = new TrainerService();
    services.push(other);
    await other.loadModel(folder, { cache: false });
    await other.loadAdapter("copy", files);
    const ids = [[5, 9, 30, 2, 44, 100, 7]];
    expect(await other.loss(ids)).toBeCloseTo(await service.loss(ids), 6);
    await other.merge();
    expect(
      Math.abs((await other.loss(ids)) - (await service.loss(ids))),
    ).toBeLessThan(1e-4);
  });

  it("takes a separate test file, scores with and without the adapter, saves a merged folder, and resumes from a checkpoint", async (ctx) => {
    const dir = mkdtempSync(join(tmpdir(), "webtune-worker-ckpt-"));
    const service = new TrainerService(directoryStore(dir));
    services.push(service);
    await service
      .init()
      .catch((e: unknown) =>
        allowNoGpu ? ctx.skip(String(e)) : Promise.reject(e),
      );
    await service.loadModel(chatModelFolder(), { cache: false });
    const testRows = ["owl", "hen"]
      .map((a) => JSON.stringify({ text: `the ${a} sat on the mat.` }))
      .join("\n");
    const summary = await service.loadData(rows, {
      source: "animals.jsonl",
      valSplit: 0.25,
      testSplit: 0.5,
      seed: 1,
      test: { input: testRows, source: "test.jsonl" },
    });
    // The test file replaces testSplit; the preview shows rows as decoded tokens.
    expect(summary.sizes).toEqual({ train: 18, val: 6, test: 2 });
    expect(summary.preview.test.map((r) => r.target)).toEqual([
      "the owl sat on the mat.",
      "the hen sat on the mat.",
    ]);
    expect(summary.preview.train).toHaveLength(5);
    await service.addAdapter("default", { r: 4, targetModules: ["q_proj"] });
    const base = await service.evaluate("test", { useAdapter: false });
    const options = {
      learningRate: 5e-2,
      batchSize: 6,
      epochs: 2,
      checkpointEvery: 2,
    };
    await service.train(options);
    expect((await service.listCheckpoints()).map((c) => c.step)).toEqual([
      2, 4, 6,
    ]);
    const tuned = await service.evaluate("test");
    expect(tuned.loss).toBeLessThan(base.loss);
    expect((await service.evaluate("test", { useAdapter: false })).loss).toBe(
      base.loss,
    );
    expect((await service.evaluate("test", { maxRows: 1 })).rows).toBe(1);

    const merged = await service.saveMerged();
    expect(Object.keys(merged)).toEqual(
      expect.arrayContaining([
        "config.json",
        "model.safetensors",
        "tokenizer.json",
      ]),
    );
    // The adapter is unmerged again afterwards: the same scores with and without it as before.
    expect((await service.evaluate("test")).loss).toBeCloseTo(tuned.loss, 6);
    expect((await service.evaluate("test", { useAdapter: false })).loss).toBe(
      base.loss,
    );

    // A fresh adapter resumed from step 4 ends where the uninterrupted run ended.
    await service.addAdapter("default", { r: 4, targetModules: ["q_proj"] });
    const resumed = await service.train({
      ...options,
      resumeFrom: "step-000004",
    });
    expect(resumed.history[0]!.step).toBe(5);
    const again = await service.evaluate("test");
    expect(Math.abs(again.loss - tuned.loss) / tuned.loss).toBeLessThan(1e-5);
    // A new run without resumeFrom starts by deleting the old checkpoints.
    await service.clearCheckpoints();
    expect(await service.listCheckpoints()).toEqual([]);
    await expect(
      service.train({ ...options, resumeFrom: "step-000004" }),
    ).rejects.toThrow(/No complete checkpoint "step-000004"/);
  });
});
