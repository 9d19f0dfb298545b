/**
 * The worker with a classification head, in-thread on Dawn: a seq-cls job trains and evaluates through the head;
 * predict answers with label probabilities (tuned and base differ: the adapter moves them); the few-shot baseline
 * is refused by name; predict on an adapter without a head says what to do instead.
 */
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError } from "@webtune/core";
import { TrainerService } from "../../../packages/worker/src/service.js";
import { chatModelFolder } from "../../helpers/chat_model.js";
import { allowNoGpu } from "../../helpers/gpu.js";
import { jsonl, PETS_FILES } from "../../helpers/job_files.js";

const service = new TrainerService();
afterAll(() => service.dispose());

const files = PETS_FILES;

describe("TrainerService with a classification head", () => {
  it("trains, evaluates and predicts through the head", async (ctx) => {
    await service
      .init()
      .catch((e: unknown) =>
        allowNoGpu ? ctx.skip(String(e)) : Promise.reject(e),
      );
    const model = chatModelFolder();
    await service.runJob(
      {
        model: { source: model },
        data: { train: "pets.jsonl", test: "pets_test.jsonl", valSplit: 0 },
        adapter: { task: "seq-cls" },
        training: { learningRate: 5e-2, batchSize: 4, maxSteps: 4, seed: 1 },
      },
      files,
    );
    const tuned = await service.evaluate("test");
    expect(tuned.labels).toEqual(["busy", "calm"]);
    expect(tuned.confusionMatrix!.flat().reduce((a, b) => a + b)).toBe(2);
    // One loss token a row: the label at the text's last token.
    expect(tuned.tokens).toBe(2);
    const after = await service.predict("the cat sat on the mat");
    const before = await service.predict("the cat sat on the mat", {
      useAdapter: false,
    });
    expect(after.scores!.map((s) => s.label).sort()).toEqual(["busy", "calm"]);
    expect(after.scores![0]!.score).not.toBeCloseTo(
      before.scores!.find((s) => s.label === after.scores![0]!.label)!.score,
      4,
    );
    await expect(service.fewShot(2)).rejects.toThrow(/no baseline/);

    await service.runJob(
      {
        model: { source: model },
        data: { train: "pets.jsonl", valSplit: 0 },
        training: { maxSteps: 1 },
        evaluation: { scoreBase: false },
      },
      files,
    );
    await expect(service.predict("the cat")).rejects.toThrow(ConfigError);

    // Data for a token-classification head, read as its job reads it, with its words and tags to preview.
    const ner = jsonl(
      ["rome", "oslo", "paris", "lima"].map((p) => ({
        tokens: ["the", "cat", "went", "to", p],
        tags: ["O", "B-PER", "O", "O", "B-LOC"],
      })),
    );
    const summary = await service.loadData(ner, {
      source: "ner.jsonl",
      task: "token-cls",
      valSplit: 0.25,
    });
    expect(summary).toMatchObject({
      format: "tagged",
      labels: ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"],
      sizes: { train: 3, val: 1, test: 0 },
    });
    expect(summary.preview.train[0]!.words).toHaveLength(5);
    expect(summary.preview.train[0]!.tags).toEqual([
      "O",
      "B-PER",
      "O",
      "O",
      "B-LOC",
    ]);
    await expect(
      service.loadData(ner, { source: "ner.jsonl" }),
    ).rejects.toThrow(/ner\.jsonl/);
  });
});
