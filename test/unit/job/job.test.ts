/**
 * FineTuneJob as data (no GPU): defaults filled in field by field, a JSON round trip, every bad field named at
 * once in the surface's words, a misspelt field refused with the near name, and the prompt template derived from
 * an instruction dataset's prompts.
 */
import { describe, expect, it } from "vitest";
import {
  applyPromptTemplate,
  derivePromptTemplate,
  FineTuneJob,
  fitsPromptTemplate,
  JOB_DEFAULTS,
  JobError,
} from "@webtune/core";

const minimal = { model: { source: "m" }, data: { train: "train.jsonl" } };

function problemsOf(input: unknown, names = {}): string[] {
  try {
    FineTuneJob.from(input, names);
  } catch (e) {
    expect(e).toBeInstanceOf(JobError);
    return (e as JobError).problems.map((p) => p.message);
  }
  throw new Error("the job was accepted");
}

describe("FineTuneJob", () => {
  it("fills every field it is not given from JOB_DEFAULTS, and survives JSON", () => {
    const job = FineTuneJob.from(minimal);
    expect(job.toJSON()).toEqual({
      webtuneJob: 1,
      model: { source: "m", ...JOB_DEFAULTS.model },
      data: { train: "train.jsonl", ...JOB_DEFAULTS.data },
      method: "lora",
      adapter: JOB_DEFAULTS.adapter,
      training: JOB_DEFAULTS.training,
      replay: { source: null, ratio: 0.25 },
      augment: JOB_DEFAULTS.augment,
      evaluation: JOB_DEFAULTS.evaluation,
      checkpointEvery: null,
    });
    const again = FineTuneJob.from(JSON.parse(JSON.stringify(job)));
    expect(again.toJSON()).toEqual(job.toJSON());
    // Given fields win, section by section; the rest of a section keeps its defaults.
    const tuned = job.with({ training: { learningRate: 3e-3 } });
    expect(tuned.training).toEqual({
      ...JOB_DEFAULTS.training,
      learningRate: 3e-3,
    });
    expect(job.training.learningRate).toBe(JOB_DEFAULTS.training.learningRate);
  });

  it("names every bad field at once, in the surface's own words", () => {
    const input = {
      model: { source: "m", dtype: "bfloat16" },
      data: { train: "", valSplit: 0.7, testSplit: 0.5 },
      adapter: { r: 0, targetModules: [] },
      training: { learningRate: 0, batchSize: 2.5, maxSteps: 0 },
      evaluation: { testRows: -1 },
    };
    expect(problemsOf(input)).toEqual([
      'job.model.dtype must be float32 or float16, got "bfloat16".',
      'job.data.train must be a training file, or several different ones, got "".',
      "job.adapter.r must be a rank of at least 1, got 0.",
      'job.adapter.targetModules must be module names (e.g. ["q_proj", "v_proj"]) or "all-linear", got [].',
      "job.training.learningRate must be above 0, e.g. 2e-4, got 0.",
      "job.training.batchSize must be a whole number ≥ 1, got 2.5.",
      "job.training.maxSteps must be a whole number ≥ 1 or none, got 0.",
      "job.evaluation.testRows must be a whole number ≥ 1 or none, got -1.",
      "job.data.valSplit and job.data.testSplit must sum to less than 1, got 0.7 and 0.5.",
    ]);
    expect(
      problemsOf(
        { ...minimal, training: { learningRate: -1 } },
        { "training.learningRate": '"learning rate"' },
      ),
    ).toEqual(['"learning rate" must be above 0, e.g. 2e-4, got -1.']);
  });

  it("refuses fields a job does not have, with the one that was meant", () => {
    expect(
      problemsOf({ ...minimal, training: { lerningRate: 1e-3 }, epochs: 3 }),
    ).toEqual([
      "job.epochs is not a field of a job (its fields: webtuneJob, method, checkpointEvery, model, data, adapter, training, replay, augment, evaluation).",
      "job.training.lerningRate is not a field of job.training: did you mean learningRate?",
    ]);
    expect(problemsOf([1, 2])).toEqual([
      "a job must be a JSON object, got [1, 2].",
    ]);
    expect(problemsOf({ ...minimal, webtuneJob: 2 })).toEqual([
      "job.webtuneJob must be 1 (the only version of the job format), got 2.",
    ]);
  });

  it("refuses fields that are fine alone and wrong together", () => {
    expect(
      problemsOf({
        model: { source: "m", doubleQuant: true },
        data: { train: "t", test: "x", testSplit: 0.1, valSplit: 0 },
        evaluation: { earlyStopPatience: 2 },
      }),
    ).toEqual([
      "give job.data.test or job.data.testSplit, not both.",
      "job.model.doubleQuant quantizes the block scales of int8 or nf4 storage: set job.model.quantize too.",
      "job.evaluation.earlyStopPatience watches the validation loss: give job.data.valSplit above 0.",
    ]);
    expect(
      problemsOf({
        ...minimal,
        method: "full",
        model: { source: "m", quantize: "nf4" },
      }),
    ).toEqual([
      "full fine-tuning trains every weight in float32: leave job.model.quantize out, or train an adapter (QLoRA).",
    ]);
  });
});

describe("jobs against forgetting", () => {
  it("take several training files, a replay file and an adapter to continue, and survive JSON", () => {
    const job = FineTuneJob.from({
      ...minimal,
      data: {
        train: ["dates/train.jsonl", "fortunes/train.jsonl"],
        test: ["dates/test.jsonl", "fortunes/test.jsonl"],
        mix: [0.5, 0.5],
      },
      adapter: { continueFrom: "runs/dates" },
      replay: { source: "replay.jsonl", ratio: 0.2 },
      evaluation: { retention: ["kjv/test.jsonl"] },
    });
    expect(job.replay).toEqual({ source: "replay.jsonl", ratio: 0.2 });
    expect(FineTuneJob.from(JSON.parse(JSON.stringify(job))).toJSON()).toEqual(
      job.toJSON(),
    );
    expect(job.with({ replay: { ratio: 0.5 } }).replay).toEqual({
      source: "replay.jsonl",
      ratio: 0.5,
    });
  });

  it("name what is wrong with them, by the surface's words", () => {
    expect(
      problemsOf({
        ...minimal,
        data: { train: ["a.jsonl", "a.jsonl"], mixTemperature: 0 },
        replay: { source: "", ratio: 1 },
        evaluation: { retention: [] },
      }),
    ).toEqual([
      'job.data.train must be a training file, or several different ones, got ["a.jsonl", "a.jsonl"].',
      "job.data.mixTemperature must be above 0 (1: by size), got 0.",
      "job.evaluation.retention must be test files of earlier tasks, or none, got [].",
      'job.replay.source must be a file of text to replay, or none, got "".',
      "job.replay.ratio must be a share of each batch in (0, 1), e.g. 0.25, got 1.",
    ]);
    expect(
      problemsOf(
        {
          ...minimal,
          data: { train: ["a", "b"], test: "t", mix: [1, 2, 3] },
        },
        { "data.test": "--test", "data.mix": "--mix" },
      ),
    ).toEqual([
      "--test must name one test file per training file (2), in the same order.",
      "--mix gives 3 shares for 2 training files: give one per training file.",
    ]);
    expect(
      problemsOf({
        ...minimal,
        data: { train: "a", mix: [1, -1] },
        method: "full",
        adapter: { continueFrom: "runs/a" },
        replay: { sourse: "x" },
      }),
    ).toEqual([
      "job.replay.sourse is not a field of job.replay: did you mean source?",
      "job.data.mix must be shares above 0, one per training file, or none, got [1, -1].",
      "job.data.mix gives 2 shares for 1 training file: give one per training file, or name several training files to mix.",
      "job.adapter.continueFrom continues a LoRA adapter: leave it out for full fine-tuning.",
    ]);
  });
});

describe("prompt templates", () => {
  const dates = [
    "Date: 1980-01-23\nWritten out:",
    "Date: 2060-10-25\nWritten out:",
    "Date: 1911-04-28\nWritten out:",
  ];

  it("are what every training prompt shares around the part that varies", () => {
    expect(derivePromptTemplate(dates)).toBe("Date: {input}\nWritten out:");
    // Inputs that share their first and last characters keep them: the template stops at whitespace.
    expect(
      derivePromptTemplate(["Q: 1915 A:", "Q: 1985 A:", "Q: 1925 A:"]),
    ).toBe("Q: {input} A:");
    expect(derivePromptTemplate(["alpha", "beta"])).toBeNull();
    expect(derivePromptTemplate(["Date: 1"])).toBeNull();
  });

  it("put an input in its place, and tell a prompt already in their shape", () => {
    const template = "Date: {input}\nWritten out:";
    expect(applyPromptTemplate(template, "2031-02-03")).toBe(
      "Date: 2031-02-03\nWritten out:",
    );
    expect(fitsPromptTemplate(template, "Date: 2031-02-03\nWritten out:")).toBe(
      true,
    );
    expect(fitsPromptTemplate(template, "Date: 2031-02-03")).toBe(false);
  });
});
