/**
 * Augmentation in a job, on Dawn with a small Llama: new rows come from the training split only (validation and
 * test are the rows a plain run holds), each traced to its source row and counted in the cleaning report; they
 * rewrite only the varying part (a classification text, an instruction prompt's input) and never the answer; the
 * same seed makes the same rows; paraphrases carry the likelihoods they were filtered on; and what cannot be
 * augmented is refused by name.
 */
import { describe, expect, it } from "vitest";
import {
  augmentedRecords,
  FineTuneJob,
  JobError,
  type Example,
  type FineTuneJobInput,
} from "@webtune/core";
import { chatModelFolder } from "../../helpers/chat_model.js";
import {
  ANIMALS,
  jsonl,
  KINDS_FILES,
  runOnFiles,
} from "../../helpers/job_files.js";
import { needGpu } from "../../helpers/gpu.js";

const LEXICON = [
  "# test lexicon",
  "cat\tfeline",
  "dog\thound",
  "sat\tsit",
  "ran\tsprinted",
  "slept\tdozed",
  "red\tcrimson",
].join("\n");
const FILES: Record<string, string> = {
  ...KINDS_FILES,
  "syn.tsv": LEXICON,
  "colours.jsonl": jsonl(
    ANIMALS.flatMap((a, i) =>
      ["red", "blue", "green"].map((c, j) => ({
        prompt: `Q: the ${c} ${a}\nA:`,
        completion: ` ${["small", "big", "old"][(i + j) % 3]}`,
      })),
    ),
  ),
  "prose.jsonl": jsonl([{ text: "a mat is a thing." }, { text: "a rug too." }]),
};
const model = chatModelFolder();
const ONE_STEP = { training: { maxSteps: 1 } } as const;

const run = (input: FineTuneJobInput) =>
  runOnFiles(FILES, model, {
    ...ONE_STEP,
    ...input,
    evaluation: { scoreBase: false, ...input.evaluation },
  });

const keys = (rows: Example[]) => rows.map((e) => e.key).sort();
const words = (text: string) => text.replace(/[.,]/g, "").split(" ").sort();

describe("augmentation in a job", () => {
  it("adds traced EDA rows to the training split only, deterministically", async (ctx) => {
    await needGpu(ctx);
    const data = {
      train: "kinds.jsonl",
      test: "kinds_test.jsonl",
      valSplit: 0.25,
    };
    const plain = await run({ data });
    const augment: FineTuneJobInput["augment"] = {
      eda: 2,
      edaOps: ["swap", "synonym"],
      lexicon: "syn.tsv",
    };
    const { result, events } = await run({ data, augment });
    const task = result.splits.tasks[0]!;
    const plainTask = plain.result.splits.tasks[0]!;
    // Validation and test are exactly the plain run's rows; the real training rows are too.
    expect(keys(task.val)).toEqual(keys(plainTask.val));
    expect(keys(task.test)).toEqual(keys(plainTask.test));
    const made = task.train.filter((e) => e.origin);
    expect(keys(task.train.filter((e) => !e.origin))).toEqual(
      keys(plainTask.train),
    );
    const report = task.report.augmented!;
    expect(report.sourceRows).toBe(plainTask.train.length);
    expect(made.length).toBe(report.added);
    expect(report.added).toBeGreaterThan(plainTask.train.length);
    expect(report.eda).toBe(2 * plainTask.train.length);
    const data_ = events.find((e) => e.type === "data")!;
    expect(data_.type === "data" && data_.sizes.train).toBe(task.train.length);
    expect(data_.type === "data" && data_.report.augmented?.added).toBe(
      report.added,
    );
    // Every new row comes from a training row (never validation or test), keeps its label and rewrites its text.
    const byLine = new Map(plainTask.train.map((e) => [e.line, e]));
    const held = new Set(keys([...task.val, ...task.test]));
    for (const row of made) {
      const source = byLine.get(row.origin!.line)!;
      expect(source, `line ${row.origin!.line}`).toBeDefined();
      expect(row.label).toBe(source.label);
      expect(row.text).not.toBe(source.text);
      expect(held.has(row.key)).toBe(false);
      if (row.origin!.variant === 0)
        // swap, the first op: the same words in another order.
        expect(words(row.text!)).toEqual(words(source.text!));
      else {
        // synonym: one word replaced by its lexicon synonym.
        const before = source.text!.split(" ");
        const after = row.text!.split(" ");
        const changed = before.filter((w, i) => w !== after[i]);
        expect(changed).toHaveLength(1);
      }
    }
    const again = await run({ data, augment });
    expect(augmentedRecords(again.result.splits)).toEqual(
      augmentedRecords(result.splits),
    );
    expect(augmentedRecords(result.splits)[0]).toMatchObject({
      task: "kinds",
      kind: "eda",
      line: made[0]!.origin!.line,
      label: made[0]!.label,
    });
    for (const r of [plain.result, result, again.result]) {
      r.peft.dispose();
      r.model.dispose();
    }
  });

  it("rewrites an instruction prompt's input inside its template, never the answer", async (ctx) => {
    await needGpu(ctx);
    const { result } = await run({
      data: { train: "colours.jsonl", valSplit: 0 },
      augment: { eda: 1, edaOps: ["swap"] },
    });
    expect(result.job.data.promptTemplate).toBe("Q: the {input}\nA:");
    const task = result.splits.tasks[0]!;
    const real = new Map(
      task.train.filter((e) => !e.origin).map((e) => [e.line, e]),
    );
    const made = task.train.filter((e) => e.origin);
    expect(made.length).toBe(real.size); // "red cat" has one other order
    for (const row of made) {
      const source = real.get(row.origin!.line)!;
      expect(row.completion).toBe(source.completion);
      const [colour, animal] = source.prompt!.slice(7, -3).split(" ");
      expect(row.prompt).toBe(`Q: the ${animal} ${colour}\nA:`);
    }
    result.peft.dispose();
    result.model.dispose();
  });

  it("keeps paraphrases by their likelihood and its gain from the text, and says why the rest went", async (ctx) => {
    await needGpu(ctx);
    const data = { train: "kinds.jsonl", valSplit: 0 };
    const loose = await run({
      data,
      augment: {
        paraphrases: 2,
        paraphraseMinLogProb: -1000,
        paraphraseMinGain: -1000,
      },
    });
    const report = loose.result.splits.tasks[0]!.report.augmented!;
    expect(report.paraphrases.sampled).toBe(48);
    const rejected = Object.values(report.paraphrases.rejected).reduce(
      (a, b) => a + b,
      0,
    );
    expect(report.paraphrases.kept + rejected).toBe(48);
    // Only the screen (empty, repeats, length) can reject with thresholds this low.
    expect(report.paraphrases.rejected.unlikely).toBeUndefined();
    expect(report.paraphrases.rejected.unrelated).toBeUndefined();
    const made = augmentedRecords(loose.result.splits);
    for (const r of made) {
      expect(r.kind).toBe("paraphrase");
      expect(r.logProb).toBeLessThanOrEqual(0);
      expect(Number.isFinite(r.gain)).toBe(true);
    }
    if (made.length > 0) {
      // The strictest likelihood threshold that keeps the likeliest sample keeps no other.
      const best = Math.max(...made.map((r) => r.logProb!));
      const strict = await run({
        data,
        augment: {
          paraphrases: 2,
          paraphraseMinLogProb: best,
          paraphraseMinGain: -1000,
        },
      });
      const kept = augmentedRecords(strict.result.splits);
      expect(kept.length).toBeGreaterThan(0);
      expect(kept.every((r) => r.logProb! >= best)).toBe(true);
      const strictReport = strict.result.splits.tasks[0]!.report.augmented!;
      expect(strictReport.paraphrases.rejected.unlikely).toBe(
        report.paraphrases.kept - strictReport.paraphrases.kept,
      );
      strict.result.peft.dispose();
      strict.result.model.dispose();
    }
    loose.result.peft.dispose();
    loose.result.model.dispose();
  });

  it("refuses what it cannot augment, by name", async (ctx) => {
    await needGpu(ctx);
    expect(() =>
      FineTuneJob.from({
        model: { source: model },
        data: { train: "kinds.jsonl" },
        augment: { eda: 2 },
      }),
    ).toThrow(/augment\.edaOps has synonym and insert, which draw synonyms/);
    expect(() =>
      FineTuneJob.from({
        model: { source: model },
        data: { train: "kinds.jsonl" },
        adapter: { task: "seq-cls" },
        augment: { paraphrases: 1 },
      }),
    ).toThrow(JobError);
    await expect(
      run({
        data: { train: "prose.jsonl", valSplit: 0 },
        augment: { paraphrases: 1 },
      }),
    ).rejects.toThrow(
      /prose\.jsonl is completion data, which has no text apart from its answer/,
    );
    await expect(
      run({
        data: { train: "kinds.jsonl" },
        augment: { eda: 1, lexicon: "missing.tsv" },
      }),
    ).rejects.toThrow(/augment\.lexicon: no file missing\.tsv/);
  });
});
