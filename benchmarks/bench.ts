/**
 * `npm run bench`: webtune's benchmarks under Node on Dawn and in headless Chromium, each scenario against a
 * baseline in the same run. Prints a table per scenario, writes benchmarks/results/<date>-<runtime>-<device>.json,
 * regenerates the generated section of benchmarks/RESULTS.md, and prints the headline ratios as the last line
 * (one JSON object). See benchmarks/README.md.
 *
 * Usage: npm run bench [-- --node | --browser] [--scenarios train-step,generate] [--size smoke] [--profile]
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Command, Option } from "commander";
import Table from "cli-table3";
import * as prettier from "prettier";
import { disposeRuntime, initRuntime, nodeFileSource } from "@webtune/core";
import { launchChromium, serveDemo } from "../scripts/browser.js";
import {
  regenerateResults,
  scenarioCells,
  headlineCells,
  type StampedRun,
} from "./lib/report.js";
import {
  runBenchmarks,
  SCENARIOS,
  SIZES,
  type BenchSize,
  type RuntimeRun,
  type Scenario,
} from "./lib/run.js";
import type { ModelName } from "./lib/models.js";

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const EMBEDDED = here("../demo/public/models/webtune-demo-base");

const program = new Command("bench")
  .description("webtune's benchmarks, each against an in-run baseline")
  .option("--node", "run under Node (Dawn) only")
  .option("--browser", "run in headless Chromium only")
  .option(
    "--scenarios <list>",
    `comma-separated subset of ${SCENARIOS.join(",")}`,
    SCENARIOS.join(","),
  )
  .addOption(
    new Option(
      "--size <size>",
      "sizes: the issue's (full under Node, browser in Chromium), or smoke for a quick check",
    )
      .choices(["default", "full", "browser", "smoke"])
      .default("default"),
  )
  .option("--models <list>", "train-step models (default smollm2-135m,gpt2)")
  .option("--layers <n>", "train-step layers (default: the real depth)")
  .option("--steps <n>", "timed train steps per contender")
  .option("--batch <n>", "train-step and host batch rows")
  .option("--seq <n>", "train-step and host tokens per row")
  .option(
    "--profile",
    "profile one train step per model: top 15 kernels by GPU time",
  )
  .option("--out <dir>", "where results JSON go", here("results"))
  .option(
    "--results-md <file>",
    "the RESULTS.md to regenerate",
    here("RESULTS.md"),
  )
  .option("--no-write", "print only; write no files")
  .parse();

const opts = program.opts<{
  node?: boolean;
  browser?: boolean;
  scenarios: string;
  size: "default" | "full" | "browser" | "smoke";
  profile?: boolean;
  models?: string;
  layers?: string;
  steps?: string;
  batch?: string;
  seq?: string;
  out: string;
  resultsMd: string;
  write: boolean;
}>();

const scenarios = opts.scenarios.split(",").map((s) => s.trim()) as Scenario[];
for (const s of scenarios)
  if (!SCENARIOS.includes(s))
    program.error(
      `unknown scenario "${s}"; choose from ${SCENARIOS.join(", ")}`,
    );
/** The size preset of a runtime, with the command line's overrides (which rename it, so results say so). */
function sizeFor(runtime: "node" | "browser"): BenchSize {
  const name =
    opts.size !== "default"
      ? opts.size
      : runtime === "node"
        ? "full"
        : "browser";
  const size = { ...SIZES[name] };
  if (opts.models) size.trainModels = opts.models.split(",") as ModelName[];
  if (opts.layers) size.trainLayers = Number(opts.layers);
  if (opts.steps) size.steps = Number(opts.steps);
  if (opts.batch) size.batch = Number(opts.batch);
  if (opts.seq) size.seq = Number(opts.seq);
  if (opts.models || opts.layers || opts.steps || opts.batch || opts.seq)
    size.name += " (modified)";
  return size;
}

const wake = new Int32Array(new SharedArrayBuffer(4));
/**
 * The main thread's CPU ms (the first field of /proc/self/task/<pid>/schedstat, ns); throws where /proc has no
 * such file (`hasThreadCpu`). The kernel adds a running thread's slice to that sum only at scheduling events, so a
 * 50 µs sleep first (a futex wait) makes the reading exact to about 0.1 ms instead of a scheduler tick.
 */
function threadCpuMs(): number {
  Atomics.wait(wake, 0, 0, 0.05);
  const stat = readFileSync(`/proc/self/task/${process.pid}/schedstat`, "utf8");
  return Number(stat.split(" ")[0]) / 1e6;
}

function hasThreadCpu(): boolean {
  try {
    return Number.isFinite(threadCpuMs());
  } catch {
    return false;
  }
}

function log(line: string): void {
  console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
}

async function runNode(): Promise<RuntimeRun> {
  await initRuntime();
  try {
    return await runBenchmarks(
      {
        runtime: "node",
        embeddedModel: EMBEDDED,
        openEmbeddedWeights: () =>
          nodeFileSource(join(EMBEDDED, "model.safetensors")),
        readEmbeddedWeightsRaw: async () =>
          (await readFile(join(EMBEDDED, "model.safetensors"))).byteLength,
        ...(hasThreadCpu() ? { threadCpuMs } : {}),
        log: (line) => log(`node: ${line}`),
      },
      {
        scenarios,
        size: sizeFor("node"),
        profile: opts.profile ?? false,
      },
    );
  } finally {
    disposeRuntime();
  }
}

async function runBrowser(): Promise<RuntimeRun> {
  const server = await serveDemo(here("browser"));
  // timestamp-query (for --profile) is behind Chromium's WebGPU developer features.
  const browser = await launchChromium(["--enable-webgpu-developer-features"]);
  try {
    const page = await browser.newPage();
    page.on("console", (m) => {
      if (m.type() === "log") log(`browser: ${m.text()}`);
      else if (m.type() === "error") log(`browser error: ${m.text()}`);
    });
    page.on("pageerror", (e) => log(`browser page error: ${e.message}`));
    await page.goto(server.url);
    await page.waitForFunction(() => "webtuneBench" in window);
    const options = {
      scenarios,
      size: sizeFor("browser"),
      profile: opts.profile ?? false,
    };
    return (await page.evaluate(
      (o) =>
        (
          window as unknown as {
            webtuneBench: (o: unknown) => Promise<unknown>;
          }
        ).webtuneBench(o),
      options,
    )) as RuntimeRun;
  } finally {
    await browser.close();
    await server.close();
  }
}

function git(args: string[]): string {
  try {
    return execFileSync("git", args, {
      cwd: here(".."),
      encoding: "utf8",
    }).trim();
  } catch {
    return "";
  }
}

function stamp(run: RuntimeRun): StampedRun {
  const dirty = git(["status", "--porcelain", "--untracked-files=no"]) !== "";
  return {
    ...run,
    date: new Date().toISOString(),
    commit:
      (git(["rev-parse", "--short", "HEAD"]) || "unknown") +
      (dirty ? "+dirty" : ""),
    node: process.version,
  };
}

function print(run: StampedRun): void {
  console.log(
    `\n== ${run.runtime}: ${run.device} (size ${run.size}, ${run.seconds.toFixed(0)} s)`,
  );
  if (run.adapter.software)
    console.log(
      "   SOFTWARE ADAPTER: the GPU is the CPU; compare ratios only.",
    );
  console.log(
    `   roof ${run.roof.gflops.toFixed(2)} GFLOP/s (${run.roof.best})`,
  );
  for (const s of new Set(run.records.map((r) => r.scenario))) {
    const [head, ...rows] = scenarioCells(s, run.records);
    const table = new Table({ head: head!, style: { head: [], border: [] } });
    table.push(...rows);
    console.log(`\n${s}\n${table.toString()}`);
  }
  for (const [name, p] of Object.entries(run.profiles)) {
    const table = new Table({
      head: ["tfjs kernel", "count", "GPU ms", "share"],
      style: { head: [], border: [] },
    });
    table.push(
      ...p.top.map((k) => [
        k.kernel,
        k.count,
        k.gpu_ms.toFixed(1),
        `${(100 * k.share).toFixed(1)} %`,
      ]),
    );
    console.log(
      `\nprofile of one ${name} train step (${p.timer}; ${p.kernels} kernels, ${p.gpu_ms.toFixed(1)} GPU ms)\n${table.toString()}`,
    );
  }
  const [head, row] = headlineCells(run.headline);
  const table = new Table({ head: head!, style: { head: [], border: [] } });
  table.push(row!);
  console.log(`\nheadline (${run.runtime})\n${table.toString()}`);
  for (const [s, e] of Object.entries(run.failures))
    console.log(`FAILED ${s}: ${e}`);
}

/** Writes a file as the repo's Prettier would format it, so that `npm run lint` stays green after a run. */
async function writeFormatted(file: string, text: string): Promise<void> {
  const options = (await prettier.resolveConfig(file)) ?? {};
  await writeFile(
    file,
    await prettier.format(text, { ...options, filepath: file }),
  );
}

async function save(runs: StampedRun[]): Promise<void> {
  await mkdir(opts.out, { recursive: true });
  for (const run of runs) {
    const slug =
      `${run.runtime}-${run.adapter.architecture || run.adapter.vendor || "gpu"}`
        .toLowerCase()
        .replace(/[^a-z0-9]+/g, "-");
    // A partial run is named by its scenarios, so it never replaces a full run's file of the same day.
    const measured = new Set(run.records.map((r) => r.scenario));
    const partial = SCENARIOS.some((s) => !measured.has(s))
      ? `-${[...measured].join("-")}`
      : "";
    const file = join(
      opts.out,
      `${run.date.slice(0, 10)}-${slug}${partial}.json`,
    );
    // Each record carries the run's device, commit and date, so a record read alone is still attributable.
    const records = run.records.map((r) => ({
      ...r,
      device: run.device,
      commit: run.commit,
      date: run.date,
    }));
    await writeFormatted(file, JSON.stringify({ ...run, records }));
    log(`wrote ${file}`);
  }
  const all: StampedRun[] = [];
  for (const f of (await readdir(opts.out))
    .filter((f) => f.endsWith(".json"))
    .sort())
    all.push(
      JSON.parse(await readFile(join(opts.out, f), "utf8")) as StampedRun,
    );
  const current = await readFile(opts.resultsMd, "utf8").catch(
    () => "# Benchmark results\n",
  );
  await writeFormatted(opts.resultsMd, regenerateResults(current, all));
  log(`regenerated ${opts.resultsMd} from ${all.length} result files`);
}

const runs: StampedRun[] = [];
if (!opts.browser) runs.push(stamp(await runNode()));
if (!opts.node) runs.push(stamp(await runBrowser()));
runs.forEach(print);
if (opts.write) await save(runs);
const byRuntime = Object.fromEntries(runs.map((r) => [r.runtime, r.headline]));
const primary = runs[0]!;
console.log(
  JSON.stringify({
    ...primary.headline,
    runtime: primary.runtime,
    device: primary.device,
    ...(runs.length > 1 ? { by_runtime: byRuntime } : {}),
    failures: runs.flatMap((r) =>
      Object.keys(r.failures).map((s) => `${r.runtime}:${s}`),
    ),
  }),
);
process.exit(runs.some((r) => Object.keys(r.failures).length > 0) ? 1 : 0);
