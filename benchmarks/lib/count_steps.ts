/**
 * Counted windows of the Trainer's steps, for the host scenario: the WebGPU API calls (`api_counter.ts`) from the
 * call that enqueues one optimizer step to the call that enqueues the next, the time the enqueue itself took, and
 * for the compiled step the dispatches of the graphs the engine ran in the window.
 *
 * The Trainer's loop enqueues step k, then reads back step k−1's loss, so a window holds one enqueue and one
 * readback: what each step of a long run costs. Counting starts after WARMUP steps (every pipeline compiled, every
 * plan built) and the prototypes are restored after the last window.
 */
import { gpuInfo, Trainer, type LoraModel } from "@webtune/core";
import {
  ApiCounter,
  zeroCounts,
  type Counts,
  type Creation,
} from "./api_counter.js";
import {
  configWithLayers,
  DEFAULT_TARGETS,
  dimsOf,
  randomBatch,
  randomModel,
  withLora,
  type ModelName,
} from "./models.js";
import type { BenchHost, BenchSize } from "./run.js";

/** Steps run before counting: the first compiles every pipeline and plan, the second shows they stay. */
export const WARMUP = 2;

export type Executor = "compiled" | "tape";

/** One counted window. */
export interface Window {
  counts: Counts;
  creations: Creation[];
  enqueueCpuMs: number | null;
  enqueueWallMs: number;
  /** Dispatches of the compiled graphs run in the window (engine only), and their labels. */
  graphDispatches: number | null;
  labels: string[];
}

/** Every window of one model at one depth. */
export interface Counted {
  layers: number;
  windows: Window[];
  /** Each counter's (lower) median over the windows. */
  counts: Counts;
  /** Counters that differ between windows, with every window's value. */
  varying: string[];
}

type Session = NonNullable<ReturnType<LoraModel["compileTraining"]>>;
type RunRequest = Parameters<Session["engine"]["run"]>[0];

/** What the Trainer's (private) stepper factory returns, as far as this file needs it. */
interface Stepper {
  step(...args: unknown[]): unknown;
}

/**
 * Calls `around` with each optimizer step's enqueue. The Trainer exposes no hook around one step's enqueue, so this
 * wraps its private `stepper()` factory on this instance; it fails loudly if that is renamed.
 */
export function hookSteps(
  trainer: Trainer,
  around: (enqueue: () => unknown) => unknown,
): void {
  const t = trainer as unknown as {
    stepper?: (...args: unknown[]) => Stepper;
  };
  const make = t.stepper;
  if (typeof make !== "function")
    throw new Error(
      "host: Trainer has no stepper() factory to hook; update benchmarks/lib/host.ts to time a step's enqueue",
    );
  t.stepper = (...args: unknown[]) => {
    const stepper = make.apply(trainer, args);
    const step = stepper.step.bind(stepper);
    stepper.step = (...a: unknown[]) => around(() => step(...a));
    return stepper;
  };
}

/** Calls `onRun` with every run of the compiled session the Trainer makes from `peft` (public methods, wrapped). */
export function watchEngine(
  peft: LoraModel,
  onRun: (request: RunRequest) => void,
): () => boolean {
  const compile = peft.compileTraining.bind(peft);
  let compiled = false;
  peft.compileTraining = (options) => {
    const session = compile(options);
    if (session) {
      compiled = true;
      const run = session.engine.run.bind(session.engine);
      session.engine.run = (request) => {
        onRun(request);
        return run(request);
      };
    }
    return session;
  };
  return () => compiled;
}

/** The windows of one Trainer run: one opens at a counted step's enqueue and closes at the next step's. */
class StepWindows {
  readonly windows: Window[] = [];
  private open: Window | undefined;
  private calls = 0;

  constructor(
    private readonly counter: ApiCounter,
    /** Steps counted after WARMUP; one more closes the last window. */
    private readonly steps: number,
    private readonly cpuMs: (() => number) | undefined,
  ) {}

  /** Around each step's enqueue: closes the open window, and opens one (timing the enqueue) for a counted step. */
  step(enqueue: () => unknown): unknown {
    const i = this.calls++;
    if (this.open) {
      this.windows.push({ ...this.open, ...this.counter.take() });
      this.open = undefined;
    }
    if (i < WARMUP) return enqueue();
    if (i >= WARMUP + this.steps) {
      this.counter.restore();
      return enqueue();
    }
    if (!this.counter.installed) this.counter.install();
    this.counter.take();
    const w: Window = (this.open = {
      counts: zeroCounts(),
      creations: [],
      enqueueCpuMs: null,
      enqueueWallMs: 0,
      graphDispatches: null,
      labels: [],
    });
    const cpu = this.cpuMs?.();
    const wall = performance.now();
    const pending = enqueue();
    w.enqueueWallMs = performance.now() - wall;
    if (cpu !== undefined) w.enqueueCpuMs = this.cpuMs!() - cpu;
    return pending;
  }

  /** Each engine run inside a window: the dispatches of the graphs it runs. */
  run(request: RunRequest): void {
    if (!this.open) return;
    const dispatches = request.graphs.flatMap((g) => g.graph.dispatches);
    this.open.graphDispatches =
      (this.open.graphDispatches ?? 0) + dispatches.length;
    this.open.labels.push(...dispatches.map((d) => d.label));
  }
}

/** Each counter's lower median over the windows (a count one window really had), and those that differ. */
function summarize(layers: number, windows: Window[]): Counted {
  const counts = zeroCounts();
  const varying: string[] = [];
  for (const k of Object.keys(counts) as (keyof Counts)[]) {
    const values = windows.map((w) => w.counts[k]);
    counts[k] = [...values].sort((a, b) => a - b)[(values.length - 1) >> 1]!;
    if (new Set(values).size > 1) varying.push(`${k} ${values.join("/")}`);
  }
  return { layers, windows, counts, varying };
}

/** Counts `steps` windows of the Trainer's steps on `name` at `layers`, after WARMUP steps. */
export async function countSteps(
  host: BenchHost,
  name: ModelName,
  layers: number,
  executor: Executor,
  size: BenchSize,
  steps: number,
): Promise<Counted> {
  const config = configWithLayers(name, layers);
  const limit = gpuInfo().limits["maxStorageBufferBindingSize"] ?? 2 ** 31 - 1;
  const model = await randomModel(config, limit);
  const peft = withLora(model, {
    r: 8,
    alpha: 16,
    targetModules: DEFAULT_TARGETS[name],
  });
  const batches = [1, 2, 3].map((s) =>
    randomBatch(size.batch, size.seq, dimsOf(config).vocab, s),
  );
  // Creations are traced for the engine only: the tape creates thousands per step, by design.
  const counter = new ApiCounter(executor === "compiled" ? 3 : 0);
  const windows = new StepWindows(counter, steps, host.threadCpuMs);
  const usedEngine = watchEngine(peft, (request) => windows.run(request));
  try {
    const trainer = new Trainer(peft, {
      learningRate: 1e-4,
      schedule: "constant",
      maxSteps: WARMUP + steps + 1,
      maxGradNorm: 1,
      logEvery: 1,
      executor,
    });
    hookSteps(trainer, (enqueue) => windows.step(enqueue));
    await trainer.train({ train: batches });
  } finally {
    counter.restore();
    peft.dispose();
    model.dispose();
  }
  const what = `host: ${name} (${executor}, ${layers} layers)`;
  if (windows.windows.length !== steps)
    throw new Error(
      `${what}: counted ${windows.windows.length} steps, expected ${steps}`,
    );
  if (executor === "compiled" && !usedEngine())
    throw new Error(
      `${what}: the Trainer did not use the compiled step (no session was compiled)`,
    );
  return summarize(layers, windows.windows);
}
