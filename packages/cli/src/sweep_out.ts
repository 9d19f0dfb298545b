/**
 * A sweep's --out folder: sweep.jsonl starts with the sweep's definition, then a line per trial-rung and the best
 * job's test line; a rerun of the same sweep reads it back, and another sweep (or a train run) there is refused
 * unless --overwrite.
 */
import { appendFile, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import {
  ConfigError,
  writeFilesAtomically,
  type HalvingOptions,
  type SweepParam,
  type SweepSearch,
} from "@webtune/core";

export const LOG = "sweep.jsonl";
export const BEST_JOB = "best.job.json";
export const BEST = "best";
export const TRIALS = "trials";

/** The sweep as sweep.jsonl's first line records it: what must match for a rerun to go on with it. */
export interface SweepDefinition {
  type: "sweep";
  job: unknown;
  params: SweepParam[];
  search: SweepSearch;
  halving: HalvingOptions;
}

export type LogLine = { type: string } & Record<string, unknown>;

/**
 * sweep.jsonl's lines of an earlier run of this same sweep (nothing for a new one), after checking that --out holds
 * no other sweep or run; a new sweep's log starts with its definition. --overwrite starts over.
 */
export async function startLog(
  out: string,
  definition: SweepDefinition,
  overwrite: boolean,
): Promise<LogLine[]> {
  const kind = await stat(out).catch(() => undefined);
  if (kind && !kind.isDirectory())
    throw new ConfigError(
      `--out ${out} is a file; name a folder (it is created if needed).`,
    );
  const text = await readFile(join(out, LOG), "utf8").catch(() => undefined);
  const lines = text === undefined ? [] : readLines(text);
  if (!overwrite && text !== undefined) {
    const differs = difference(lines[0], definition);
    if (differs)
      throw new ConfigError(
        `--out ${out} holds another sweep (${differs} differ${differs.includes(" and ") ? "" : "s"}); pass --overwrite to ` +
          "replace it, or choose another --out.",
      );
    return lines.slice(1);
  }
  if (!overwrite && kind) {
    const other = (
      await Promise.all(
        [
          BEST,
          BEST_JOB,
          TRIALS,
          "adapter_model.safetensors",
          "metrics.jsonl",
        ].map(async (f) =>
          (await stat(join(out, f)).catch(() => undefined)) ? f : undefined,
        ),
      )
    ).filter(Boolean);
    if (other.length > 0)
      throw new ConfigError(
        `--out ${out} already holds a run (${other.join(", ")}) but no ${LOG}; pass --overwrite to replace it, or choose another --out.`,
      );
  }
  for (const f of [LOG, BEST, BEST_JOB, TRIALS])
    await rm(join(out, f), { recursive: true, force: true });
  await writeFilesAtomically(
    out,
    [[LOG, `${JSON.stringify(definition)}\n`]],
    LOG,
  );
  return [];
}

/** Which parts of the recorded sweep differ from `definition`, in words; undefined when they match. */
function difference(
  recorded: LogLine | undefined,
  definition: SweepDefinition,
): string | undefined {
  if (recorded?.type !== "sweep") return `its ${LOG} has no sweep line`;
  const parts = (["job", "params", "search", "halving"] as const).filter(
    (k) => JSON.stringify(recorded[k]) !== JSON.stringify(definition[k]),
  );
  const words = {
    job: "the job",
    params: "the parameters (--grid)",
    search: "the search (--random, --seed)",
    halving: "the halving (--eta, --min-steps)",
  };
  return parts.length > 0
    ? parts.map((p) => words[p]).join(" and ")
    : undefined;
}

/** The JSON lines of a log; a line cut short by a kill is skipped (its trial-rung runs again). */
function readLines(text: string): LogLine[] {
  const lines: LogLine[] = [];
  for (const line of text.split("\n")) {
    try {
      const row = JSON.parse(line) as unknown;
      if (typeof row === "object" && row !== null && "type" in row)
        lines.push(row as LogLine);
    } catch {
      continue;
    }
  }
  return lines;
}

export const appendLine = (out: string, line: object) =>
  appendFile(join(out, LOG), `${JSON.stringify(line)}\n`);
