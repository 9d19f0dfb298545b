/**
 * The folders a command writes to, checked before anything is written: an --out that holds another run is refused
 * unless --overwrite, an --out that is (or is inside) the --model folder is refused, and metrics.jsonl starts empty
 * or, when a run resumes in its own folder, keeps its rows up to the checkpoint.
 */
import { readFile, realpath, rm, rmdir, stat } from "node:fs/promises";
import {
  basename,
  dirname,
  isAbsolute,
  join,
  relative,
  resolve,
} from "node:path";
import { ConfigError, writeFilesAtomically } from "@webtune/core";

export const METRICS = "metrics.jsonl";
const CHECKPOINTS = "checkpoints";
/** The augmented training rows a run lists beside its adapter, each traced to its source row. */
export const AUGMENTED = "augmented.jsonl";
/** What a run leaves in its --out: the adapter or the full model, its metrics, its checkpoints. */
const RUN_FILES = [
  "adapter_model.safetensors",
  "model.safetensors",
  METRICS,
  CHECKPOINTS,
];

/** How a run will use its --out, decided by {@link checkOutFolder}. */
export interface OutPlan {
  out: string;
  /** `--resume` points into this --out: the run continues there, and keeps its metrics up to the checkpoint. */
  continues: boolean;
  /** --out holds another run that --overwrite replaces (its checkpoints are removed when the run starts). */
  replaces: boolean;
  /** Whether --out, and its metrics.jsonl, were there before this run (see {@link abandonRun}). */
  existed: boolean;
  hadMetrics: boolean;
}

/**
 * Refuses an --out that already holds a run's results (adapter, model, metrics or checkpoints) unless `overwrite`
 * is set or `resume` is a checkpoints folder inside it. Reads only: nothing is created or changed.
 */
export async function checkOutFolder(
  out: string,
  o: { overwrite?: boolean; resume?: string },
): Promise<OutPlan> {
  const kind = await stat(out).catch(() => undefined);
  if (kind && !kind.isDirectory())
    throw new ConfigError(
      `--out ${out} is a file; name a folder (it is created if needed).`,
    );
  const found: string[] = [];
  for (const name of RUN_FILES)
    if (await stat(join(out, name)).catch(() => undefined)) found.push(name);
  const continues =
    o.resume !== undefined &&
    kind !== undefined &&
    isInside(await realPath(o.resume), await realPath(out));
  if (found.length > 0 && !continues && !o.overwrite)
    throw new ConfigError(
      `--out ${out} already holds a run (${found.join(", ")}). Pass --overwrite to replace it, choose another ` +
        `--out, or continue that run with --resume ${join(out, CHECKPOINTS)}.`,
    );
  return {
    out,
    continues,
    replaces: found.length > 0 && !continues,
    existed: kind !== undefined,
    hadMetrics: found.includes(METRICS),
  };
}

/**
 * Starts the run's metrics.jsonl, after every option, the model and the data were checked. A new run starts it
 * empty (and, replacing another run, removes that run's checkpoints); a run continuing in its own folder keeps the
 * rows up to `resumeStep`. Written atomically: the old file stays whole until the new one is on disk.
 */
export async function startRun(
  plan: OutPlan,
  resumeStep: number | undefined,
): Promise<void> {
  let rows = "";
  if (plan.continues && resumeStep !== undefined) {
    const old = await readFile(join(plan.out, METRICS), "utf8").catch(() => "");
    rows = keptMetricRows(old, resumeStep);
  }
  await writeFilesAtomically(plan.out, [[METRICS, rows]], METRICS);
  if (plan.replaces) {
    await rm(join(plan.out, CHECKPOINTS), { recursive: true, force: true });
    // The run replaced may have augmented its data; this one writes its own list, or none.
    await rm(join(plan.out, AUGMENTED), { force: true });
  }
}

/**
 * Undoes {@link startRun} for a run refused before it logged a step (by the Trainer's own checks, say): removes the
 * metrics.jsonl it started unless one was there before, and the --out folder it created if that is empty again.
 */
export async function abandonRun(plan: OutPlan): Promise<void> {
  if (!plan.hadMetrics) await rm(join(plan.out, METRICS), { force: true });
  if (!plan.existed) await rmdir(plan.out).catch(() => undefined);
}

/**
 * The rows of a metrics.jsonl that a run resumed after optimizer step `step` keeps: step and eval rows up to that
 * step. Rows after it (a killed run may have logged past its last checkpoint), the end-of-run rows (test,
 * forgetting), and a line cut short by a kill are dropped: the resumed run logs them again.
 */
export function keptMetricRows(text: string, step: number): string {
  const kept: string[] = [];
  for (const line of text.split("\n")) {
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch {
      continue;
    }
    const r = row as { type?: unknown; step?: unknown } | null;
    if (
      typeof r?.step === "number" &&
      r.step <= step &&
      (r.type === "step" || r.type === "eval")
    )
      kept.push(`${line}\n`);
  }
  return kept.join("");
}

/** The optimizer steps a checkpoint's files record (trainer_state.json's `step`). */
export function checkpointStep(
  files: Record<string, Uint8Array>,
  where: string,
): number {
  const state = files["trainer_state.json"];
  const step = state
    ? (JSON.parse(new TextDecoder().decode(state)) as { step?: unknown }).step
    : undefined;
  if (typeof step !== "number")
    throw new ConfigError(
      `${where}: the checkpoint's trainer_state.json has no step; it is not a webtune checkpoint.`,
    );
  return step;
}

/**
 * Refuses an output folder that is the model's folder or inside it (after resolving links), where writing would
 * replace the base model's own files. Sources that are not local folders (hub ids, URLs) pass.
 */
export async function checkApartFromModel(
  out: string,
  model: string,
  outFlag = "--out",
): Promise<void> {
  const isFolder = await stat(model).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!isFolder) return;
  const [o, m] = [await realPath(out), await realPath(model)];
  if (isInside(o, m))
    throw new ConfigError(
      (o === m
        ? `${outFlag} ${out} is the --model folder${out === model ? "" : ` ${model}`}: writing there would replace the base model's own files.`
        : `${outFlag} ${out} is inside the --model folder ${model}: writing there would mix the output with the base model's files.`) +
        ` Choose an ${outFlag} folder apart from the model's.`,
    );
}

/** Whether `child` is `parent` or below it; both absolute and resolved. */
function isInside(child: string, parent: string): boolean {
  const rel = relative(parent, child);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
}

/** The real path of `path`, or of its nearest existing folder followed by the rest when it does not exist yet. */
async function realPath(path: string): Promise<string> {
  const full = resolve(path);
  try {
    return await realpath(full);
  } catch {
    const parent = dirname(full);
    return parent === full
      ? full
      : join(await realPath(parent), basename(full));
  }
}
