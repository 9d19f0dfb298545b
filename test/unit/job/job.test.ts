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
      'job.data.train must be a training file, got "".',
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
      "job.epochs is not a field of a job (its fields: webtuneJob, method, checkpointEvery, model, data, adapter, training, evaluation).",
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
