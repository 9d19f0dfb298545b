/**
 * How results are shown and kept: one column layout per scenario, printed as a terminal table and as Markdown;
 * a JSON file per runtime run; and benchmarks/RESULTS.md's generated section, the latest run of each device.
 */
import type { BenchRecord, Headline, RuntimeRun, Scenario } from "./run.js";

type Column = [header: string, cell: (r: BenchRecord) => string];

const num = (digits: number) => (v: unknown) =>
  typeof v === "number" ? v.toFixed(digits) : String(v ?? "–");
const m =
  (key: string, digits = 1) =>
  (r: BenchRecord) =>
    num(digits)(r.metrics[key]);
const c = (key: string) => (r: BenchRecord) => String(r.config[key] ?? "");
const mib = (key: string) => (r: BenchRecord) =>
  num(1)((r.metrics[key] as number) / 2 ** 20);
const times = (key: string) => (r: BenchRecord) =>
  typeof r.metrics[key] === "number" ? `${m(key, 2)(r)}×` : "–";
const gb = (key: string) => (r: BenchRecord) =>
  typeof r.metrics[key] === "number"
    ? ((r.metrics[key] as number) / 1e9).toFixed(3)
    : "–";
/** A count: as is when whole, else one decimal (a split or an extrapolation that is not). */
const count = (v: unknown) =>
  typeof v !== "number" ? "–" : Number.isInteger(v) ? String(v) : v.toFixed(1);
const n = (key: string) => (r: BenchRecord) => count(r.metrics[key]);
const hostCase = (r: BenchRecord) =>
  `${r.case} (${c("layers")(r)} layers` +
  (r.metrics["extrapolated"]
    ? `; counted at ${c("counted_layers")(r)}, extrapolated)`
    : ")");
const enqueue = (r: BenchRecord) =>
  `${m("enqueue_ms", 2)(r)} ${String(r.metrics["enqueue_timer"] ?? "").startsWith("wall") ? "wall" : "CPU"}`;
const targets = (r: BenchRecord) =>
  r.config["executor"] !== "compiled"
    ? "–"
    : r.metrics["targets_missed"]
      ? `missed: ${String(r.metrics["targets_missed"])}`
      : "met";
const valLosses = (r: BenchRecord) =>
  typeof r.metrics["nf4_val_loss_after"] === "number"
    ? `${m("f32_val_loss_after", 4)(r)} → ${m("nf4_val_loss_after", 4)(r)} (${(100 * (r.metrics["relative_difference"] as number)).toFixed(2)} %)`
    : "–";

export const COLUMNS: Record<Scenario, Column[]> = {
  load: [
    ["case", (r) => `${r.case} (${c("source")(r)})`],
    ["file MB", m("file_mb", 2)],
    ["parse MB/s", m("parse_mb_per_s")],
    ["raw read MB/s", m("raw_read_mb_per_s")],
    ["parse ÷ raw", m("parse_vs_raw", 3)],
    ["first logits ms", m("first_logits_ms", 0)],
  ],
  kernels: [
    ["shape", (r) => r.case],
    [
      "T×in→out, r",
      (r) => `${c("T")(r)}×${c("in")(r)}→${c("out")(r)}, ${c("r")(r)}`,
    ],
    ["stock tfjs ms", m("naive_ms")],
    ["fused ms", m("fused_ms")],
    ["speedup", times("speedup")],
    ["fused GFLOP/s", m("fused_gflops", 2)],
  ],
  "train-step": [
    ["model", (r) => `${r.case} (${c("layers")(r)} layers)`],
    ["batch×seq", (r) => `${c("batch")(r)}×${c("seq")(r)}`],
    ["webtune ms/step", m("ms_per_step", 0)],
    ["tokens/s", m("tokens_per_s", 1)],
    ["GFLOP/s", m("model_gflops", 2)],
    ["MFU", m("mfu", 3)],
    ["naive ms/step", m("naive_ms_per_step", 0)],
    ["naive MFU", m("naive_mfu", 3)],
    ["speedup vs naive", times("speedup_vs_naive")],
  ],
  "lora-vs-full": [
    ["case", (r) => `${r.case}, ${c("batch")(r)}×${c("seq")(r)}`],
    ["LoRA ms/step", m("lora_ms_per_step", 0)],
    ["full ms/step", m("full_ms_per_step", 0)],
    ["full ÷ LoRA time", times("full_vs_lora_time")],
    ["LoRA peak MiB", mib("lora_peak_bytes")],
    ["full peak MiB", mib("full_peak_bytes")],
    ["full ÷ LoRA memory", times("full_vs_lora_peak_bytes")],
  ],
  memory: [
    [
      "case",
      (r) =>
        `${r.case} (${c("layers")(r)} layers, ${c("batch")(r)}×${c("seq")(r)})`,
    ],
    ["peak GB", gb("peak_bytes")],
    ["target GB", gb("target_bytes")],
    ["weights GB", gb("base_weight_bytes")],
    ["activations GB", gb("activation_bytes")],
    ["estimate GB", gb("estimated_peak_bytes")],
    ["f32 base peak GB", gb("f32_peak_bytes")],
    ["ms/step", m("ms_per_step", 0)],
    ["val loss f32 → NF4", (r) => valLosses(r)],
  ],
  host: [
    ["model, executor", hostCase],
    ["batch×seq", (r) => `${c("batch")(r)}×${c("seq")(r)}`],
    ["dispatches/step (≤ 40·L + 60)", n("dispatches")],
    [
      "per layer + fixed (≤ 40 + 60)",
      (r) => `${n("dispatches_per_layer")(r)} + ${n("dispatches_fixed")(r)}`,
    ],
    ["graph dispatches", n("graph_dispatches")],
    ["buffers (0)", n("buffers_created")],
    ["bind groups (0)", n("bind_groups_created")],
    ["writeBuffers (≤ 3)", n("write_buffers")],
    ["submits (≤ 2)", n("submits")],
    ["pipelines (0)", n("pipelines_created")],
    ["enqueue ms (gpt2 ≤ 15)", enqueue],
    ["targets", targets],
  ],
  generate: [
    [
      "case",
      (r) => `${r.case}, ${c("prompt_tokens")(r)}+${c("new_tokens")(r)} tokens`,
    ],
    ["KV cache tokens/s", m("cached_tokens_per_s")],
    ["tape cache tokens/s", m("tape_cached_tokens_per_s")],
    ["vs tape", times("engine_vs_tape")],
    ["no cache tokens/s", m("uncached_tokens_per_s")],
    ["speedup", times("speedup")],
    [
      "same as no cache / tape path",
      (r) =>
        r.metrics["tape_same_rows"] !== undefined
          ? `–, ${String(r.metrics["tape_same_rows"])}/${c("rows")(r)} rows`
          : `${String(r.metrics["same_tokens"])}, ${String(r.metrics["tape_same_tokens"] ?? "–")} of ${c("new_tokens")(r)} tokens`,
    ],
  ],
  scoring: [
    ["case", (r) => r.case],
    ["prompt run once (ms)", m("scoring_ms", 0)],
    ["whole rows (ms)", m("whole_rows_ms", 0)],
    ["speedup", times("scoring_speedup")],
    [
      "tokens run (once / whole rows)",
      (r) =>
        `${String(r.metrics["scoring_tokens"])} / ${String(r.metrics["whole_rows_tokens"])}`,
    ],
    [
      "same labels",
      (r) => `${String(r.metrics["same_labels"])}/${c("rows")(r)}`,
    ],
  ],
};

/** The rows of one scenario as [header, ...rows] cells. */
export function scenarioCells(
  scenario: Scenario,
  records: BenchRecord[],
): string[][] {
  const columns = COLUMNS[scenario];
  return [
    columns.map(([h]) => h),
    ...records
      .filter((r) => r.scenario === scenario)
      .map((r) => columns.map(([, cell]) => cell(r))),
  ];
}

export function markdownTable(cells: string[][]): string {
  const [head, ...rows] = cells;
  const line = (row: string[]) => `| ${row.join(" | ")} |`;
  return [line(head!), line(head!.map(() => "---")), ...rows.map(line)].join(
    "\n",
  );
}

/** The headline's cells; a field a results file predates (the host counts before 2026-12) shows as "–". */
export function headlineCells(h: Headline): string[][] {
  const f = (v: number | null | undefined) =>
    typeof v === "number" ? v.toFixed(3) : "–";
  return [
    [
      "train_step_speedup_vs_naive",
      "mfu",
      "kernel_speedup_fwd_bwd",
      "kv_cache_speedup",
      "dispatches_per_step_gpt2",
      "buffers_created_per_step",
      "bind_groups_created_per_step",
      "host_enqueue_ms_gpt2",
    ],
    [
      f(h.train_step_speedup_vs_naive),
      f(h.mfu),
      f(h.kernel_speedup_fwd_bwd),
      f(h.kv_cache_speedup),
      count(h.dispatches_per_step_gpt2),
      count(h.buffers_created_per_step),
      count(h.bind_groups_created_per_step),
      typeof h.host_enqueue_ms_gpt2 === "number"
        ? h.host_enqueue_ms_gpt2.toFixed(2)
        : "–",
    ],
  ];
}

/** What a results file holds: one runtime's run, stamped. */
export interface StampedRun extends RuntimeRun {
  date: string;
  commit: string;
  node: string;
}

function stamp(run: StampedRun): string {
  return `${run.date}, commit ${run.commit}, size \`${run.size}\`, ${run.seconds.toFixed(0)} s`;
}

function hasHeadline(run: StampedRun): boolean {
  return Object.values(run.headline).some((v) => v !== null);
}

/**
 * The Markdown of one device's runs (oldest first): the newest run's stamp; the headline and roof of the newest
 * run that has a headline; then each scenario from the newest run that measured it, stamped when that is not the
 * newest run. A partial run (`--scenarios memory`) thus updates its scenarios and keeps the others.
 */
export function deviceMarkdown(runs: StampedRun[]): string {
  const newest = runs.at(-1)!;
  const headed = runs.filter(hasHeadline).at(-1) ?? newest;
  const parts = [
    `### ${newest.runtime === "node" ? "Node, Dawn" : "Chromium"}: ${newest.device}`,
    `${stamp(newest)}` +
      (newest.adapter.software
        ? ". **Software adapter: the GPU is the CPU.**"
        : "."),
    "",
    markdownTable(headlineCells(headed.headline)),
    "",
    `Roof (best square f32 matmul in ${headed === newest ? "this run" : `the run of ${headed.date}`}): ` +
      `**${headed.roof.gflops.toFixed(2)} GFLOP/s** (${headed.roof.best}); ` +
      Object.entries(headed.roof.bySize)
        .map(
          ([who, sizes]) =>
            `${who}: ${Object.entries(sizes)
              .map(([n, g]) => `${g.toFixed(2)} (${n})`)
              .join(", ")}`,
        )
        .join("; ") +
      ".",
  ];
  const byScenario = new Map<Scenario, StampedRun>();
  for (const run of runs)
    for (const r of run.records) byScenario.set(r.scenario, run);
  for (const [s, run] of byScenario)
    parts.push(
      "",
      `**${s}**` + (run === newest ? "" : ` (run of ${stamp(run)})`),
      "",
      markdownTable(scenarioCells(s, run.records)),
    );
  const profiled = runs.filter((r) => Object.keys(r.profiles).length).at(-1);
  for (const [name, p] of Object.entries(profiled?.profiles ?? {})) {
    parts.push(
      "",
      `**profile: ${name} train step** (${p.timer}; ${p.kernels} tfjs kernels, ${p.gpu_ms.toFixed(1)} GPU ms` +
        (profiled === newest ? ")" : `; run of ${profiled!.date})`),
      "",
      markdownTable([
        ["tfjs kernel", "count", "GPU ms", "share"],
        ...p.top.map((k) => [
          k.kernel,
          String(k.count),
          k.gpu_ms.toFixed(1),
          `${(100 * k.share).toFixed(1)} %`,
        ]),
      ]),
    );
  }
  const failed = Object.entries(newest.failures);
  if (failed.length)
    parts.push("", "**Failed:**", ...failed.map(([s, e]) => `- ${s}: ${e}`));
  return parts.join("\n");
}

export const BEGIN =
  "<!-- bench:begin: generated by `npm run bench` from benchmarks/results/*.json; edits here are overwritten -->";
export const END = "<!-- bench:end -->";

/** RESULTS.md with its generated section replaced by the latest results of each (runtime, device). */
export function regenerateResults(current: string, runs: StampedRun[]): string {
  const byDevice = new Map<string, StampedRun[]>();
  for (const run of [...runs].sort((a, b) => a.date.localeCompare(b.date))) {
    const key = `${run.runtime} ${run.device}`;
    byDevice.set(key, [...(byDevice.get(key) ?? []), run]);
  }
  const section = [
    BEGIN,
    "",
    "## Latest `npm run bench` results per device",
    "",
    "Every figure is a ratio to a baseline measured in the same run, or an absolute number shown beside one.",
    "Each scenario shows its latest run; `benchmarks/README.md` says what each scenario measures.",
    "",
    [...byDevice.values()].map(deviceMarkdown).join("\n\n"),
    "",
    END,
  ].join("\n");
  const start = current.indexOf(BEGIN);
  const end = current.indexOf(END);
  if (start >= 0 && end > start)
    return current.slice(0, start) + section + current.slice(end + END.length);
  // First run: the generated section goes after the title paragraph.
  const split = current.indexOf("\n## ");
  return split < 0
    ? `${current.trimEnd()}\n\n${section}\n`
    : `${current.slice(0, split)}\n${section}\n${current.slice(split)}`;
}
