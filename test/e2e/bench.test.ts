/**
 * `npm run bench` end to end at its smoke size, in both runtimes (Dawn in Node, SwiftShader in real Chromium):
 * every scenario runs, the results JSON and the regenerated RESULTS.md are written where asked, every record is
 * stamped, and the last line carries the headline ratios and the host scenario's counts. Timings are not asserted:
 * only that each is a positive finite number and that the correctness checks inside the scenarios hold (the host
 * scenario's: whole, non-negative counts, and the engine's graphs agreeing with the API's dispatch count).
 */
import { execFile } from "node:child_process";
import { copyFileSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { BEGIN } from "../../benchmarks/lib/report.js";
import type { StampedRun } from "../../benchmarks/lib/report.js";

const exec = promisify(execFile);
const root = fileURLToPath(new URL("../..", import.meta.url));

async function bench(...args: string[]) {
  const out = mkdtempSync(join(tmpdir(), "webtune-bench-"));
  const resultsMd = join(out, "RESULTS.md");
  copyFileSync(join(root, "benchmarks/RESULTS.md"), resultsMd);
  const { stdout } = await exec(
    process.execPath,
    [
      "--import",
      "tsx",
      "benchmarks/bench.ts",
      "--size",
      "smoke",
      "--out",
      out,
      "--results-md",
      resultsMd,
      ...args,
    ],
    { cwd: root, maxBuffer: 1 << 26 },
  );
  const headline = JSON.parse(stdout.trim().split("\n").at(-1)!) as Record<
    string,
    unknown
  >;
  const files = readdirSync(out).filter((f) => f.endsWith(".json"));
  const runs = files.map(
    (f) => JSON.parse(readFileSync(join(out, f), "utf8")) as StampedRun,
  );
  return { stdout, headline, runs, resultsMd: readFileSync(resultsMd, "utf8") };
}

const COUNT_KEYS = ["buffers_created_per_step", "bind_groups_created_per_step"];
const HEADLINE_KEYS = [
  "train_step_speedup_vs_naive",
  "mfu",
  "kernel_speedup_fwd_bwd",
  "kv_cache_speedup",
  "dispatches_per_step_gpt2",
  ...COUNT_KEYS,
  "host_enqueue_ms_gpt2",
];

/** The host scenario: both models' engine and gpt2's tape counted; whole counts; the graph agrees with the API. */
function checkHost(run: StampedRun) {
  const host = run.records.filter((r) => r.scenario === "host");
  expect(host.map((r) => r.case)).toEqual([
    "smollm2-135m, engine",
    "gpt2, engine",
    "gpt2, tape (before)",
  ]);
  const counts = [
    "dispatches",
    "dispatches_per_layer",
    "dispatches_fixed",
    "buffers_created",
    "bind_groups_created",
    "write_buffers",
    "submits",
    "pipelines_created",
    "shader_modules_created",
  ];
  for (const r of host) {
    for (const k of counts) {
      const v = r.metrics[k] as number;
      expect(Number.isInteger(v), `${r.case} ${k} = ${v}`).toBe(true);
      expect(v, `${r.case} ${k}`).toBeGreaterThanOrEqual(0);
    }
    expect(r.metrics["enqueue_ms"] as number).toBeGreaterThan(0);
    if (r.config["executor"] === "compiled") {
      expect(r.metrics["graph_dispatches"]).toBe(r.metrics["dispatches"]);
      expect(r.metrics["graph_dispatches_per_layer"]).toBe(
        r.metrics["dispatches_per_layer"],
      );
      expect(typeof r.metrics["targets_missed"]).toBe("string");
    }
  }
  const metric = (c: string, k: string) =>
    host.find((r) => r.case === c)!.metrics[k] as number;
  // The baseline is the tape's many small tfjs kernels.
  expect(metric("gpt2, tape (before)", "dispatches")).toBeGreaterThan(
    metric("gpt2, engine", "dispatches"),
  );
  expect(run.headline.dispatches_per_step_gpt2).toBe(
    metric("gpt2, engine", "dispatches"),
  );
  expect(run.headline.host_enqueue_ms_gpt2).toBe(
    metric("gpt2, engine", "enqueue_ms"),
  );
  expect(run.headline.buffers_created_per_step).toBe(
    Math.max(
      metric("gpt2, engine", "buffers_created"),
      metric("smollm2-135m, engine", "buffers_created"),
    ),
  );
}

function checkRun(run: StampedRun) {
  expect(run.failures).toEqual({});
  expect(new Set(run.records.map((r) => r.scenario))).toEqual(
    new Set([
      "load",
      "kernels",
      "train-step",
      "lora-vs-full",
      "generate",
      "scoring",
      "memory",
      "host",
    ]),
  );
  for (const r of run.records) {
    const stamped = r as typeof r & Record<string, unknown>;
    expect(stamped["device"]).toBe(run.device);
    expect(stamped["commit"]).toMatch(/^[0-9a-f]{7,}(\+dirty)?$/);
    expect(Date.parse(stamped["date"] as string)).toBeGreaterThan(0);
  }
  for (const [key, value] of Object.entries(run.headline)) {
    expect(Number.isFinite(value), key).toBe(true);
    // Buffers and bind groups a steady step creates: the engine's target is none.
    if (COUNT_KEYS.includes(key)) expect(value, key).toBeGreaterThanOrEqual(0);
    else expect(value, key).toBeGreaterThan(0);
  }
  checkHost(run);
  // Correctness inside the scenarios: cached and uncached greedy decoding agree token for token.
  const gen = run.records.find((r) => r.scenario === "generate")!;
  expect(gen.metrics["same_tokens"]).toBe(gen.config["new_tokens"]);
  // The compiled decoder and the tape path agree too, one prompt and a greedy batch; so do the label picks of
  // the shared-prompt scoring and whole rows, which runs fewer tokens.
  expect(gen.metrics["tape_same_tokens"]).toBe(gen.config["new_tokens"]);
  const batch = run.records.find(
    (r) => r.metrics["tape_same_rows"] !== undefined,
  )!;
  expect(batch.metrics["tape_same_rows"]).toBe(batch.config["rows"]);
  const scoring = run.records.find((r) => r.scenario === "scoring")!;
  expect(scoring.metrics["same_labels"]).toBe(scoring.config["rows"]);
  expect(scoring.metrics["scoring_tokens"] as number).toBeLessThan(
    scoring.metrics["whole_rows_tokens"] as number,
  );
  const full = run.records.find((r) => r.scenario === "lora-vs-full")!;
  expect(full.metrics["full_trainable"] as number).toBeGreaterThan(
    full.metrics["lora_trainable"] as number,
  );
  // Each compact base holds fewer weight bytes, and peaks lower, than the same model in f32 in the same run.
  const memory = run.records.filter(
    (r) => r.scenario === "memory" && r.metrics["peak_bytes"] !== undefined,
  );
  expect(memory).toHaveLength(3);
  for (const r of memory) {
    expect(r.metrics["base_weight_bytes"] as number).toBeLessThan(
      r.metrics["f32_base_weight_bytes"] as number,
    );
    expect(r.metrics["f32_vs_compact_peak"] as number).toBeGreaterThan(1);
  }
  const quality = run.records.find(
    (r) => r.scenario === "memory" && r.metrics["nf4_val_loss_after"],
  )!;
  expect(Number.isFinite(quality.metrics["relative_difference"])).toBe(true);
}

describe("npm run bench (smoke size)", () => {
  it("runs every scenario under Node, writes stamped results and regenerates RESULTS.md", async () => {
    const { headline, runs, resultsMd, stdout } = await bench("--node");
    expect(runs).toHaveLength(1);
    checkRun(runs[0]!);
    expect(headline["runtime"]).toBe("node");
    for (const key of HEADLINE_KEYS)
      expect(headline[key], key).toBe(
        runs[0]!.headline[key as keyof StampedRun["headline"]],
      );
    expect(stdout).toMatch(/SOFTWARE ADAPTER/);
    expect(resultsMd).toContain(BEGIN);
    expect(resultsMd).toContain(`### Node, Dawn: ${runs[0]!.device}`);
    // The hand-written GPU sections survive.
    expect(resultsMd).toContain("## NVIDIA H200 (Dawn/Vulkan adapter");
  });

  it("runs every scenario in headless Chromium on its WebGPU", async () => {
    const { headline, runs } = await bench("--browser");
    expect(runs).toHaveLength(1);
    expect(runs[0]!.runtime).toBe("browser");
    expect(runs[0]!.device).toMatch(/swiftshader/i);
    checkRun(runs[0]!);
    expect(headline["runtime"]).toBe("browser");
    // SwiftShader runs every scenario in about 4 minutes on an idle 2-core machine: the default 5 would leave
    // little room on a busy one.
  }, 600_000);
});
