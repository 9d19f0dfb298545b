/**
 * The `engine` part of bench.ts: host time against GPU-busy time per step of webtune's compiled training step (the
 * engine, the Trainer's default executor), on the model and batches of the `train` part.
 *
 * One Trainer run: warm-up steps, then `steps` steps as the Trainer runs them (step k enqueued, then step k−1's loss
 * read while k runs), then `isolated` steps each enqueued on an idle GPU. For every counted step:
 * - enqueue: wall ms of the Trainer's synchronous step call (the host's whole share of the step: batch layout,
 *   writeBuffers, encoding the pass, the submit), with the WebGPU calls it made (`api_counter.ts`);
 * - GPU: the step's compute pass from its timestamp queries (`pass_timer.ts`), where the device has
 *   `timestamp-query`; and, everywhere, submit→done: from the end of the enqueue (or the end of the previous
 *   step's GPU work, if later) to `queue.onSubmittedWorkDone()`;
 * - wall: from one step's enqueue to the next (the Trainer's cadence), and for isolated steps, enqueue to done.
 * The Trainer's step is hooked as the host scenario hooks it (`count_steps.ts`), which also checks that the run
 * compiled a training session (a Trainer that fell back to the tape fails this part).
 */
import {
  gpuDevice,
  Trainer,
  type LoraModel,
  type PretrainedModel,
  type TrainBatch,
  type TrainerOptions,
} from "@webtune/core";
import { ApiCounter, type Counts } from "../lib/api_counter.js";
import { hookSteps, watchEngine } from "../lib/count_steps.js";
import { PassTimer } from "../lib/pass_timer.js";
import { median } from "../lib/stats.js";
import { sig, type PartContext } from "./part.js";

export interface EngineStepOptions {
  build: () => Promise<{ model: PretrainedModel; peft: LoraModel }>;
  batches: TrainBatch[];
  /** The train part's Trainer options, less maxSteps. */
  trainer: Omit<TrainerOptions, "maxSteps" | "onEvent" | "executor">;
  tokensPerStep: number;
  warmup: number;
  /** Steps timed as the Trainer runs them. */
  steps: number;
  /** Steps each enqueued on an idle GPU. */
  isolated: number;
  config: Record<string, unknown>;
}

interface StepRecord {
  index: number;
  isolated: boolean;
  /** When the Trainer called the step (before any wait for an idle GPU). */
  called: number;
  start: number;
  enqueueMs: number;
  submitted: number;
  done: Promise<number>;
  counts: Partial<Counts>;
}

const COUNTED: (keyof Counts)[] = [
  "dispatches",
  "submits",
  "writeBuffers",
  "buffers",
  "bindGroups",
  "pipelines",
  "passes",
];

export async function engineStepPart(
  ctx: PartContext,
  o: EngineStepOptions,
): Promise<void> {
  const { log } = ctx;
  const { model, peft } = await o.build();
  const device = gpuDevice();
  const timer = new PassTimer(device);
  const counter = new ApiCounter(0);
  const compiled = watchEngine(peft, () => undefined);
  const first = o.warmup;
  const last = o.warmup + o.steps + o.isolated; // one more step closes the last pipelined window
  const records: StepRecord[] = [];
  let calls = 0;
  let warmDone: Promise<number> = Promise.resolve(0);
  try {
    const trainer = new Trainer(peft, {
      ...o.trainer,
      maxSteps: last + 1,
    });
    hookSteps(trainer, (enqueue) => {
      const index = calls++;
      const called = performance.now();
      if (index === first - 1) {
        // The last warm-up step: when its GPU work ends, the first counted step's may begin.
        const pending = enqueue();
        warmDone = device.queue
          .onSubmittedWorkDone()
          .then(() => performance.now());
        return pending;
      }
      if (index < first || index >= last) return enqueue();
      const isolated = index >= first + o.steps;
      const go = () => {
        if (!timer.installed) {
          // Timer first: the counter, installed on top, then never sees the timer's own calls.
          timer.install();
          counter.install();
        }
        const before = counter.peek();
        timer.tag = String(index);
        const start = performance.now();
        const pending = enqueue();
        const submitted = performance.now();
        timer.tag = undefined;
        const after = counter.peek();
        const counts: Partial<Counts> = {};
        for (const k of COUNTED) counts[k] = after[k] - before[k];
        records.push({
          index,
          isolated,
          called,
          start,
          enqueueMs: submitted - start,
          submitted,
          done: device.queue
            .onSubmittedWorkDone()
            .then(() => performance.now()),
          counts,
        });
        return pending;
      };
      return isolated
        ? device.queue.onSubmittedWorkDone().then(go) // the GPU idle first
        : go();
    });
    await trainer.train({ train: o.batches });
  } finally {
    counter.restore();
    timer.restore();
  }
  if (!compiled())
    throw new Error(
      "the Trainer did not compile a training session: this is not the engine's step",
    );
  if (records.length !== o.steps + o.isolated)
    throw new Error(
      `counted ${records.length} steps, expected ${o.steps + o.isolated}`,
    );
  const gpuByTag = await timer.byTag();
  const done = await Promise.all(records.map((r) => r.done));
  const beforeFirst = await warmDone;
  timer.dispose();
  const rows = records.map((r, i) => {
    const ts = gpuByTag.get(String(r.index));
    const prevDone = i > 0 ? done[i - 1]! : beforeFirst;
    const next = records[i + 1];
    return {
      ...r,
      gpuTsMs: ts ? ts.reduce((a, b) => a + b, 0) : null,
      submitToDoneMs: done[i]! - Math.max(r.submitted, prevDone),
      wallMs: r.isolated
        ? done[i]! - r.start
        : next
          ? next.called - r.called
          : NaN,
    };
  });
  const summarize = (isolated: boolean) => {
    const rs = rows.filter((r) => r.isolated === isolated);
    if (rs.length === 0) return null;
    const med = (xs: (number | null)[]) => {
      const ok = xs.filter((x): x is number => x !== null && !Number.isNaN(x));
      return ok.length > 0 ? sig(median(ok)) : null;
    };
    const counts = Object.fromEntries(
      COUNTED.map((k) => [k, median(rs.map((r) => r.counts[k] ?? 0))]),
    );
    const wall = med(rs.map((r) => r.wallMs));
    const enqueue = med(rs.map((r) => r.enqueueMs))!;
    const gpuTs = med(rs.map((r) => r.gpuTsMs));
    const gpuDone = med(rs.map((r) => r.submitToDoneMs))!;
    const gpu = gpuTs ?? gpuDone;
    return {
      steps: rs.length,
      wall_ms: wall,
      enqueue_ms: enqueue,
      gpu_ms_timestamp: gpuTs,
      gpu_ms_submit_to_done: gpuDone,
      host_share_of_wall: wall ? sig(enqueue / wall) : null,
      gpu_busy_share_of_wall: wall ? sig(gpu / wall) : null,
      host_over_gpu: sig(enqueue / gpu),
      per_step: rs.map((r) => ({
        wall_ms: sig(r.wallMs),
        enqueue_ms: sig(r.enqueueMs),
        gpu_ms_timestamp: r.gpuTsMs === null ? null : sig(r.gpuTsMs),
        gpu_ms_submit_to_done: sig(r.submitToDoneMs),
      })),
      api_calls_in_enqueue: counts,
    };
  };
  const pipelined = summarize(false)!;
  const isolated = summarize(true);
  const f = (x: number | null | undefined) =>
    x === null || x === undefined ? "n/a" : x.toFixed(2);
  log(
    `timer: ${timer.available ? "timestamp-query on the engine's compute pass" : "no timestamp-query: submit→done only"}` +
      (timer.skipped ? ` (${timer.skipped} passes untimed)` : ""),
  );
  log(
    `pipelined (as the Trainer runs, ${pipelined.steps} steps, medians): wall ${f(pipelined.wall_ms)} ms/step = ` +
      `${pipelined.wall_ms ? ((o.tokensPerStep * 1000) / pipelined.wall_ms).toFixed(0) : "n/a"} tokens/s; host enqueue ` +
      `${f(pipelined.enqueue_ms)} ms; GPU busy ${f(pipelined.gpu_ms_timestamp)} ms (timestamps), ${f(pipelined.gpu_ms_submit_to_done)} ms (submit→done)`,
  );
  for (const r of pipelined.per_step)
    log(
      `  step: wall ${f(r.wall_ms)}  enqueue ${f(r.enqueue_ms)}  GPU ${f(r.gpu_ms_timestamp)} (ts) ${f(r.gpu_ms_submit_to_done)} (done)`,
    );
  if (isolated)
    log(
      `isolated (idle GPU before each, ${isolated.steps} steps): enqueue→done ${f(isolated.wall_ms)} ms; host enqueue ` +
        `${f(isolated.enqueue_ms)} ms; GPU ${f(isolated.gpu_ms_timestamp)} ms (timestamps), ${f(isolated.gpu_ms_submit_to_done)} ms (submit→done)`,
    );
  const c = pipelined.api_calls_in_enqueue;
  log(
    `WebGPU calls in one step's enqueue: ${c["dispatches"]} dispatches, ${c["passes"]} passes, ${c["submits"]} submits, ` +
      `${c["writeBuffers"]} writeBuffers, ${c["buffers"]} buffers / ${c["bindGroups"]} bind groups / ${c["pipelines"]} pipelines created`,
  );
  const gpu = pipelined.gpu_ms_timestamp ?? pipelined.gpu_ms_submit_to_done;
  log(
    `host ${f(pipelined.enqueue_ms)} ms against GPU ${f(gpu)} ms per step: ` +
      (pipelined.enqueue_ms > gpu ? "HOST-bound" : "GPU-bound"),
  );
  ctx.result["engine_step"] = {
    config: o.config,
    executor: "compiled (verified)",
    timer: timer.available ? "timestamp-query" : "submit-to-done",
    warmup_steps: o.warmup,
    pipelined,
    isolated,
    tokens_per_sec: pipelined.wall_ms
      ? sig((o.tokensPerStep * 1000) / pipelined.wall_ms)
      : null,
  };
  peft.dispose();
  model.dispose();
}
