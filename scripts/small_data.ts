/**
 * `npm run experiment:small-data`: does augmentation help when data is scarce? The fortunes task with a tenth of
 * its training rows (a stratified, seeded draw), trained with no augmentation, with text-level augmentation (EDA),
 * with paraphrases from the base model, and with both; each over 3 seeds (the seed draws the tenth, the adapter's
 * init, the shuffling and the augmentation). Every run takes the same optimizer steps, so the comparison is of the
 * data alone. Each run is the fortunes preset's job through the webtune CLI, scored on the whole test file.
 *
 * Flags: `--seeds 0,1,2`, `--kinds none,eda,paraphrase,both` (and `paraphrase-unfiltered`: paraphrases with both
 * thresholds off), `--steps 60`, `--fraction 0.1`, `--parallel 2`, `--out runs/small-data`; anything after `--` goes
 * to every `webtune train`. Results: <out>/results.json and a table on stdout.
 */
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { splitDataset } from "../packages/core/src/train/data/split.js";
import { PRESETS } from "../demo/src/presets.js";

const { values, positionals } = parseArgs({
  options: {
    seeds: { type: "string", default: "0,1,2" },
    kinds: { type: "string", default: "none,eda,paraphrase,both" },
    steps: { type: "string", default: "60" },
    fraction: { type: "string", default: "0.1" },
    parallel: { type: "string", default: "2" },
    eda: { type: "string", default: "8" },
    paraphrases: { type: "string", default: "4" },
    out: { type: "string", default: "runs/small-data" },
  },
  allowPositionals: true,
});
const OUT = values.out;
const AUGMENT: Record<string, string | undefined> = {
  none: undefined,
  eda: `eda=${values.eda}`,
  paraphrase: `paraphrase=${values.paraphrases}`,
  both: `eda=${values.eda},paraphrase=${values.paraphrases}`,
  // Every sample the screen lets through, whatever its likelihood: what the filter keeps out.
  "paraphrase-unfiltered": `paraphrase=${values.paraphrases}`,
};
const EXTRA: Record<string, string[]> = {
  "paraphrase-unfiltered": [
    "--paraphrase-min-logprob",
    "-1000",
    "--paraphrase-min-gain",
    "-1000",
  ],
};
const seeds = values.seeds.split(",").map(Number);
const kinds = values.kinds.split(",");
for (const kind of kinds)
  if (!(kind in AUGMENT))
    throw new Error(
      `--kinds: ${kind} is not one of ${Object.keys(AUGMENT).join(", ")}`,
    );

/** The preset's job as the CLI reads it: the page's files are under demo/public. */
function presetJob(): string {
  const preset = PRESETS.fortunes!;
  const job = {
    ...preset.job,
    data: {
      ...preset.job.data,
      train: `demo/public/${preset.job.data.train}`,
      test: `demo/public/${preset.job.data.test}`,
      // The tenth is too small to hold out validation rows from: every run trains its fixed steps.
      valSplit: 0,
    },
    evaluation: {
      ...preset.job.evaluation,
      evalEvery: null,
      testRows: null,
      reference: null,
      scoreBase: false,
    },
    checkpointEvery: null,
  };
  const file = `${OUT}/fortunes.job.json`;
  writeFileSync(file, `${JSON.stringify(job, null, 2)}\n`);
  return file;
}

/** A stratified, seeded tenth of the training file, written for the CLI. */
function subset(seed: number): string {
  const rows = readFileSync("demo/public/data/fortunes/train.jsonl", "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((line) => ({
      line,
      label: (JSON.parse(line) as { label: string }).label,
    }));
  const fraction = Number(values.fraction);
  const { test: kept } = splitDataset(rows, {
    test: fraction,
    seed,
    stratify: true,
  });
  const file = `${OUT}/train-seed${seed}.jsonl`;
  writeFileSync(file, kept.map((r) => `${r.line}\n`).join(""));
  return file;
}

interface Outcome {
  kind: string;
  seed: number;
  trainRows: number;
  accuracy: number;
  f1: number;
  wallSeconds: number;
}

function train(
  job: string,
  kind: string,
  seed: number,
  data: string,
): Promise<Outcome> {
  const out = `${OUT}/${kind}-seed${seed}`;
  const args = [
    "packages/cli/bin/webtune.js",
    "train",
    "--job",
    job,
    "--data",
    data,
    "--max-steps",
    values.steps,
    "--seed",
    String(seed),
    "--out",
    out,
    "--overwrite",
    ...(AUGMENT[kind] ? ["--augment", AUGMENT[kind]] : []),
    ...(EXTRA[kind] ?? []),
    ...positionals,
  ];
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("close", (code) => {
      writeFileSync(`${out}.log`, stderr + stdout);
      if (code !== 0)
        return reject(
          new Error(
            `${kind} seed ${seed} failed (${out}.log):\n${stderr.slice(-2000)}`,
          ),
        );
      const summary = JSON.parse(stdout.trim().split("\n").at(-1)!) as Record<
        string,
        number
      >;
      const rows = /(\d+) train, \d+ validation/.exec(stderr);
      const outcome = {
        kind,
        seed,
        trainRows: rows ? Number(rows[1]) : NaN,
        accuracy: summary.test_accuracy!,
        f1: summary.test_f1!,
        wallSeconds: Math.round((Date.now() - started) / 1000),
      };
      process.stderr.write(`${JSON.stringify(outcome)}\n`);
      resolve(outcome);
    });
  });
}

/** Runs the tasks `parallel` at a time, in order. */
async function pool<T>(
  tasks: (() => Promise<T>)[],
  parallel: number,
): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await tasks[i]!();
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return results;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const sd = (xs: number[]) =>
  Math.sqrt(
    mean(xs.map((x) => (x - mean(xs)) ** 2)) *
      (xs.length / Math.max(1, xs.length - 1)),
  );
const pct = (x: number) => (100 * x).toFixed(1);

mkdirSync(OUT, { recursive: true });
const job = presetJob();
const files = new Map(seeds.map((s) => [s, subset(s)]));
const outcomes = await pool(
  seeds.flatMap((seed) =>
    kinds.map((kind) => () => train(job, kind, seed, files.get(seed)!)),
  ),
  Number(values.parallel),
);
writeFileSync(`${OUT}/results.json`, `${JSON.stringify(outcomes, null, 2)}\n`);
console.log(
  `| augmentation | training rows | test accuracy, mean ± sd (seeds ${seeds.join(", ")}) | macro F1 | per seed |`,
);
console.log("| --- | --- | --- | --- | --- |");
for (const kind of kinds) {
  const runs = outcomes.filter((o) => o.kind === kind);
  const acc = runs.map((o) => o.accuracy);
  const f1 = runs.map((o) => o.f1);
  console.log(
    `| ${kind} (${AUGMENT[kind] ?? "—"}) | ${runs.map((o) => o.trainRows).join(" / ")} | ${pct(mean(acc))} % ± ${pct(sd(acc))} | ` +
      `${mean(f1).toFixed(3)} ± ${sd(f1).toFixed(3)} | ${acc.map(pct).join(" / ")} |`,
  );
}
