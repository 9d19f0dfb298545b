/**
 * The `host` scenario: what one steady-state optimizer step costs the host, counted at the WebGPU API
 * (`api_counter.ts`) whatever the code above it does: dispatches (per layer and fixed), buffers, bind groups and
 * pipelines created, writeBuffers, submits, and the main thread's time to enqueue the step. For the compiled step
 * (the engine, the Trainer's default) and, as the in-run baseline, tfjs's tape (`executor: "tape"`, what webtune
 * did before).
 *
 * A step is the Trainer's, counted in windows from one step's enqueue to the next (`count_steps.ts`). The enqueue
 * time is the synchronous part of the step call alone; the GPU works on after it returns.
 *
 * Per layer: the same model is counted at a second depth and count = fixed + perLayer·L solved, for every counter.
 * For the engine this is checked against the compiled graphs' dispatch lists: each window's API count must equal
 * the dispatches of the graphs it ran, and perLayer the dispatches labelled with one layer ("transformer.h.3 …",
 * "model.layers.7 …"). A mismatch fails the scenario.
 */
import {
  countSteps,
  WARMUP,
  type Counted,
  type Executor,
} from "./count_steps.js";
import { zeroCounts, type Counts } from "./api_counter.js";
import {
  configWithLayers,
  DEFAULT_TARGETS,
  dimsOf,
  type ModelName,
} from "./models.js";
import type { BenchHost, BenchRecord, BenchSize } from "./run.js";
import { median } from "./stats.js";

export interface HostSize {
  /** Counted steps at the size's depth; the enqueue time is their median. */
  steps: number;
  /** Models whose tape path is counted too, as the baseline. */
  tapeModels: ModelName[];
  /** Depth the tape is counted at; undefined: the size's. Fewer: every count extrapolated with the split. */
  tapeLayers?: number;
}

/** The targets for the engine's steady step. */
export const HOST_TARGETS = {
  dispatchesPerLayer: 40,
  dispatchesFixed: 60,
  buffers: 0,
  bindGroups: 0,
  writeBuffers: 3,
  submits: 2,
  pipelines: 0,
  /** Main-thread CPU ms to enqueue one gpt2 step. */
  enqueueMsGpt2: 15,
};

/**
 * The engine's API counts against its graphs: every window's dispatches equal those of the graphs it ran, and in
 * the deeper count every layer after the first has as many labelled dispatches as the split gives per layer.
 * Throws on any difference. Returns the graph's count at the counted depth and its per-layer count.
 */
function checkGraph(
  name: string,
  main: Counted,
  other: Counted,
  perLayer: number,
): { graph_dispatches: number | null; graph_dispatches_per_layer: number } {
  for (const c of [main, other])
    c.windows.forEach((w, i) => {
      if (w.graphDispatches !== w.counts.dispatches)
        throw new Error(
          `host: ${name} (${c.layers} layers), counted step ${i + 1}: ${w.counts.dispatches} dispatches at the ` +
            `API, ${w.graphDispatches ?? "no"} in the compiled graphs run; something outside the graphs dispatched`,
        );
    });
  const deeper = main.layers > other.layers ? main : other;
  const byLayer = dispatchesByLayer(deeper.windows[0]!.labels).layers;
  const later = byLayer.slice(1);
  if (byLayer.length !== deeper.layers || later.some((n) => n !== perLayer))
    throw new Error(
      `host: ${name}: the API's split gives ${perLayer} dispatches per layer; the graph's labels of ` +
        `${deeper.layers} layers give [${byLayer.join(", ")}] per layer`,
    );
  return {
    graph_dispatches: main.windows[0]!.graphDispatches,
    graph_dispatches_per_layer: perLayer,
  };
}

/** Dispatches per layer index, from labels such as "transformer.h.3.attn dq" or "model.layers.7.mlp". */
export function dispatchesByLayer(labels: string[]): {
  layers: number[];
  other: number;
} {
  const layers: number[] = [];
  let other = 0;
  for (const label of labels) {
    const m = /(?:^|\.)(?:h|layers)\.(\d+)(?=[.\s]|$)/.exec(label);
    if (!m) other++;
    else layers[Number(m[1])] = (layers[Number(m[1])] ?? 0) + 1;
  }
  return { layers: Array.from(layers, (n) => n ?? 0), other };
}

const round2 = (x: number) => Math.round(x * 100) / 100;

/** count = fixed + perLayer·L from two depths, for every counter. */
function split(a: Counted, b: Counted) {
  const perLayer = zeroCounts();
  const fixed = zeroCounts();
  for (const k of Object.keys(perLayer) as (keyof Counts)[]) {
    // Two decimals: the tape's counts are not exactly linear in depth.
    perLayer[k] = round2((a.counts[k] - b.counts[k]) / (a.layers - b.layers));
    fixed[k] = round2(a.counts[k] - perLayer[k] * a.layers);
  }
  return { perLayer, fixed };
}

/** The enqueue times of a count's windows: CPU where the host can read it, else wall. */
function enqueueMs(c: Counted): { ms: number; cpu: boolean; all: number[] } {
  const cpu = c.windows.every((w) => w.enqueueCpuMs !== null);
  const all = c.windows.map((w) => (cpu ? w.enqueueCpuMs! : w.enqueueWallMs));
  return { ms: median(all), cpu, all };
}

/** The engine's targets this record misses (names), or [] when every one is met. */
export function missedTargets(
  metrics: BenchRecord["metrics"],
  model: string,
  layers: number,
): string[] {
  const t = HOST_TARGETS;
  const n = (k: string) => metrics[k] as number;
  const missed: string[] = [];
  if (
    n("dispatches") > t.dispatchesPerLayer * layers + t.dispatchesFixed ||
    n("dispatches_per_layer") > t.dispatchesPerLayer
  )
    missed.push("dispatches");
  if (n("buffers_created") > t.buffers) missed.push("buffers");
  if (n("bind_groups_created") > t.bindGroups) missed.push("bind groups");
  if (n("write_buffers") > t.writeBuffers) missed.push("writeBuffers");
  if (n("submits") > t.submits) missed.push("submits");
  if (n("pipelines_created") + n("shader_modules_created") > t.pipelines)
    missed.push("pipelines");
  if (model === "gpt2" && n("enqueue_ms") > t.enqueueMsGpt2)
    missed.push("enqueue ms");
  return missed;
}

/** Objects created in the counted windows, each once with how often: where a steady step allocates. */
function creationsOf(c: Counted): string {
  const seen = new Map<string, number>();
  for (const w of c.windows)
    for (const x of w.creations) {
      const key = `${x.call} "${x.label}" at ${x.at}`;
      seen.set(key, (seen.get(key) ?? 0) + 1);
    }
  return [...seen].map(([k, n]) => `${n}× ${k}`).join("; ");
}

/** A record's metrics: every count at `layers` (measured there, or extrapolated with the split), the enqueue time. */
function hostMetrics(
  main: Counted,
  other: Counted,
  layers: number,
): BenchRecord["metrics"] {
  const { perLayer, fixed } = split(main, other);
  const at = (k: keyof Counts) => round2(fixed[k] + perLayer[k] * layers);
  const e = enqueueMs(main);
  const e2 = enqueueMs(other);
  return {
    dispatches: at("dispatches"),
    dispatches_per_layer: perLayer.dispatches,
    dispatches_fixed: fixed.dispatches,
    graph_dispatches: null,
    graph_dispatches_per_layer: null,
    buffers_created: at("buffers"),
    bind_groups_created: at("bindGroups"),
    write_buffers: at("writeBuffers"),
    submits: at("submits"),
    pipelines_created: at("pipelines"),
    shader_modules_created: at("shaderModules"),
    bind_group_layouts_created: at("bindGroupLayouts"),
    command_encoders: at("encoders"),
    compute_passes: at("passes"),
    buffer_copies: at("copies"),
    set_pipelines: at("setPipelines"),
    set_bind_groups: at("setBindGroups"),
    map_async: at("maps"),
    // Linear in depth like the counts, where the count is at fewer layers.
    enqueue_ms:
      e.ms +
      ((e.ms - e2.ms) / (main.layers - other.layers)) * (layers - main.layers),
    enqueue_timer: e.cpu
      ? "main-thread CPU (/proc schedstat)"
      : "wall (performance.now)",
    enqueue_ms_all: e.all.map((ms) => ms.toFixed(2)).join(" "),
    enqueue_wall_ms: median(main.windows.map((w) => w.enqueueWallMs)),
    extrapolated: main.layers !== layers,
    steady: main.varying.length === 0 && other.varying.length === 0,
    varying: [...main.varying, ...other.varying].join("; "),
    created: creationsOf(main),
  };
}

/** One model and executor: counted at its depth and at a second one, split, checked, as a record. */
export async function hostCase(
  host: BenchHost,
  name: ModelName,
  executor: Executor,
  size: BenchSize,
): Promise<BenchRecord> {
  const layers = dimsOf(configWithLayers(name, size.trainLayers)).layers;
  const counted = Math.min(
    executor === "tape" ? (size.host.tapeLayers ?? layers) : layers,
    layers,
  );
  // The second depth: 2 layers (1 when the first is 2). Layer 0 differs from the others (no input gradient), so
  // the split is exact from any two depths of at least one layer.
  const second = counted === 2 ? 1 : 2;
  const what = `${name} ${executor === "compiled" ? "engine" : "tape"}`;
  host.log(`  ${what}: ${counted} layers, ${size.batch}×${size.seq}`);
  const count = (depth: number, steps: number) =>
    countSteps(host, name, depth, executor, size, steps);
  const main = await count(counted, size.host.steps);
  host.log(`  ${what}: ${second} layers, for the split`);
  const other = await count(second, 1);
  const metrics = hostMetrics(main, other, layers);
  if (executor === "compiled") {
    Object.assign(
      metrics,
      checkGraph(name, main, other, metrics["dispatches_per_layer"] as number),
    );
    metrics["targets_missed"] = missedTargets(metrics, name, layers).join(", ");
  }
  const v = (k: string) => String(metrics[k]);
  host.log(
    `  ${what}: ${v("dispatches")} dispatches (${v("dispatches_per_layer")}/layer + ${v("dispatches_fixed")}), ` +
      `${v("buffers_created")} buffers, ${v("bind_groups_created")} bind groups, ${v("write_buffers")} ` +
      `writeBuffers, ${v("submits")} submits, ${v("pipelines_created")} pipelines; enqueue ` +
      `${(metrics["enqueue_ms"] as number).toFixed(2)} ms (${v("enqueue_timer")}; steps ${v("enqueue_ms_all")})`,
  );
  if (metrics["varying"]) host.log(`  ${what}: varies: ${v("varying")}`);
  if (metrics["created"]) host.log(`  ${what}: created: ${v("created")}`);
  return {
    scenario: "host",
    case: `${name}, ${executor === "compiled" ? "engine" : "tape (before)"}`,
    config: {
      model: `${name} config, random weights`,
      executor,
      layers,
      counted_layers: `${counted} and ${second}`,
      batch: size.batch,
      seq: size.seq,
      r: 8,
      alpha: 16,
      targets: DEFAULT_TARGETS[name].join(","),
      warmup: WARMUP,
      steps: size.host.steps,
    },
    metrics,
  };
}

/** The scenario: each model's engine, and the tape for the baseline models. */
export async function hostScenario(
  host: BenchHost,
  size: BenchSize,
): Promise<BenchRecord[]> {
  const records: BenchRecord[] = [];
  const tape = size.host.tapeModels.filter((m) => size.trainModels.includes(m));
  // The baseline is never left out: the first model's when none of the named ones runs.
  if (tape.length === 0) tape.push(size.trainModels[0]!);
  for (const name of size.trainModels) {
    records.push(await hostCase(host, name, "compiled", size));
    if (tape.includes(name))
      records.push(await hostCase(host, name, "tape", size));
  }
  return records;
}
