/**
 * The worker's training API, in-thread on Dawn: load a model and a dataset, add an adapter, train with live
 * events, evaluate, save the adapter and load it into a fresh service, and clear errors for misuse.
 */
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, type TrainEvent } from "@webtune/core";
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
});
