/**
 * Jobs against forgetting, run on Dawn with a small Llama: replay mixes a file into every batch (and a missing one
 * is named by its field); several tasks train one adapter, each read, validated and scored in its own format; a
 * sequential stage continues a saved adapter and scores the earlier task before and after, its "before" being
 * exactly what the earlier stage scored.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { saveAdapterToDirectory, type FineTuneJobInput } from "@webtune/core";
import { chatModelFolder } from "../../helpers/chat_model.js";
import {
  ANIMALS,
  jsonl,
  KINDS_FILES,
  runOnFiles,
} from "../../helpers/job_files.js";
import { needGpu } from "../../helpers/gpu.js";

const animals = ANIMALS;
const FILES: Record<string, string> = {
  "colours.jsonl": jsonl(
    animals.flatMap((a, i) =>
      ["red", "blue", "green"].map((c, j) => ({
        prompt: `the ${c} ${a} is`,
        completion: ` ${["small", "big", "old"][(i + j) % 3]}`,
      })),
    ),
  ),
  "colours_test.jsonl": jsonl([
    { prompt: "the red cat is", completion: " small" },
    { prompt: "the blue hen is", completion: " big" },
  ]),
  ...KINDS_FILES,
  "general.jsonl": jsonl(
    ["mat", "rug", "bed", "box", "hat"].map((p) => ({
      text: `a ${p} is a thing in a house.`,
    })),
  ),
};
const model = chatModelFolder();

const run = (input: FineTuneJobInput) => runOnFiles(FILES, model, input);

describe("replay, multitask and sequential jobs", () => {
  it("replays a file at its share of every batch, and names a missing one by its field", async (ctx) => {
    await needGpu(ctx);
    const { result, events } = await run({
      data: {
        train: "colours.jsonl",
        test: "colours_test.jsonl",
        valSplit: 0.25,
      },
      replay: { source: "general.jsonl", ratio: 0.25 },
      evaluation: { reference: "general.jsonl", scoreBase: false, fewShot: 2 },
    });
    const data = events.find((e) => e.type === "data")!;
    expect(data).toMatchObject({ replayRows: 5, sizes: { train: 18 } });
    // 18 task rows at 3 a batch: 6 steps (4 rows a batch, a quarter replayed).
    expect(result.train.steps).toBe(6);
    expect(events.filter((e) => e.type === "step")).toHaveLength(6);
    expect(result.forgetting).toBeDefined();
    // The few-shot baseline, beside the tuned score: two training rows in front of each test prompt.
    const fewShot = events.find(
      (e) => e.type === "test" && e.phase === "few-shot",
    );
    expect(fewShot?.type === "test" && fewShot.fewShot?.shots).toHaveLength(2);
    expect(result.summary).toMatchObject({
      fewshot_k: 2,
      test_fewshot_exactMatch: result.test.fewShot!.exactMatch,
    });
    result.peft.dispose();
    result.model.dispose();

    await expect(
      run({
        data: { train: "colours.jsonl" },
        replay: { source: "nowhere.jsonl", ratio: 0.25 },
      }),
    ).rejects.toThrow(/replay\.source: no file nowhere\.jsonl/);
  });

  it("trains one adapter on two tasks, each validated and scored in its own format", async (ctx) => {
    await needGpu(ctx);
    const { result, events } = await run({
      data: {
        train: ["colours.jsonl", "kinds.jsonl"],
        test: ["colours_test.jsonl", "kinds_test.jsonl"],
        mix: [1, 1],
        valSplit: 0.25,
      },
      training: { maxSteps: 6 },
    });
    const data = events.find((e) => e.type === "data")!;
    expect(
      data.type === "data" && data.tasks?.map((t) => [t.name, t.format]),
    ).toEqual([
      ["colours", "instruction"],
      ["kinds", "classification"],
    ]);
    const tests = events.filter((e) => e.type === "test");
    expect(tests.map((e) => [e.phase, e.task])).toEqual([
      ["base", "colours"],
      ["base", "kinds"],
      ["tuned", "colours"],
      ["tuned", "kinds"],
    ]);
    expect(result.tasks[0]!.tuned!.exactMatch).toBeTypeOf("number");
    expect(result.tasks[1]!.tuned!.accuracy).toBeTypeOf("number");
    expect(result.tasks[1]!.tuned!.exactMatch).toBeUndefined();
    expect(result.summary).toMatchObject({
      test_colours_exactMatch: result.tasks[0]!.tuned!.exactMatch,
      test_kinds_accuracy: result.tasks[1]!.tuned!.accuracy,
      test_base_kinds_accuracy: result.tasks[1]!.base!.accuracy,
    });
    // Each task's validation loss, and the pooled one that early stopping watches.
    const evals = events.filter((e) => e.type === "eval");
    expect(evals.length).toBeGreaterThan(0);
    for (const e of evals) {
      const tasks = e.tasks!;
      expect(Object.keys(tasks)).toEqual(["colours", "kinds"]);
      const pooled =
        (tasks.colours!.loss * tasks.colours!.tokens +
          tasks.kinds!.loss * tasks.kinds!.tokens) /
        (tasks.colours!.tokens + tasks.kinds!.tokens);
      expect(Math.abs(e.loss - pooled) / pooled).toBeLessThan(1e-6);
    }
    result.peft.dispose();
    result.model.dispose();
  });

  it("continues a saved adapter on a new task, scoring the earlier one before and after", async (ctx) => {
    await needGpu(ctx);
    const first = await run({
      data: { train: "colours.jsonl", test: "colours_test.jsonl" },
      training: { maxSteps: 6 },
      evaluation: { scoreBase: false },
    });
    const dir = mkdtempSync(join(tmpdir(), "webtune-stage1-"));
    await saveAdapterToDirectory(await first.result.peft.saveAdapter(), dir);
    const stage1 = first.result.test.tuned!;
    first.result.peft.dispose();
    first.result.model.dispose();

    const second = await run({
      data: { train: "kinds.jsonl", test: "kinds_test.jsonl" },
      adapter: { continueFrom: dir },
      replay: { source: "colours.jsonl", ratio: 0.25 },
      training: { maxSteps: 6 },
      evaluation: { retention: "colours_test.jsonl" },
    });
    const [kept] = second.result.retention!;
    expect(kept!.task).toBe("colours_test");
    // Before the second stage, the adapter is the first stage's: the same rows, the same numbers.
    expect(kept!.before.loss).toBeCloseTo(stage1.loss, 5);
    expect(kept!.before.exactMatch).toBe(stage1.exactMatch);
    expect(kept!.after.loss).not.toBeCloseTo(stage1.loss, 5);
    expect(second.events.filter((e) => e.type === "retention")).toHaveLength(1);
    expect(second.result.summary).toMatchObject({
      retention_colours_test_before_loss: kept!.before.loss,
      retention_colours_test_after_loss: kept!.after.loss,
    });
    second.result.peft.dispose();
    second.result.model.dispose();

    const missing = join(dir, "nowhere");
    await expect(
      run({
        data: { train: "kinds.jsonl" },
        adapter: { continueFrom: missing },
      }),
    ).rejects.toThrow(missing);
  });
});
