/**
 * A sweep run on a tiny model (Dawn): trial-rungs stop at exactly the rung's step, a promoted trial resumed from its
 * rung checkpoints ends with the same adapter as its job run straight through, only the best trial is scored on
 * the test rows, and an interrupted sweep goes on from its records without training a finished trial-rung again.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import {
  directoryStore,
  FineTuneJob,
  runSweep,
  sweepTrials,
  type JobEvent,
  type LoraModel,
  type SweepRecord,
  type SweepRunOptions,
} from "@webtune/core";
import { chatModelFolder } from "../../helpers/chat_model.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";

const rows = ["cat", "dog", "bird", "fox", "cow", "pig"]
  .flatMap((a) =>
    ["mat", "rug", "bed", "box"].map((p) =>
      JSON.stringify({ text: `the ${a} sat on the ${p}.` }),
    ),
  )
  .join("\n");
const testRows = ["owl", "hen"]
  .map((a) => JSON.stringify({ text: `the ${a} sat on the mat.` }))
  .join("\n");
const files: Record<string, string> = {
  "animals.jsonl": rows,
  "test.jsonl": testRows,
};
const readFile = async (path: string) => new TextEncoder().encode(files[path]);

let model: string;
beforeAll(async () => {
  await startGpu();
  model = chatModelFolder();
});

/** 18 training rows in batches of 6, 4 epochs: 12 steps, which the sweep learns from the run. */
const job = () =>
  FineTuneJob.from({
    model: { source: model },
    data: { train: "animals.jsonl", test: "test.jsonl", valSplit: 0.25 },
    adapter: { r: 4 },
    training: { batchSize: 6, epochs: 4, seed: 1 },
    // The job scores a few-shot baseline too: the best job's own run does, once; trials do not.
    evaluation: { evalEvery: null, fewShot: 2 },
  });

function sweep(more: Partial<SweepRunOptions> = {}) {
  const dir = mkdtempSync(join(tmpdir(), "webtune-sweep-"));
  const trials = sweepTrials(
    job(),
    [
      {
        name: "lr",
        field: "training.learningRate",
        values: [1e-3, 2e-2, 5e-2, 1e-1],
      },
    ],
    { kind: "grid" },
  );
  const starts: string[] = [];
  const steps: Record<string, number> = {};
  const events: JobEvent[] = [];
  const options: SweepRunOptions = {
    trials,
    halving: { eta: 2, minSteps: 3 },
    readFile,
    checkpoints: (id) => directoryStore(join(dir, id)),
    onStart: (s) => starts.push(`${s.trial.id}@${s.rung} ${s.from}→${s.until}`),
    onEvent: (trial, e) => {
      events.push(e);
      if (e.type === "step") steps[trial.id] = (steps[trial.id] ?? 0) + 1;
    },
    ...more,
  };
  return { options, starts, steps, events };
}

async function weights(peft: LoraModel): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const t of peft.namedTrainableVariables())
    out.set(t.key, (await t.variable.data()) as Float32Array);
  return out;
}

describe("runSweep", () => {
  it("stops trials at their rung's step, resumes the promoted ones to the same adapter as a straight run, and tests only the best", async (ctx) => {
    await needGpu(ctx);
    const s = sweep();
    const result = await runSweep(s.options);
    // 4 trials to step 3, the best 2 on to 6, the best of those alone straight to 12.
    expect(s.starts).toHaveLength(7);
    expect(s.starts.slice(0, 4)).toEqual([
      "t00@0 0→3",
      "t01@0 0→3",
      "t02@0 0→3",
      "t03@0 0→3",
    ]);
    expect(s.starts.slice(4).map((x) => x.slice(3))).toEqual([
      "@1 3→6",
      "@1 3→6",
      "@2 6→12",
    ]);
    const byRung = (rung: number) =>
      result.records.filter((r) => r.rung === rung);
    expect(byRung(0).map((r) => [r.steps, r.total, r.status])).toEqual(
      Array(4).fill([3, 12, "paused"]),
    );
    expect(byRung(1).every((r) => r.steps === 6)).toBe(true);
    expect(byRung(2)).toMatchObject([{ steps: 12, status: "finished" }]);
    // Completion data: the metric is the validation loss, and the lowest went on.
    const rung0 = [...byRung(0)].sort((a, b) => a.value! - b.value!);
    expect(rung0[0]!.metric).toBe("loss");
    expect(
      byRung(1)
        .map((r) => r.trial)
        .sort(),
    ).toEqual(
      rung0
        .slice(0, 2)
        .map((r) => r.trial)
        .sort(),
    );
    const best = result.best!;
    expect(best.record).toEqual(byRung(2)[0]);
    // Each trial-rung trained exactly its own steps: 4×3 + 2×3 + 6; the test run resumed at step 12 trains none.
    expect(Object.values(s.steps).reduce((a, b) => a + b, 0)).toBe(12 + 6 + 6);
    // Trials score no test rows; the best job's own run scores base and tuned once.
    const tests = s.events.filter((e) => e.type === "test");
    expect(tests.map((e) => e.phase).sort()).toEqual([
      "base",
      "few-shot",
      "tuned",
    ]);
    expect(best.run!.summary).toMatchObject({ steps: 12 });
    expect(best.run!.test.tuned!.rows).toBe(2);

    const straight = await best.trial.job.run({
      readFile,
    });
    const [a, b] = [
      await weights(best.run!.peft),
      await weights(straight.peft),
    ];
    expect([...a.keys()]).toEqual([...b.keys()]);
    let worst = 0;
    for (const [key, x] of a) {
      const y = b.get(key)!;
      x.forEach(
        (v, i) =>
          (worst = Math.max(
            worst,
            Math.abs(v - y[i]!) / Math.max(Math.abs(v), 1e-3),
          )),
      );
    }
    expect(worst).toBeLessThan(1e-4);
    expect(best.run!.test.tuned!.loss).toBeCloseTo(
      straight.test.tuned!.loss,
      4,
    );
    for (const run of [best.run!, straight]) {
      run.peft.dispose();
      run.model.dispose();
    }
  });

  it("goes on from the records of an interrupted sweep, training no finished trial-rung again", async (ctx) => {
    await needGpu(ctx);
    const first = sweep({ maxRuns: 5 });
    const part = await runSweep(first.options);
    expect(part.best).toBeUndefined();
    expect(part.records).toHaveLength(5);
    // Killed after the 5th trial-rung saved its checkpoint but before its record was written.
    const kept: SweepRecord[] = part.records.slice(0, 4);
    const lost = part.records[4]!;
    const again = sweep({ records: kept, scoreBest: false });
    const result = await runSweep({
      ...again.options,
      checkpoints: first.options.checkpoints,
    });
    expect(again.starts[0]).toBe(`${lost.trial}@1 6→6`);
    // That trial-rung is scored from its checkpoint, training nothing, to the same record.
    expect(again.steps[lost.trial] ?? 0).toBe(
      lost.trial === result.best!.trial.id ? 6 : 0,
    );
    expect(result.records[4]).toMatchObject({
      trial: lost.trial,
      steps: 6,
      value: lost.value,
    });
    expect(result.records).toHaveLength(7);
    const pairs = result.records.map((r) => `${r.trial}@${r.rung}`);
    expect(new Set(pairs).size).toBe(pairs.length);
    expect(result.best!.run).toBeUndefined();
  });
});
