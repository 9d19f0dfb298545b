/**
 * `webtune sweep`: a --job file's hyperparameters searched (a grid, or seeded random samples) with successive
 * halving. --out holds sweep.jsonl (the sweep, then one line per trial-rung, then the best job's test scores),
 * each trial's checkpoints (trials/<id>), best.job.json and the best adapter (best/). Running the same command
 * again reads sweep.jsonl and goes on where it stopped.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  ConfigError,
  directoryStore,
  runSweep,
  saveAdapterToDirectory,
  SWEEP_METRICS,
  sweepTrials,
  compareRecords,
  describeParams,
  writeFilesAtomically,
  type JobField,
  type JobResult,
  type SweepParam,
  type SweepRecord,
  type SweepSearch,
  type SweepTrial,
  type SweepValue,
} from "@webtune/core";
import { DATA_FLAG_NAMES } from "./common.js";
import { FLAG_NAMES, buildJob } from "./job_flags.js";
import { checkApartFromModel } from "./out_folder.js";
import {
  appendLine,
  BEST,
  BEST_JOB,
  LOG,
  startLog,
  TRIALS,
  type SweepDefinition,
} from "./sweep_out.js";
import { progress, type Progress } from "./progress.js";
import { JOB_FILE } from "./train.js";

export interface SweepFlags {
  job?: string;
  grid?: string[];
  random?: number;
  seed: number;
  eta: number;
  minSteps?: number;
  out?: string;
  overwrite?: boolean;
  maxRuns?: number;
}

/** The train command's flags (without "--") by the job field each sets; a flag whose value is inverted is left out. */
const PARAM_FIELDS = new Map<string, JobField>(
  Object.entries(FLAG_NAMES)
    .filter(([field]) => field !== "evaluation.scoreBase")
    .map(([field, flag]) => [flag.replace(/^--/, ""), field as JobField]),
);

/**
 * `lr=1e-3,3e-3` as a parameter: a train flag's name (lr, r, batch, ...) or a job field's path
 * (training.learningRate), then values separated by commas, or a range `lo:hi` for random search. A value is read
 * as a number where it is one, true/false, none (null), or else text.
 */
export function parseParam(text: string): SweepParam {
  const eq = text.indexOf("=");
  if (eq <= 0)
    throw new ConfigError(
      `--grid ${text}: a parameter is name=v1,v2 (e.g. lr=1e-3,3e-3) or name=lo:hi with --random.`,
    );
  const name = text.slice(0, eq).replace(/^--/, "");
  const field =
    PARAM_FIELDS.get(name) ??
    (name.includes(".") || name === "checkpointEvery"
      ? (name as JobField)
      : undefined);
  if (!field) {
    const near = [...PARAM_FIELDS.keys()].filter(
      (flag) => flag.includes(name) || name.includes(flag),
    );
    throw new ConfigError(
      `--grid ${text}: ${name} is not a train flag or a job field${near.length > 0 ? `: did you mean ${near.join(" or ")}?` : ""} ` +
        `(flags: ${[...PARAM_FIELDS.keys()].join(", ")}; or a field, e.g. training.learningRate).`,
    );
  }
  const rest = text.slice(eq + 1);
  const range = /^([^,:]+):([^,:]+)$/.exec(rest);
  if (range)
    return {
      name,
      field,
      range: { lo: Number(range[1]), hi: Number(range[2]) },
    };
  return {
    name,
    field,
    values: rest === "" ? [] : rest.split(",").map(parseValue),
  };
}

function parseValue(v: string): SweepValue {
  const t = v.trim();
  if (t === "none" || t === "null") return null;
  if (t === "true" || t === "false") return t === "true";
  return t !== "" && Number.isFinite(Number(t)) ? Number(t) : t;
}

export async function sweepCommand(o: SweepFlags): Promise<void> {
  if (!o.job)
    throw new ConfigError(
      "--job is needed: the job file whose hyperparameters the sweep varies (from webtune train --print-job or the demo).",
    );
  if (!o.out)
    throw new ConfigError(
      "--out is needed: the folder sweep.jsonl, the trials' checkpoints and the best adapter go to.",
    );
  if (!o.grid || o.grid.length === 0)
    throw new ConfigError(
      "--grid is needed: the parameters to vary, e.g. --grid lr=1e-3,3e-3 r=8,16.",
    );
  const job = await buildJob({}, o.job);
  const params = o.grid.map(parseParam);
  const search: SweepSearch =
    o.random !== undefined
      ? { kind: "random", n: o.random, seed: o.seed }
      : { kind: "grid" };
  const halving = { eta: o.eta, minSteps: o.minSteps ?? null };
  const trials = sweepTrials(job, params, search);
  const out = o.out;
  await checkApartFromModel(out, job.model.source);
  const definition: SweepDefinition = {
    type: "sweep",
    job: job.toJSON(),
    params,
    search,
    halving,
  };
  const earlier = await startLog(out, definition, o.overwrite === true);
  const done = earlier
    .filter((l) => l.type === "trial")
    .map(({ type: _, ...r }) => r as unknown as SweepRecord);
  const tested = earlier.find((l) => l.type === "test");
  process.stderr.write(
    `sweep: ${trials.length} trials (${search.kind === "grid" ? "grid" : `random, seed ${search.seed}`})` +
      (halving.minSteps !== null
        ? `, successive halving from ${halving.minSteps} steps, eta ${halving.eta}`
        : ", each to its full steps") +
      (done.length > 0
        ? `; ${done.length} trial-rungs done before, in ${join(out, LOG)}`
        : "") +
      "\n",
  );

  let bar: Progress | undefined;
  const result = await runSweep({
    trials,
    halving,
    records: done,
    readFile: (path, field) =>
      readFile(path).catch((e: NodeJS.ErrnoException) => {
        const flag = (FLAG_NAMES as Record<string, string>)[field] ?? field;
        throw new ConfigError(
          `cannot read ${flag} ${path} (in --job ${o.job}): ${e.code === "ENOENT" ? "no such file" : e.message}.`,
        );
      }),
    dataNames: DATA_FLAG_NAMES,
    checkpoints: (id) => directoryStore(join(out, TRIALS, id)),
    maxRuns: o.maxRuns,
    scoreBest: tested === undefined,
    onStart: (s) => {
      process.stderr.write(
        `${s.trial.id} (${describeParams(s.trial.params)}), rung ${s.rung}: steps ${s.from} → ${s.until} of ${s.total}` +
          `${s.from > 0 ? " (from its checkpoint)" : ""}\n`,
      );
      bar = progress(s.until);
    },
    onEvent: (_trial, e) => {
      if (e.type === "step" || e.type === "eval") bar?.event(e);
      if (e.type === "phase" && e.phase === "scoring base")
        process.stderr.write(`scoring the best job on the test rows…\n`);
    },
    onRecord: async (r) => {
      bar?.stop();
      bar = undefined;
      process.stderr.write(`${recordLine(r)}\n`);
      await appendLine(out, { type: "trial", ...r });
    },
  });
  bar?.stop();
  if (!result.best) {
    process.stderr.write(
      `stopped after ${o.maxRuns} trial-rungs (--max-runs); run the same command again to go on.\n`,
    );
    process.stdout.write(table(result.records, false));
    return;
  }
  const { trial, record, run } = result.best;
  if (run) await saveBest(out, trial, record, run);
  process.stdout.write(table(result.records, true));
  const test = run ? testLine(trial, record, run) : tested!;
  process.stdout.write(
    `${JSON.stringify({ best: trial.id, params: trial.params, [`val_${record.metric}`]: record.value, val_loss: record.valLoss, test: test.test, out })}\n`,
  );
}

/** The best job, its adapter (with the job beside it, for generate) and its test line. */
async function saveBest(
  out: string,
  trial: SweepTrial,
  record: SweepRecord,
  run: JobResult,
): Promise<void> {
  try {
    await saveAdapterToDirectory(await run.peft.saveAdapter(), join(out, BEST));
    await writeFilesAtomically(
      join(out, BEST),
      [[JOB_FILE, `${JSON.stringify(run.job, null, 2)}\n`]],
      "the job",
    );
    await writeFilesAtomically(
      out,
      [[BEST_JOB, `${JSON.stringify(trial.job, null, 2)}\n`]],
      "the best job",
    );
    await appendLine(out, testLine(trial, record, run));
    process.stderr.write(testSummary(run));
  } finally {
    run.peft.dispose();
    run.model.dispose();
  }
}

function testLine(trial: SweepTrial, record: SweepRecord, run: JobResult) {
  return {
    type: "test",
    trial: trial.id,
    params: trial.params,
    steps: run.train.steps,
    [`val_${record.metric}`]: record.value,
    test: run.test.tuned ? withoutMatrix(run.test.tuned) : null,
    base: run.test.base ? withoutMatrix(run.test.base) : null,
    ...(run.majorityAccuracy !== undefined
      ? { majority_accuracy: run.majorityAccuracy }
      : {}),
    ...(run.forgetting
      ? { reference_loss_delta: run.forgetting.loss_delta }
      : {}),
  };
}

/** The best job's test scores, base → tuned, and the forgetting check, for the terminal. */
function testSummary(run: JobResult): string {
  const { base, tuned } = run.test;
  if (!tuned) return "";
  const keys = ["accuracy", "exactMatch", "f1", "loss"] as const;
  const parts = keys
    .filter((k) => typeof tuned[k] === "number")
    .map(
      (k) =>
        `${k} ${base?.[k] !== undefined ? `${fmt(base[k]!)} → ` : ""}${fmt(tuned[k]!)}`,
    );
  const forgetting = run.forgetting
    ? `; reference loss ${run.forgetting.loss_delta >= 0 ? "+" : ""}${fmt(run.forgetting.loss_delta)}`
    : "";
  return `test (${tuned.rows} rows${base ? ", base → tuned" : ""}): ${parts.join(", ")}${forgetting}\n`;
}

const withoutMatrix = (m: object) =>
  Object.fromEntries(
    Object.entries(m).filter(([k]) => k !== "confusionMatrix"),
  );

const fmt = (v: number | null, digits = 4) =>
  v === null ? "-" : v.toFixed(digits);

function recordLine(r: SweepRecord): string {
  return (
    `${r.trial} rung ${r.rung}: ${r.status}${r.error ? ` (${r.error})` : ""} at step ${r.steps}/${r.total}, ` +
    `val ${r.metric} ${fmt(r.value)}, val loss ${fmt(r.valLoss)}, ${(r.wallMs / 1000).toFixed(0)} s`
  );
}

/**
 * Each trial's last record, those that went furthest first, then by the validation metric (best first); in a
 * finished sweep, a trial left behind at a rung is "pruned".
 */
function table(records: readonly SweepRecord[], finished: boolean): string {
  const last = new Map<string, SweepRecord>();
  for (const r of records)
    if ((last.get(r.trial)?.rung ?? -1) < r.rung) last.set(r.trial, r);
  const rows = [...last.values()];
  if (rows.length === 0) return "";
  const metric = SWEEP_METRICS[rows[0]!.metric];
  const wall = new Map<string, number>();
  for (const r of records)
    wall.set(r.trial, (wall.get(r.trial) ?? 0) + r.wallMs);
  const furthest = Math.max(...rows.map((r) => r.rung));
  rows.sort((a, b) => b.rung - a.rung || compareRecords(a, b, metric));
  const names = Object.keys(rows[0]!.params);
  const head = [
    "trial",
    ...names,
    "steps",
    `val ${metric.name}`,
    "val loss",
    "wall s",
    "status",
  ];
  const body = rows.map((r) => [
    r.trial,
    ...names.map((n) => String(r.params[n])),
    `${r.steps}/${r.total}`,
    fmt(r.value),
    fmt(r.valLoss),
    (wall.get(r.trial)! / 1000).toFixed(0),
    r.status !== "paused"
      ? r.status
      : finished && r.rung < furthest
        ? `pruned after rung ${r.rung}`
        : `at rung ${r.rung}'s end`,
  ]);
  const widths = head.map((h, i) =>
    Math.max(h.length, ...body.map((row) => row[i]!.length)),
  );
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  return `${[line(head), ...body.map(line)].join("\n")}\n`;
}
