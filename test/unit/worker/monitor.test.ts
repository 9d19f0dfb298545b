/**
 * The worker's retrieval baseline, drift check and retraining, in-thread on Dawn with the micro Llama:
 * - retrieval scores the base model (the same before and after an adapter is trained), counts test rows that are
 *   training rows, and refuses a bad k or retriever by the caller's names; Skip scoring and Stop cancel it and a
 *   drift check;
 * - monitor on the test file itself reproduces the adapter's test scores and finds no drift; on longer rows it flags
 *   the input length; a file of another format is refused naming its line;
 * - retrainOnDrift holds out 30 % of the new rows, replays the training file, scores the adapter as it was and as
 *   retrained on the same rows (Evaluate's numbers before and after), and leaves the loaded data loaded.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ConfigError,
  FormatError,
  taskMetric,
  type EvaluationResult,
  type JobEvent,
} from "@webtune/core";
import { TrainerService } from "../../../packages/worker/src/service.js";
import { chatModelFolder } from "../../helpers/chat_model.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { ANIMALS, jsonl } from "../../helpers/job_files.js";

const PLACES = ["mat", "rug", "bed"];
const row = (a: string, p: string, i: number) => ({
  text: `the ${a} sat on the ${p}`,
  label: i % 2 === 0 ? "calm" : "busy",
});
/** 24 training rows; 8 test rows, the first of them also a training row. */
const FILES = {
  "pets.jsonl": jsonl(
    ANIMALS.flatMap((a, i) => PLACES.map((p) => row(a, p, i))),
  ),
  "pets_test.jsonl": jsonl([
    row("cat", "mat", 0),
    ...ANIMALS.slice(1).map((a, i) => row(a, "box", i + 1)),
  ]),
};
/** The same task in much longer sentences: 20 rows. */
const LONGER = jsonl(
  ANIMALS.flatMap((a, i) =>
    ["box", "sofa", "chair"].map((p) => ({
      ...row(a, p, i),
      text: `late one evening the old and rather sleepy ${a} sat down on the ${p} by the open window`,
    })),
  ).slice(0, 20),
);

/** A result's numbers alone, as the worker sends them where rows are not needed. */
function withoutRows(r: EvaluationResult): EvaluationResult {
  const copy = { ...r };
  delete copy.rowScores;
  return copy;
}

const service = new TrainerService();
const model = chatModelFolder();
const job = {
  model: { source: model },
  data: { train: "pets.jsonl", test: "pets_test.jsonl", valSplit: 0 },
  training: { learningRate: 5e-2, batchSize: 4, maxSteps: 4, seed: 1 },
};
beforeAll(async () => {
  if (!(await startGpu())) return;
  await service.loadModel(model);
});
afterAll(() => service.dispose());

/** The tuned adapter's test scores with their rows, as the page keeps them from a job's tuned test event. */
let tuned: EvaluationResult;

describe("TrainerService.retrieval", () => {
  it("scores the base model with each test row's nearest training rows, adapters off", async (ctx) => {
    await needGpu(ctx);
    await service.loadData(FILES["pets.jsonl"], {
      source: "pets.jsonl",
      valSplit: 0,
      seed: 1,
      test: { input: FILES["pets_test.jsonl"], source: "pets_test.jsonl" },
    });
    const before = await service.retrieval(2);
    const hidden = await service.retrieval(2, { retriever: "hidden" });
    await service.runJob(job, FILES);
    tuned = await service.evaluate("test", { keepRows: true });
    // The same splits, the base model alone: the adapter now active changes nothing.
    expect(await service.retrieval(2)).toEqual(before);
    expect(await service.retrieval(2, { retriever: "hidden" })).toEqual(hidden);
    expect(before.report.retriever).toBe("bm25");
    expect(hidden.report.retriever).toBe("hidden");
    for (const r of [before, hidden]) {
      expect(r.result.rows).toBe(8);
      expect(r.report.shots.every((s) => s.length === 2)).toBe(true);
      // "the cat sat on the mat" is a training row: a leak, at line 1 of the test file.
      expect(r.report.duplicates).toBe(1);
      expect(r.report.duplicateLines).toEqual([1]);
    }
    expect(
      (await service.retrieval(1, { maxRows: 3 })).report.shots,
    ).toHaveLength(3);

    await expect(
      service.retrieval(99, { names: { k: 'the retrieval "k"' } }),
    ).rejects.toThrow(/the retrieval "k" is 99, but the train split has 24/);
    await expect(
      service.retrieval(2, { retriever: "tfidf" as "bm25" }),
    ).rejects.toThrow(ConfigError);
  });
});

describe("cancelling", () => {
  it("Skip scoring cancels the hidden retriever's embedding and a drift check", async (ctx) => {
    await needGpu(ctx);
    const retrieval = service.retrieval(2, { retriever: "hidden" });
    await service.skipScoring();
    await expect(retrieval).rejects.toMatchObject({ name: "AbortError" });
    const check = service.monitor(
      { name: "again.jsonl", text: FILES["pets_test.jsonl"] },
      { rowScores: tuned.rowScores!, metric: "loss" },
    );
    await service.stop();
    await expect(check).rejects.toMatchObject({ name: "AbortError" });
    // Nothing is left half-done: the next call scores as before.
    expect((await service.retrieval(1, { maxRows: 2 })).result.rows).toBe(2);
  });
});

describe("TrainerService.monitor", () => {
  it("finds no drift on the test rows themselves, and their scores are Evaluate's", async (ctx) => {
    await needGpu(ctx);
    const baseline = { rowScores: tuned.rowScores!, metric: taskMetric(tuned) };
    expect(baseline.metric).toBe("accuracy");
    const same = await service.monitor(
      { name: "again.jsonl", text: FILES["pets_test.jsonl"] },
      baseline,
    );
    expect(same.current).toEqual(withoutRows(tuned));
    expect(same.report.metric.delta).toBe(0);
    expect(same.report.inputLength.ks.d).toBe(0);
    expect(same.report.flags).toEqual([]);
    expect(same.read).toMatchObject({ total: 8, kept: 8 });
    expect(same.format).toBe("classification");
  });

  it("flags longer inputs, scores at most maxRows, and names a row of another format", async (ctx) => {
    await needGpu(ctx);
    const baseline = { rowScores: tuned.rowScores!, metric: "loss" as const };
    const longer = await service.monitor(
      { name: "longer.jsonl", text: LONGER },
      baseline,
      { maxRows: 16 },
    );
    expect(longer.report.rows).toEqual({ baseline: 8, current: 16 });
    expect(longer.report.inputLength.ks.d).toBe(1);
    expect(longer.report.flags.join("\n")).toMatch(/^input length moved/m);
    expect(longer.report.driftFlagged).toBe(true);

    const wrong = service.monitor(
      {
        name: "dates.jsonl",
        text: jsonl([{ prompt: "Date: 1748-03-21", completion: " 1748" }]),
      },
      baseline,
    );
    await expect(wrong).rejects.toThrow(FormatError);
    await expect(wrong).rejects.toThrow(/dates\.jsonl.*line 1/);
  });
});

describe("TrainerService.retrainOnDrift", () => {
  it("continues the adapter on the new rows with replay, and scores it before and after on the same rows", async (ctx) => {
    await needGpu(ctx);
    const before = await service.evaluate("test", { keepRows: true });
    const events: JobEvent[] = [];
    const outcome = await service.retrainOnDrift(
      job,
      { name: "longer.jsonl", text: LONGER },
      FILES,
      { metric: "accuracy" },
      (e) => events.push(e),
    );
    // 30 % of 20 rows held out (stratified by label), the other 14 trained on; the 24 training rows replayed.
    expect(outcome.sizes).toEqual({ train: 14, heldOut: 6, replay: 24 });
    const data = events.find((e) => e.type === "data")!;
    expect(data).toMatchObject({ replayRows: 24, sizes: { test: 6 } });
    expect(outcome.job.replay).toEqual({ source: "pets.jsonl", ratio: 0.25 });
    expect(outcome.job.evaluation.scoreBase).toBe(false);
    expect(outcome.train.steps).toBe(4);

    const heldOut = outcome.heldOut!;
    expect(heldOut.rows).toBe(6);
    expect(heldOut.after.loss).not.toBeCloseTo(heldOut.before.loss, 4);
    expect(heldOut.change.delta).toBeCloseTo(
      heldOut.after.accuracy! - heldOut.before.accuracy!,
      12,
    );
    // On the loaded test rows: "before" is the adapter as Evaluate scored it, "after" as Evaluate scores it now.
    const test = outcome.test!;
    expect(test.before).toEqual(withoutRows(before));
    expect(test.after).toEqual(
      await service.evaluate("test", { keepRows: true }),
    );
    expect(test.after.rows).toBe(8);
    expect(
      events.filter(
        (e) => e.type === "phase" && e.phase === "checking retention",
      ),
    ).toHaveLength(2);
    // The scratch adapter is gone; the loaded data is still the task's.
    expect((await service.evaluate("test")).rows).toBe(8);
  });

  it("refuses a new file named as the training file it replays", async (ctx) => {
    await needGpu(ctx);
    await expect(
      service.retrainOnDrift(job, { name: "pets.jsonl", text: LONGER }, FILES, {
        metric: "accuracy",
      }),
    ).rejects.toThrow(/named pets\.jsonl, as the loaded training file/);
  });
});
