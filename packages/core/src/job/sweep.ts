/**
 * Hyperparameter sweeps over a FineTuneJob, the pure part: the search space (a grid, or seeded random samples),
 * successive halving's rungs, and the choice of which trials go on. Nothing here trains; {@link runSweep}
 * (sweep_run.ts) runs what {@link nextSweepAction} asks for, and records each trial-rung as a {@link SweepRecord},
 * so that an interrupted sweep continues from its records.
 */
import { ConfigError } from "../errors.js";
import { mulberry32, streamSeed } from "../train/data/random.js";
import type { DatasetFormat } from "../train/data/types.js";
import { FineTuneJob } from "./fine_tune_job.js";
import { JOB_SECTIONS, type JobField } from "./job.js";
import { JobError } from "./validate.js";

export { runSweep } from "./sweep_run.js";
export type { SweepRunOptions, SweepResult } from "./sweep_run.js";

/** A value a sweep gives a job field. */
export type SweepValue = number | string | boolean | null;

/** One hyperparameter: the job field it sets, and the values it takes (a list) or the range it is sampled from. */
export interface SweepParam {
  /** How the user named it ("lr", or the field path); errors and records use it. */
  name: string;
  field: JobField;
  /** The values to try; a grid tries each, random search picks one per sample. */
  values?: readonly SweepValue[];
  /**
   * Random search only: sampled log-uniformly when the field is a scale ({@link LOG_SCALE_FIELDS}) and `lo` > 0,
   * uniformly otherwise; whole-number bounds give whole numbers, other samples keep 3 significant digits.
   */
  range?: { lo: number; hi: number };
}

/** How the space is searched: every combination, or `n` seeded samples. */
export type SweepSearch =
  { kind: "grid" } | { kind: "random"; n: number; seed: number };

/** Fields whose ranges are sampled log-uniformly (when `lo` > 0): step sizes and sizes, not fractions. */
export const LOG_SCALE_FIELDS: readonly JobField[] = [
  "training.learningRate",
  "training.weightDecay",
  "training.batchSize",
  "adapter.r",
  "adapter.alpha",
];

/** One configuration of a sweep: its id ("t03"), the values it gives each parameter, and its checked job. */
export interface SweepTrial {
  id: string;
  params: Record<string, SweepValue>;
  job: FineTuneJob;
}

/**
 * The trials of a sweep over `job`. A grid is every combination, in a stable order: the first parameter varies
 * slowest, the last fastest (as nested loops in the order given). Random search draws `n` samples from `seed`:
 * the same seed gives the same trials. Throws a ConfigError naming the parameter for an empty list, a range in a
 * grid, a field a job does not have, or a value the job's check refuses.
 */
export function sweepTrials(
  job: FineTuneJob,
  params: readonly SweepParam[],
  search: SweepSearch,
): SweepTrial[] {
  if (params.length === 0)
    throw new ConfigError(
      "a sweep needs at least one parameter, e.g. lr=1e-3,3e-3.",
    );
  if (job.method !== "lora" || params.some((p) => p.field === "method"))
    throw new ConfigError(
      "a sweep trains adapters (method lora) on one loaded model; full fine-tuning is not swept.",
    );
  const seen = new Set<string>();
  for (const p of params) {
    if (seen.has(p.field))
      throw new ConfigError(
        `sweep parameter ${p.name} sets ${p.field}, which another parameter sets too; give each field once.`,
      );
    seen.add(p.field);
    checkParam(job, p, search);
  }
  const combos =
    search.kind === "grid" ? gridOf(params) : samplesOf(params, search);
  const width = String(combos.length - 1).length;
  return combos.map((values, i) => {
    const params_ = Object.fromEntries(
      params.map((p, j) => [p.name, values[j]!]),
    );
    const trialJob = withFields(
      job,
      params.map((p, j) => [p.field, values[j]!]),
      (message) =>
        `sweep trial ${describeParams(params_)}: ${message} (each value alone is fine; this combination is not).`,
    );
    return {
      id: `t${String(i).padStart(Math.max(2, width), "0")}`,
      params: params_,
      job: trialJob,
    };
  });
}

/** `name=value` pairs, for messages and tables. */
export function describeParams(params: Record<string, SweepValue>): string {
  return Object.entries(params)
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
}

/** A parameter's own problems, each value checked alone against `job`. */
function checkParam(
  job: FineTuneJob,
  p: SweepParam,
  search: SweepSearch,
): void {
  const fail = (why: string) => {
    throw new ConfigError(`sweep parameter ${p.name}: ${why}`);
  };
  const parts = p.field.split(".");
  if (
    parts.length > 2 ||
    (parts.length === 2 &&
      !(JOB_SECTIONS as readonly string[]).includes(parts[0]!))
  )
    fail(
      `${p.field} is not a job field; a field is a section and a name, e.g. training.learningRate.`,
    );
  if (p.range) {
    if (search.kind === "grid")
      fail(
        `the range ${p.range.lo}:${p.range.hi} is sampled by random search; give a list of values for a grid, or a number of samples for random search.`,
      );
    const { lo, hi } = p.range;
    if (!(Number.isFinite(lo) && Number.isFinite(hi) && lo < hi))
      fail(`a range needs two numbers lo < hi, got ${lo}:${hi}.`);
    for (const v of [lo, hi]) checkValue(job, p, v, fail);
    return;
  }
  if (!p.values || p.values.length === 0)
    fail("give at least one value (name=v1,v2,...).");
  for (const v of p.values!) checkValue(job, p, v, fail);
}

function checkValue(
  job: FineTuneJob,
  p: SweepParam,
  value: SweepValue,
  fail: (why: string) => never,
): void {
  withFields(job, [[p.field, value]], (message) =>
    fail(`${JSON.stringify(value)} is refused: ${message}`),
  );
}

/** `job` with `fields` set, checked; `wrap` words a JobError's message. */
function withFields(
  job: FineTuneJob,
  fields: [JobField, SweepValue][],
  wrap: (message: string) => string,
): FineTuneJob {
  const spec = job.toJSON() as unknown as Record<string, unknown>;
  for (const [field, value] of fields) {
    const [section, key] = field.split(".") as [string, string | undefined];
    if (key === undefined) spec[section] = value;
    else
      spec[section] = {
        ...(spec[section] as Record<string, unknown>),
        [key]: value,
      };
  }
  try {
    return FineTuneJob.from(spec);
  } catch (error) {
    if (error instanceof JobError) throw new ConfigError(wrap(error.message));
    throw error;
  }
}

/** Every combination of the parameters' values, the last parameter varying fastest. */
function gridOf(params: readonly SweepParam[]): SweepValue[][] {
  let combos: SweepValue[][] = [[]];
  for (const p of params)
    combos = combos.flatMap((c) => p.values!.map((v) => [...c, v]));
  return combos;
}

/** `n` samples: a list parameter picks one of its values, a range is sampled (see {@link SweepParam.range}). */
function samplesOf(
  params: readonly SweepParam[],
  search: { n: number; seed: number },
): SweepValue[][] {
  if (!(Number.isInteger(search.n) && search.n >= 1))
    throw new ConfigError(
      `random search needs a whole number of samples ≥ 1, got ${search.n}.`,
    );
  const random = mulberry32(streamSeed(search.seed, SWEEP_STREAM));
  return Array.from({ length: search.n }, () =>
    params.map((p) =>
      p.range
        ? sampleRange(p, random())
        : p.values![Math.floor(random() * p.values!.length)]!,
    ),
  );
}

/** The random stream of sweep sampling, apart from the split's and the shuffle's. */
const SWEEP_STREAM = 0x5eed;

function sampleRange(p: SweepParam, u: number): number {
  const { lo, hi } = p.range!;
  const whole = Number.isInteger(lo) && Number.isInteger(hi);
  const log = LOG_SCALE_FIELDS.includes(p.field) && lo > 0;
  if (whole) {
    // Each whole number in [lo, hi] gets its share of the (log) line: [v - 0.5, v + 0.5).
    const [a, b] = [lo - 0.5, hi + 0.5];
    const x = log && a > 0 ? a * (b / a) ** u : a + (b - a) * u;
    return Math.min(hi, Math.max(lo, Math.round(x)));
  }
  const x = log ? lo * (hi / lo) ** u : lo + (hi - lo) * u;
  return Number(x.toPrecision(3));
}

// ---- successive halving ----

/** Successive halving: each rung keeps the best 1/eta of its trials, which go on to eta times the steps. */
export interface HalvingOptions {
  /** The reduction factor, a whole number ≥ 2. */
  eta: number;
  /** Steps of the first rung; null: no halving, every trial runs its full steps. */
  minSteps: number | null;
}

/**
 * The step each rung ends at for a trial of `total` steps: minSteps, minSteps·eta, minSteps·eta², ... while below
 * `total`, then `total`.
 */
export function rungSteps(total: number, o: HalvingOptions): number[] {
  const steps: number[] = [];
  if (o.minSteps !== null)
    for (let s = o.minSteps; s < total; s *= o.eta) steps.push(s);
  steps.push(total);
  return steps;
}

/** Throws a ConfigError for an eta or minSteps that halving cannot use. */
export function checkHalving(o: HalvingOptions): void {
  if (!(Number.isInteger(o.eta) && o.eta >= 2))
    throw new ConfigError(
      `successive halving's eta must be a whole number ≥ 2, got ${o.eta}.`,
    );
  if (o.minSteps !== null && !(Number.isInteger(o.minSteps) && o.minSteps >= 1))
    throw new ConfigError(
      `successive halving's first rung needs a whole number of steps ≥ 1, got ${o.minSteps}.`,
    );
}

/** What the sweep selects on: the task metric on the validation rows. */
export interface SweepMetric {
  name: "accuracy" | "exactMatch" | "f1" | "loss";
  higherIsBetter: boolean;
}

/** Each metric a sweep selects on, and its direction. */
export const SWEEP_METRICS = {
  accuracy: { name: "accuracy", higherIsBetter: true },
  exactMatch: { name: "exactMatch", higherIsBetter: true },
  f1: { name: "f1", higherIsBetter: true },
  loss: { name: "loss", higherIsBetter: false },
} as const satisfies Record<string, SweepMetric>;

/**
 * Classification: accuracy; token classification: entity F1; instruction: exact match; otherwise the validation
 * loss (lower is better).
 */
export function sweepMetric(format: DatasetFormat | "tagged"): SweepMetric {
  if (format === "classification") return SWEEP_METRICS.accuracy;
  if (format === "tagged") return SWEEP_METRICS.f1;
  if (format === "instruction") return SWEEP_METRICS.exactMatch;
  return SWEEP_METRICS.loss;
}

/**
 * How a trial-rung ended: "paused" (stopped at its rung's end, with a checkpoint, to go on if promoted), "finished" (its full
 * steps), "stopped early" (the job's early stopping), "failed" (refused or diverged; `error` says why).
 */
export type SweepStatus = "paused" | "finished" | "stopped early" | "failed";

/** One trial-rung, as sweep.jsonl records it. */
export interface SweepRecord {
  trial: string;
  rung: number;
  params: Record<string, SweepValue>;
  /** Optimizer steps the trial has taken, and its full steps. */
  steps: number;
  total: number;
  metric: SweepMetric["name"];
  /** The metric on the validation rows; null when the trial failed. */
  value: number | null;
  valLoss: number | null;
  /** Wall time of this rung's part of the trial. */
  wallMs: number;
  status: SweepStatus;
  error?: string;
}

const TERMINAL: readonly SweepStatus[] = [
  "finished",
  "stopped early",
  "failed",
];

/** Orders records best first: by the metric in its direction, then by validation loss; failed ones last. */
export function compareRecords(
  a: SweepRecord,
  b: SweepRecord,
  metric: SweepMetric,
): number {
  const worse = (x: number | null, y: number | null, higher: boolean) => {
    if (x === y) return 0;
    if (x === null) return 1;
    if (y === null) return -1;
    return higher ? y - x : x - y;
  };
  return (
    worse(a.value, b.value, metric.higherIsBetter) ||
    worse(a.valLoss, b.valLoss, false)
  );
}

/** The best max(1, ⌊n/eta⌋) of a rung's records, best first (a stable sort: ties keep the trials' order). */
export function promoted(
  records: readonly SweepRecord[],
  eta: number,
  metric: SweepMetric,
): SweepRecord[] {
  const ranked = [...records].sort((a, b) => compareRecords(a, b, metric));
  const keep = Math.max(1, Math.floor(records.length / eta));
  return ranked.slice(0, keep).filter((r) => r.status !== "failed");
}

/** What the sweep does next: run a trial to the end of a rung, or nothing more (the best trial is known). */
export type SweepAction =
  | {
      type: "run";
      trial: string;
      rung: number;
      /** The trial is the last one left: it runs straight to its full steps. */
      straight: boolean;
    }
  | { type: "done"; best: SweepRecord; ranked: SweepRecord[] };

/**
 * The next trial-rung to run, given the trials (in order) and the records so far; records of a finished sweep
 * give "done" with its best trial. A trial that finished or failed in an earlier rung carries that record into
 * later rungs without running again. Throws when every trial failed.
 */
export function nextSweepAction(
  trials: readonly string[],
  records: readonly SweepRecord[],
  o: HalvingOptions,
): SweepAction {
  const latest = (trial: string, rung: number) =>
    records
      .filter((r) => r.trial === trial && r.rung <= rung)
      .sort((a, b) => b.rung - a.rung)[0];
  let alive = [...trials];
  for (let rung = 0; ; rung++) {
    const straight = alive.length === 1;
    const results: SweepRecord[] = [];
    for (const trial of alive) {
      const r = latest(trial, rung);
      if (r && (r.rung === rung || TERMINAL.includes(r.status)))
        results.push(r);
      else return { type: "run", trial, rung, straight };
    }
    const metric = SWEEP_METRICS[results[0]!.metric];
    const ranked = [...results].sort((a, b) => compareRecords(a, b, metric));
    if (ranked[0]!.status === "failed")
      throw new ConfigError(
        `every trial failed; the first: ${ranked[0]!.trial} (${describeParams(ranked[0]!.params)}): ${ranked[0]!.error}`,
      );
    if (results.every((r) => TERMINAL.includes(r.status)))
      return { type: "done", best: ranked[0]!, ranked };
    alive = promoted(results, o.eta, metric).map((r) => r.trial);
  }
}

/** The step a trial of `total` steps stops at in `rung` (its full steps when it runs `straight`). */
export function rungEnd(
  rung: number,
  total: number,
  straight: boolean,
  o: HalvingOptions,
): number {
  const steps = rungSteps(total, o);
  return straight ? total : steps[Math.min(rung, steps.length - 1)]!;
}
