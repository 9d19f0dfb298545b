/**
 * The worker's few-shot baseline, in-thread on Dawn: after a job has trained an adapter, fewShot scores the base
 * model (k = 0 is the base's plain test score, not the adapter's), with k seeded rows of the train split in each
 * prompt over the same scored tokens; maxRows limits the test rows; a bad k names the page's control.
 */
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError } from "@webtune/core";
import { TrainerService } from "../../../packages/worker/src/service.js";
import { chatModelFolder } from "../../helpers/chat_model.js";
import { allowNoGpu } from "../../helpers/gpu.js";
import { PETS_FILES } from "../../helpers/job_files.js";

const service = new TrainerService();
afterAll(() => service.dispose());

const files = PETS_FILES;

describe("TrainerService.fewShot", () => {
  it("scores the base model with k train rows in each prompt, adapters off", async (ctx) => {
    await service
      .init()
      .catch((e: unknown) =>
        allowNoGpu ? ctx.skip(String(e)) : Promise.reject(e),
      );
    await service.runJob(
      {
        model: { source: chatModelFolder() },
        data: { train: "pets.jsonl", test: "pets_test.jsonl", valSplit: 0 },
        training: { learningRate: 5e-2, batchSize: 4, maxSteps: 4, seed: 1 },
      },
      files,
    );
    const base = await service.evaluate("test", { useAdapter: false });
    const tuned = await service.evaluate("test");
    expect(tuned.loss).not.toBeCloseTo(base.loss, 4);
    expect((await service.fewShot(0)).result).toEqual(base);

    const few = await service.fewShot(2, 1);
    expect(few.report.k).toBe(2);
    expect(few.report.shots).toHaveLength(2);
    expect(few.report.balanced).toBe(true);
    expect(few.result.rows).toBe(2);
    expect(few.result.tokens).toBe(base.tokens);
    expect(few.result.accuracy).toBeDefined();
    expect(await service.fewShot(2, 1)).toEqual(few);
    expect((await service.fewShot(1, 0, { maxRows: 1 })).result.rows).toBe(1);

    await expect(service.fewShot(99)).rejects.toThrow(ConfigError);
    await expect(
      service.fewShot(99, 0, { names: { k: '"k"' } }),
    ).rejects.toThrow('"k" is 99, but the train split has 16 rows');
  });
});
