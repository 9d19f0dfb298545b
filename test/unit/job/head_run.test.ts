/**
 * Jobs with a classification head, run on Dawn with a small Llama: a sequence-classification job trains the head
 * beside the adapter and scores it by the head's argmax (accuracy, macro F1, the confusion matrix); a
 * token-classification job reads tagged rows, scores entities (micro and per-type F1 in the summary); the saved
 * adapter is PEFT's SEQ_CLS / TOKEN_CLS layout, and loading it back gives the same scores. Bad combinations are
 * named by their fields before anything loads.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  evaluate,
  FineTuneJob,
  JobError,
  LoraModel,
  predictWithHead,
  saveAdapterToDirectory,
  splitWords,
  type FineTuneJobInput,
} from "@webtune/core";
import { openSafetensors } from "../../../packages/core/src/io/safetensors.js";
import { chatModelFolder } from "../../helpers/chat_model.js";
import {
  ANIMALS,
  jsonl,
  KINDS_FILES,
  runOnFiles,
} from "../../helpers/job_files.js";
import { needGpu } from "../../helpers/gpu.js";

const animals = ANIMALS;
const places = ["rome", "paris", "oslo"];
const FILES: Record<string, string> = {
  ...KINDS_FILES,
  "ner.jsonl": jsonl(
    animals.flatMap((a) =>
      places.map((p) => ({
        tokens: ["the", a, "went", "to", p, "city"],
        tags: ["O", "B-PER", "O", "O", "B-LOC", "I-LOC"],
      })),
    ),
  ),
  "ner_test.jsonl": jsonl([
    {
      tokens: ["the", "cat", "went", "to", "oslo", "city"],
      tags: ["O", "B-PER", "O", "O", "B-LOC", "I-LOC"],
    },
  ]),
};
const model = chatModelFolder();

const run = (input: FineTuneJobInput) => runOnFiles(FILES, model, input);

describe("jobs with a classification head", () => {
  it("seq-cls: trains the score head beside LoRA, scores by its argmax, and saves PEFT's SEQ_CLS layout", async (ctx) => {
    await needGpu(ctx);
    const { result, events } = await run({
      data: { train: "kinds.jsonl", test: "kinds_test.jsonl", valSplit: 0.25 },
      adapter: { task: "seq-cls", r: 4, alpha: 8 },
      training: { maxSteps: 6 },
    });
    const head = result.peft.head()!;
    expect(head).toMatchObject({ task: "seq-cls", name: "score" });
    expect(head.labels).toEqual(["beast", "bird"]);
    // Only the row's text, with the label's id at its last token: one loss token a row.
    for (const e of result.splits.train) {
      expect(e.labels.filter((l) => l !== -100)).toHaveLength(1);
      expect(e.labels.at(-1)).toBe(head.labels.indexOf(e.label!));
    }
    const tuned = events.find((e) => e.type === "test" && e.phase === "tuned");
    expect(tuned).toMatchObject({ rows: 2, labels: ["beast", "bird"] });
    expect(
      result.test.tuned!.confusionMatrix!.flat().reduce((a, b) => a + b),
    ).toBe(2);
    expect(result.summary).toHaveProperty("test_accuracy");
    const p = await predictWithHead(
      result.peft,
      result.model.tokenizer!,
      head,
      "the fox ran.",
    );
    expect(p.scores!.map((s) => s.label).sort()).toEqual(["beast", "bird"]);
    expect(p.scores![0]!.score).toBeGreaterThanOrEqual(p.scores![1]!.score);
    expect(p.scores!.reduce((a, s) => a + s.score, 0)).toBeCloseTo(1, 5);

    const files = await result.peft.saveAdapter();
    const config = JSON.parse(files["adapter_config.json"]) as Record<
      string,
      unknown
    >;
    expect(config).toMatchObject({
      task_type: "SEQ_CLS",
      modules_to_save: ["classifier", "score"],
      id2label: { "0": "beast", "1": "bird" },
      label2id: { beast: 0, bird: 1 },
    });
    const reader = await openSafetensors(files["adapter_model.safetensors"]);
    expect(reader.names).toContain("base_model.model.score.weight");
    expect(reader.names.filter((n) => !n.includes("lora_"))).toEqual([
      "base_model.model.score.weight",
    ]);

    // Loaded back (as PEFT would load it): the same head, the same test scores.
    const dir = mkdtempSync(join(tmpdir(), "webtune-seq-cls-"));
    await saveAdapterToDirectory(files, dir);
    const again = new LoraModel(result.model);
    result.peft.dispose(); // the model's own head goes with it
    await again.loadAdapter("reloaded", dir);
    expect(again.head()!.labels).toEqual(["beast", "bird"]);
    const scored = await evaluate(
      again,
      result.model.tokenizer!,
      result.splits.test,
      {
        format: "classification",
        head: again.head(),
      },
    );
    expect(scored.accuracy).toBe(result.test.tuned!.accuracy);
    expect(scored.loss).toBeCloseTo(result.test.tuned!.loss, 5);
    expect(
      JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8"))
        .task_type,
    ).toBe("SEQ_CLS");
    again.dispose();
    result.model.dispose();
  });

  it("seq-cls: a text longer than maxLength is cut to it, not dropped, and counted as truncated", async (ctx) => {
    await needGpu(ctx);
    const { result, events } = await run({
      data: { train: "kinds.jsonl", valSplit: 0, maxLength: 4 },
      adapter: { task: "seq-cls", r: 2, alpha: 4 },
      training: { maxSteps: 1 },
      evaluation: { scoreBase: false },
    });
    const data = events.find((e) => e.type === "data");
    // 24 rows, every one kept; "the cat sat." is more than 4 tokens with BOS.
    expect(data).toMatchObject({ sizes: { train: 24 } });
    expect(data?.type === "data" && data.report.truncated).toBe(24);
    for (const e of result.splits.train) {
      expect(e.inputIds).toHaveLength(4);
      expect(e.labels[3]).not.toBe(-100);
    }
    result.peft.dispose();
    result.model.dispose();
  });

  it("token-cls: reads tagged rows, scores entities per type, and keeps the head's bias", async (ctx) => {
    await needGpu(ctx);
    const { result, events } = await run({
      data: { train: "ner.jsonl", test: "ner_test.jsonl", valSplit: 0.2 },
      adapter: { task: "token-cls", r: 4, alpha: 8 },
      training: { maxSteps: 6 },
    });
    const data = events.find((e) => e.type === "data");
    expect(data).toMatchObject({
      format: "tagged",
      labels: ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"],
    });
    const head = result.peft.head()!;
    expect(head.bias?.shape).toEqual([5]);
    const tuned = result.test.tuned!;
    expect(tuned.entities!.perType).toHaveProperty("LOC");
    expect(tuned.entities!.perType).toHaveProperty("PER");
    expect(tuned.f1).toBe(tuned.entities!.micro.f1);
    expect(result.summary).toMatchObject({
      test_f1: tuned.f1,
      test_f1_LOC: tuned.entities!.perType["LOC"]!.f1,
    });
    const files = await result.peft.saveAdapter();
    const reader = await openSafetensors(files["adapter_model.safetensors"]);
    expect(reader.names.filter((n) => !n.includes("lora_")).sort()).toEqual([
      "base_model.model.score.bias",
      "base_model.model.score.weight",
    ]);
    expect(JSON.parse(files["adapter_config.json"])).toMatchObject({
      task_type: "TOKEN_CLS",
    });
    // One text, tagged word by word: the tags spell the entities it reports.
    const text = "the dog went to rome city.";
    expect(splitWords(text)).toEqual([
      "the",
      "dog",
      "went",
      "to",
      "rome",
      "city",
      ".",
    ]);
    const p = await predictWithHead(
      result.peft,
      result.model.tokenizer!,
      head,
      text,
    );
    expect(p.words).toEqual(splitWords(text));
    expect(p.tags).toHaveLength(7);
    for (const tag of p.tags!) expect(head.labels).toContain(tag);
    expect(p.entities!.map((e) => e.text)).toEqual(
      p.entities!.map((e) => p.words!.slice(e.start, e.end).join(" ")),
    );
    result.peft.dispose();
    result.model.dispose();
  });

  it("refuses what a head cannot do, naming each field", () => {
    const refused = (input: FineTuneJobInput) => {
      try {
        FineTuneJob.from({ model: { source: model }, ...input });
      } catch (error) {
        expect(error).toBeInstanceOf(JobError);
        return (error as Error).message;
      }
      throw new Error("not refused");
    };
    expect(
      refused({
        data: { train: ["a.jsonl", "b.jsonl"] },
        adapter: { task: "seq-cls" },
        replay: { source: "general.jsonl" },
      }),
    ).toMatch(/data\.train[\s\S]*replay\.source/);
    expect(
      refused({
        data: { train: "a.jsonl" },
        method: "full",
        adapter: { task: "token-cls" },
      }),
    ).toMatch(/method/);
    expect(
      refused({
        data: { train: "a.jsonl", format: "instruction" },
        adapter: { task: "seq-cls" },
      }),
    ).toMatch(/data\.format/);
    expect(
      refused({
        data: { train: "a.jsonl" },
        adapter: { task: "ner" as "seq-cls" },
      }),
    ).toMatch(/adapter\.task.*causal-lm, seq-cls or token-cls/);
  });
});
