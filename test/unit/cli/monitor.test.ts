/**
 * `webtune monitor`, the built CLI as a user runs it, on the embedded model and an adapter trained two steps on short
 * fortunes rows: the same test rows again are no drift (the training run's scores are reproduced); a shifted copy
 * (text tripled, labels skewed) is flagged, exits 3 with --fail-on-drift, and with --retrain writes a retrained
 * adapter, its job and metrics.jsonl to --out and prints before and after; and each error names its flag or file.
 */
import { execFile } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { needGpu, startGpu } from "../../helpers/gpu.js";

const exec = promisify(execFile);
const root = fileURLToPath(new URL("../../..", import.meta.url));
const bin = join(root, "packages/cli/bin/webtune.js");
const work = mkdtempSync(join(tmpdir(), "webtune-monitor-"));

async function webtune(...args: string[]) {
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

interface Report {
  driftFlagged: boolean;
  flags: string[];
  current: { accuracy: number };
  metric: { baseline: number; current: number; delta: number };
  inputLength: { ks: { d: number } };
  labels: { chiSquare: { pValue: number }; onlyInBaseline: string[] };
  retrain?: {
    out: string;
    heldOut: { rows: number; before: { accuracy: number } };
    retention: { before: { rows: number }; after: { accuracy: number } }[];
  };
}
const lastJson = (out: string) =>
  JSON.parse(out.trim().split("\n").at(-1)!) as Report;

type Row = { text: string; label: string };
const rowsOf = (file: string): Row[] =>
  readFileSync(join(root, "demo/public/data/fortunes", file), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Row)
    .filter((r) => r.text.length < 80);
const write = (name: string, rows: Row[]) => {
  const path = join(work, name);
  writeFileSync(path, rows.map((r) => `${JSON.stringify(r)}\n`).join(""));
  return path;
};

const adapter = join(work, "adapter");
let test: string;
let shifted: string;

beforeAll(async () => {
  await startGpu();
  // The bin runs the compiled packages.
  await exec("npm", ["run", "build", "--silent"], { cwd: root });
  const train = write("train.jsonl", rowsOf("train.jsonl").slice(0, 40));
  // Four of each label.
  const short = rowsOf("test.jsonl");
  const four = (label: string) =>
    short.filter((r) => r.label === label).slice(0, 4);
  const labels = ["computers", "food", "law", "love"];
  test = write("test.jsonl", labels.flatMap(four));
  // Inputs three times as long; computers rows four times over and love once: food and law gone.
  const tripled = (r: Row) => ({ ...r, text: `${r.text} ${r.text} ${r.text}` });
  shifted = write("shifted.jsonl", [
    ...[1, 2, 3, 4].flatMap(() => four("computers").map(tripled)),
    ...four("love").map(tripled),
  ]);
  const r = await webtune(
    "train",
    ...["--data", train, "--test", test, "--out", adapter],
    ...["--max-steps", "2", "--batch", "8", "--lr", "3e-3", "--r", "4"],
    ...["--seq-len", "128", "--val-split", "0", "--skip-base-score"],
  );
  expect(r.code, r.stderr).toBe(0);
});

describe("webtune monitor", () => {
  it("finds no drift on the adapter's own test rows, whose scores it reproduces", async (ctx) => {
    await needGpu(ctx);
    const r = await webtune("monitor", "--adapter", adapter, "--data", test);
    expect(r.code, r.stderr).toBe(0);
    const report = lastJson(r.stdout);
    const tuned = readFileSync(join(adapter, "metrics.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { phase?: string; accuracy?: number })
      .find((e) => e.phase === "tuned")!;
    expect(report.metric.baseline).toBe(tuned.accuracy);
    expect(report.current.accuracy).toBe(tuned.accuracy);
    expect(report.metric.delta).toBe(0);
    expect(report.inputLength.ks.d).toBe(0);
    expect(report.labels.chiSquare.pValue).toBe(1);
    expect(report.driftFlagged).toBe(false);
    expect(r.stdout).toMatch(
      /│ accuracy\s+│ [\d.]+ %\s+│ [\d.]+ %\s+│ 0\.0 points \(95 % CI /,
    );
    expect(r.stdout).toMatch(/│ label law\s+│ 25\.0 %\s+│ 25\.0 %/);
    expect(r.stdout).toContain("no drift detected");
  });

  it("flags a shifted copy, exits 3 with --fail-on-drift, and --retrain writes a retrained adapter with before and after", async (ctx) => {
    await needGpu(ctx);
    const out = join(work, "retrained");
    const r = await webtune(
      "monitor",
      ...["--adapter", adapter, "--data", shifted, "--fail-on-drift"],
      ...["--retrain", "--out", out, "--max-steps", "1", "--holdout", "0.3"],
    );
    expect(r.code, r.stderr).toBe(3);
    const report = lastJson(r.stdout);
    expect(report.driftFlagged).toBe(true);
    expect(report.labels.onlyInBaseline).toEqual(["food", "law"]);
    expect(r.stdout).toMatch(/^DRIFT: input length moved: mean /m);
    expect(r.stdout).toMatch(
      /^DRIFT: label distribution moved: .*gone: food, law$/m,
    );
    // Retrained: --out holds what webtune train writes, the job continues the adapter, replaying its training file.
    for (const f of [
      "adapter_model.safetensors",
      "adapter_config.json",
      "webtune_job.json",
      "metrics.jsonl",
    ])
      expect(existsSync(join(out, f)), f).toBe(true);
    const job = JSON.parse(readFileSync(join(out, "webtune_job.json"), "utf8"));
    expect(job.adapter.continueFrom).toBe(adapter);
    expect(job.data).toMatchObject({ train: shifted, testSplit: 0.3 });
    expect(job.replay).toEqual({
      source: join(work, "train.jsonl"),
      ratio: 0.25,
    });
    expect(job.evaluation.retention).toBe(test);
    expect(readFileSync(join(out, "metrics.jsonl"), "utf8")).toMatch(
      /"phase":"tuned".*"rowScores"/,
    );
    expect(r.stdout).toMatch(/│ retrained\s+│ rows │ before\s+│ after/);
    expect(r.stdout).toMatch(
      /│ held-out new rows: accuracy\s+│ \d+\s+│ [\d.]+ %\s+│ [\d.]+ %/,
    );
    expect(r.stdout).toMatch(
      /│ old test [\w-]+: accuracy\s+│ 16\s+│ [\d.]+ %\s+│ [\d.]+ %/,
    );
    expect(report.retrain!.out).toBe(out);
    expect(report.retrain!.heldOut.rows).toBeGreaterThan(0);
    expect(report.retrain!.retention[0]!.before.rows).toBe(16);
  });

  it("names the flag or file at fault", async (ctx) => {
    await needGpu(ctx);
    // An adapter folder without the job, one whose job has a head, and one whose metrics predate row scores.
    const bare = join(work, "bare");
    const head = join(work, "head");
    const old = join(work, "old");
    for (const dir of [bare, head, old]) {
      mkdirSync(dir, { recursive: true });
      for (const f of ["adapter_config.json", "adapter_model.safetensors"])
        copyFileSync(join(adapter, f), join(dir, f));
    }
    const job = JSON.parse(
      readFileSync(join(adapter, "webtune_job.json"), "utf8"),
    );
    job.adapter.task = "seq-cls";
    writeFileSync(join(head, "webtune_job.json"), JSON.stringify(job));
    copyFileSync(
      join(adapter, "webtune_job.json"),
      join(old, "webtune_job.json"),
    );
    writeFileSync(
      join(old, "metrics.jsonl"),
      readFileSync(join(adapter, "metrics.jsonl"), "utf8").replace(
        /,"rowScores":\[[^\]]*\]/g,
        "",
      ),
    );
    const other = join(work, "other-run");
    mkdirSync(other, { recursive: true });
    writeFileSync(join(other, "metrics.jsonl"), "");
    const cases: [string[], RegExp][] = [
      [["--data", test], /--adapter is needed/],
      [["--adapter", adapter], /--data is needed/],
      [
        ["--adapter", bare, "--data", test],
        /--adapter .*bare has no webtune_job\.json: it was not trained by `webtune train`.*--format and --baseline/,
      ],
      [
        ["--adapter", head, "--data", test],
        /--adapter .*head answers with a seq-cls head: monitoring head adapters .* not supported yet/,
      ],
      [
        ["--adapter", old, "--data", test],
        /.*old\/metrics\.jsonl line \d+: .*no rowScores.*Pass it with --baseline/,
      ],
      [
        ["--adapter", adapter, "--data", test, "--retrain"],
        /--retrain needs --out/,
      ],
      [
        ["--adapter", adapter, "--data", test, "--retrain", "--out", other],
        /--out .*other-run already holds a run \(metrics\.jsonl\)/,
      ],
      [
        ["--adapter", adapter, "--data", test, "--retrain", "--out", adapter],
        /--out .* is the --adapter folder/,
      ],
      [
        ["--adapter", adapter, "--data", test, "--out", other],
        /--out is read only with --retrain/,
      ],
    ];
    const results = await Promise.all(
      cases.map(([args]) => webtune("monitor", ...args)),
    );
    results.forEach((r, i) => {
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(
        new RegExp(`^webtune: ${cases[i]![1].source}`, "m"),
      );
    });
  });
});
