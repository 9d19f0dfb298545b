/**
 * `webtune sweep` end to end on a tiny model (Dawn in Node): a 2×2 grid with successive halving, interrupted after
 * three trial-rungs and run again, which goes on without redoing any; the files it leaves (sweep.jsonl, the best job,
 * the best adapter, the test line); a finished sweep run again trains nothing; another sweep in the same --out and
 * an unknown parameter are refused with one line.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { chatModelFolder } from "../helpers/chat_model.js";

const exec = promisify(execFile);
const root = fileURLToPath(new URL("../..", import.meta.url));
const bin = join(root, "packages/cli/bin/webtune.js");

async function webtune(
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [bin, ...args], {
      cwd: root,
      maxBuffer: 1 << 24,
    });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

const work = mkdtempSync(join(tmpdir(), "webtune-sweep-cli-"));
let jobFile: string;

beforeAll(async () => {
  await exec("npm", ["run", "build", "--silent"], { cwd: root });
  const pets = ["cat", "dog", "bird", "fish"];
  const farm = ["cow", "pig", "hen", "goat"];
  const places = ["mat", "rug", "bed", "box", "hill", "log"];
  const row = (a: string, p: string) =>
    JSON.stringify({
      text: `the ${a} sat on the ${p}.`,
      label: pets.includes(a) ? "pet" : "farm",
    });
  const train = [...pets, ...farm].flatMap((a) =>
    places.slice(0, 5).map((p) => row(a, p)),
  );
  const test = [...pets, ...farm].map((a) => row(a, places[5]!));
  writeFileSync(join(work, "train.jsonl"), `${train.join("\n")}\n`);
  writeFileSync(join(work, "test.jsonl"), `${test.join("\n")}\n`);
  jobFile = join(work, "job.json");
  writeFileSync(
    jobFile,
    JSON.stringify({
      model: { source: chatModelFolder() },
      data: {
        train: join(work, "train.jsonl"),
        test: join(work, "test.jsonl"),
        valSplit: 0.25,
      },
      training: { batchSize: 6, maxSteps: 8, seed: 1 },
      evaluation: { evalEvery: null },
    }),
  );
});

type Line = Record<string, unknown> & { type: string };
const log = (out: string): Line[] =>
  readFileSync(join(out, "sweep.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Line);

describe("webtune sweep", () => {
  it("runs a 2×2 grid with halving, goes on after an interruption without redoing a trial-rung, and writes the best job, adapter and test scores", async () => {
    const out = join(work, "sweep");
    const args = [
      "sweep",
      "--job",
      jobFile,
      "--grid",
      "lr=1e-2,5e-2",
      "r=2,4",
      "--min-steps",
      "2",
      "--eta",
      "2",
      "--out",
      out,
    ];
    const first = await webtune(...args, "--max-runs", "3");
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(
      /stopped after 3 trial-rungs \(--max-runs\); run the same command again/,
    );
    expect(log(out).map((l) => l.type)).toEqual([
      "sweep",
      "trial",
      "trial",
      "trial",
    ]);

    const second = await webtune(...args);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toMatch(/3 trial-rungs done before/);
    // Only the 4th trial's first rung, then the rungs after: nothing is trained twice.
    const starts = [
      ...second.stderr.matchAll(/^(t\d+) \(.*\), rung (\d): steps/gm),
    ].map((m) => `${m[1]}@${m[2]}`);
    expect(starts[0]).toBe("t03@0");
    expect(starts).toHaveLength(4);
    const lines = log(out);
    const trials = lines.filter((l) => l.type === "trial");
    // 4 trials to step 2, the best 2 to step 4, the best of those straight to its 8 steps.
    expect(trials.map((t) => [t.rung, t.steps])).toEqual([
      [0, 2],
      [0, 2],
      [0, 2],
      [0, 2],
      [1, 4],
      [1, 4],
      [2, 8],
    ]);
    const keys = trials.map((t) => `${String(t.trial)}@${String(t.rung)}`);
    expect(new Set(keys).size).toBe(keys.length);
    expect(trials[0]).toMatchObject({
      trial: "t00",
      params: { lr: 0.01, r: 2 },
      metric: "accuracy",
      status: "paused",
    });
    for (const t of trials) {
      expect(t.value).toBeTypeOf("number");
      expect(t.valLoss).toBeTypeOf("number");
      expect(t.wallMs).toBeTypeOf("number");
    }
    const best = trials.at(-1)!;
    expect(best.status).toBe("finished");
    // The test rows are scored once, for the best job.
    const tests = lines.filter((l) => l.type === "test");
    expect(tests).toHaveLength(1);
    expect(tests[0]).toMatchObject({ trial: best.trial, steps: 8 });
    expect((tests[0]!.test as { rows: number }).rows).toBe(8);
    expect((tests[0]!.test as { accuracy: number }).accuracy).toBeTypeOf(
      "number",
    );

    // The table, best first, and the summary line.
    const table = second.stdout.trim().split("\n");
    expect(table[0]).toMatch(
      /^trial\s+lr\s+r\s+steps\s+val accuracy\s+val loss\s+wall s\s+status$/,
    );
    expect(table[1]).toMatch(
      new RegExp(`^${String(best.trial)} .* 8/8 .*finished$`),
    );
    expect(table.filter((l) => /pruned after rung 0/.test(l))).toHaveLength(2);
    const summary = JSON.parse(table.at(-1)!) as Record<string, unknown>;
    expect(summary).toMatchObject({ best: best.trial, params: best.params });

    // best.job.json is the best trial's whole job, which train reads.
    const bestJob = JSON.parse(
      readFileSync(join(out, "best.job.json"), "utf8"),
    ) as { training: { learningRate: number }; adapter: { r: number } };
    const params = best.params as { lr: number; r: number };
    expect(bestJob.training.learningRate).toBe(params.lr);
    expect(bestJob.adapter.r).toBe(params.r);
    const printed = await webtune(
      "train",
      "--job",
      join(out, "best.job.json"),
      "--print-job",
    );
    expect(printed.code, printed.stderr).toBe(0);
    expect(JSON.parse(printed.stdout)).toMatchObject(bestJob);
    for (const f of [
      "adapter_model.safetensors",
      "adapter_config.json",
      "webtune_job.json",
    ])
      expect(existsSync(join(out, "best", f)), f).toBe(true);
    const config = JSON.parse(
      readFileSync(join(out, "best", "adapter_config.json"), "utf8"),
    ) as { r: number };
    expect(config.r).toBe(params.r);

    // A finished sweep run again trains and scores nothing, and prints the same result.
    const third = await webtune(...args);
    expect(third.code, third.stderr).toBe(0);
    expect(third.stderr).not.toMatch(/rung \d: steps/);
    expect(third.stdout).toBe(second.stdout);
    expect(log(out)).toEqual(lines);

    // Another space in the same --out is refused, naming what differs.
    const other = await webtune(
      ...args.map((a) => (a === "lr=1e-2,5e-2" ? "lr=1e-2" : a)),
    );
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(
      /--out .* holds another sweep \(the parameters \(--grid\) differs\); pass --overwrite/,
    );
  });

  it("refuses an unknown parameter, a bad value and a range in a grid with one line naming the parameter", async () => {
    const out = join(work, "bad");
    const base = ["sweep", "--job", jobFile, "--out", out, "--grid"];
    const steps = await webtune(...base, "steps=4,8");
    expect(steps.code).toBe(1);
    expect(steps.stderr).toMatch(
      /^webtune: --grid steps=4,8: steps is not a train flag or a job field: did you mean max-steps/,
    );
    const bad = await webtune(...base, "lr=1e-2,-1");
    expect(bad.stderr).toMatch(
      /^webtune: sweep parameter lr: -1 is refused: .*must be above 0/,
    );
    const range = await webtune(...base, "lr=1e-4:1e-2");
    expect(range.stderr).toMatch(
      /^webtune: sweep parameter lr: the range 0\.0001:0\.01 is sampled by random search/,
    );
    expect(existsSync(out)).toBe(false);
  });
});
