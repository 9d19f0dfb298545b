/**
 * One recipe for every surface (no GPU): `webtune train`'s flags and the worker's job API build the identical
 * FineTuneJob for the same settings, defaults included; a --job file round-trips through --print-job, flags
 * override it, and its errors name both the flag and the file's field.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { JobError } from "@webtune/core";
import { buildJob } from "../../../packages/cli/src/job_flags.js";
import { TrainerService } from "../../../packages/worker/src/service.js";
import { defaultValues, settingsJob } from "../../../demo/src/settings.js";

const worker = new TrainerService();

describe("the CLI and the worker build one job", () => {
  it("with nothing but a model and data: the same defaults", async () => {
    const cli = await buildJob({ model: "m", data: "train.jsonl" });
    const fromWorker = await worker.checkJob({
      model: { source: "m" },
      data: { train: "train.jsonl" },
    });
    expect(cli.toJSON()).toEqual(fromWorker);
  });

  it("and the demo's form, untouched, describes that same job", async () => {
    const form = settingsJob(defaultValues());
    const fromDemo = await worker.checkJob({
      ...form,
      model: { source: "m" },
      data: { ...form.data, train: "train.jsonl" },
    });
    expect(fromDemo).toEqual(
      (await buildJob({ model: "m", data: "train.jsonl" })).toJSON(),
    );
    // A changed field is read back as the job's value: "0" is "none" for the optional counts.
    const changed = settingsJob({
      ...defaultValues(),
      lr: "0.003",
      maxSteps: "0",
      targets: "q_proj, v_proj",
    });
    expect(changed.training).toMatchObject({
      learningRate: 0.003,
      maxSteps: null,
    });
    expect(changed.adapter!.targetModules).toEqual(["q_proj", "v_proj"]);
  });

  it("with every setting given", async () => {
    const cli = await buildJob({
      model: "m",
      dtype: "float16",
      quantize: "nf4",
      doubleQuant: true,
      data: "train.jsonl",
      test: "test.jsonl",
      format: "instruction",
      seqLen: 128,
      valSplit: 0.2,
      skipBadRows: true,
      promptTemplate: "Q: {input}\\nA:",
      r: 4,
      alpha: 8,
      dropout: 0.1,
      target: "q_proj, v_proj",
      rslora: true,
      lr: 1e-3,
      schedule: "linear",
      warmup: 5,
      batch: 4,
      gradAccum: 2,
      epochs: 3,
      maxSteps: 40,
      seed: 7,
      gradientCheckpointing: true,
      memoryBudget: 2 ** 30,
      evalEvery: 10,
      valRows: 16,
      earlyStop: 2,
      testRows: 50,
      skipBaseScore: true,
      reference: "ref.jsonl",
      checkpointEvery: 20,
    });
    const fromWorker = await worker.checkJob({
      model: {
        source: "m",
        dtype: "float16",
        quantize: "nf4",
        doubleQuant: true,
      },
      data: {
        train: "train.jsonl",
        test: "test.jsonl",
        format: "instruction",
        maxLength: 128,
        valSplit: 0.2,
        skipBadRows: true,
        promptTemplate: "Q: {input}\nA:",
      },
      adapter: {
        r: 4,
        alpha: 8,
        dropout: 0.1,
        targetModules: ["q_proj", "v_proj"],
        rslora: true,
      },
      training: {
        learningRate: 1e-3,
        schedule: "linear",
        warmupSteps: 5,
        batchSize: 4,
        gradAccum: 2,
        epochs: 3,
        maxSteps: 40,
        seed: 7,
        gradientCheckpointing: true,
        memoryBudget: 2 ** 30,
      },
      evaluation: {
        evalEvery: 10,
        valRows: 16,
        earlyStopPatience: 2,
        testRows: 50,
        scoreBase: false,
        reference: "ref.jsonl",
      },
      checkpointEvery: 20,
    });
    expect(cli.toJSON()).toEqual(fromWorker);
  });
});

describe("the flags against forgetting", () => {
  it("give the worker's job: several files, their mix, replay, few-shot, a continued adapter", async () => {
    const cli = await buildJob({
      model: "m",
      data: "a/train.jsonl, b/train.jsonl",
      test: "a/test.jsonl,b/test.jsonl",
      mix: "0.7,0.3",
      replay: "replay.jsonl",
      replayRatio: 0.2,
      fewShot: 4,
      continueFrom: "runs/a",
      retention: "a/test.jsonl",
    });
    const fromWorker = await worker.checkJob({
      model: { source: "m" },
      data: {
        train: ["a/train.jsonl", "b/train.jsonl"],
        test: ["a/test.jsonl", "b/test.jsonl"],
        mix: [0.7, 0.3],
      },
      adapter: { continueFrom: "runs/a" },
      replay: { source: "replay.jsonl", ratio: 0.2 },
      evaluation: { fewShot: 4, retention: "a/test.jsonl" },
    });
    expect(cli.toJSON()).toEqual(fromWorker);
    await expect(
      buildJob({ model: "m", data: "a,b", mix: "0.5,x", replayRatio: 2 }),
    ).rejects.toThrow(
      /--mix must be shares above 0, one per training file, or none, got \[0\.5, NaN\][^]*--replay-ratio must be a share of each batch in \(0, 1\)/,
    );
  });

  it("give the worker's job: augmentation, with the shipped lexicon unless told another; bad kinds named", async () => {
    const cli = await buildJob({
      model: "m",
      data: "train.jsonl",
      augment: "eda=4,paraphrase",
      augmentOps: "swap, delete",
      augmentAlpha: 0.2,
      paraphraseMinGain: 0.5,
      paraphrasePrompt: "{text}\\nSaid again:",
    });
    expect(cli.augment.lexicon).toMatch(
      /demo\/public\/data\/lexicon\/synonyms\.tsv$/,
    );
    const fromWorker = await worker.checkJob({
      model: { source: "m" },
      data: { train: "train.jsonl" },
      augment: {
        eda: 4,
        paraphrases: 1,
        edaOps: ["swap", "delete"],
        edaAlpha: 0.2,
        lexicon: cli.augment.lexicon,
        paraphraseMinGain: 0.5,
        paraphrasePrompt: "{text}\nSaid again:",
      },
    });
    expect(cli.toJSON()).toEqual(fromWorker);
    // The demo's field turns the lexicon on with its count.
    const form = settingsJob({ ...defaultValues(), augmentEda: "2" });
    expect(form.augment).toMatchObject({
      eda: 2,
      lexicon: "data/lexicon/synonyms.tsv",
    });
    expect(settingsJob(defaultValues()).augment).toMatchObject({
      eda: 0,
      lexicon: null,
    });
    await expect(
      buildJob({ model: "m", data: "t.jsonl", augment: "eda=2,back=1" }),
    ).rejects.toThrow(/--augment eda=2,back=1: "back=1" is not kind=count/);
    await expect(
      buildJob({
        model: "m",
        data: "t.jsonl",
        augment: "eda=2",
        augmentOps: "swap,shout",
        augmentAlpha: 0,
      }),
    ).rejects.toThrow(
      /--augment-ops must be some of synonym, insert, swap, delete, each once[^]*--augment-alpha must be a share of words in \(0, 1\]/,
    );
  });

  it("score the earlier stage's test file when continuing its adapter, unless told other files", async () => {
    const stage = mkdtempSync(join(tmpdir(), "webtune-stage-"));
    writeFileSync(
      join(stage, "webtune_job.json"),
      JSON.stringify({ data: { train: "a.jsonl", test: "a_test.jsonl" } }),
    );
    const job = await buildJob({
      model: "m",
      data: "b.jsonl",
      continueFrom: stage,
    });
    expect(job.evaluation.retention).toBe("a_test.jsonl");
    const told = await buildJob({
      model: "m",
      data: "b.jsonl",
      continueFrom: stage,
      retention: "other.jsonl",
    });
    expect(told.evaluation.retention).toBe("other.jsonl");
    const bare = mkdtempSync(join(tmpdir(), "webtune-bare-"));
    const none = await buildJob({
      model: "m",
      data: "b.jsonl",
      continueFrom: bare,
    });
    expect(none.evaluation.retention).toBeNull();
  });
});

describe("webtune train --job", () => {
  const folder = mkdtempSync(join(tmpdir(), "webtune-job-"));
  const file = (name: string, job: unknown) => {
    const path = join(folder, name);
    writeFileSync(path, JSON.stringify(job));
    return path;
  };

  it("runs what --print-job wrote, and the flags given override its fields", async () => {
    const printed = await buildJob({
      model: "m",
      data: "d.jsonl",
      lr: 1e-3,
      r: 4,
    });
    const path = file("job.json", printed);
    expect((await buildJob({}, path)).toJSON()).toEqual(printed.toJSON());
    const changed = await buildJob({ lr: 5e-3, target: "all-linear" }, path);
    expect(changed.training.learningRate).toBe(5e-3);
    expect(changed.adapter.r).toBe(4);
    expect(changed.adapter.targetModules).toBe("all-linear");
  });

  it("names the flag and the file's field of a bad value, and refuses what is not a job", async () => {
    const path = file("bad.json", {
      model: { source: "m" },
      data: { train: "d" },
      training: { learningRate: "fast" },
    });
    await expect(buildJob({}, path)).rejects.toThrow(JobError);
    await expect(buildJob({}, path)).rejects.toThrow(
      `--lr (training.learningRate in ${path}) must be above 0, e.g. 2e-4, got "fast".`,
    );
    await expect(buildJob({}, file("list.json", [1]))).rejects.toThrow(
      /must hold a JSON object/,
    );
    await expect(buildJob({}, join(folder, "none.json"))).rejects.toThrow(
      /cannot read --job .*none\.json: no such file/,
    );
  });
});
