/**
 * A training session on the engine: the training state, a compiled step graph per batch shape (recorded by the
 * model, planned and bound once, then replayed), the optimizer graph (global-norm clipping and AdamW over every
 * trainable tensor in two dispatches), and forward-only graphs for evaluation.
 *
 * One optimizer step is one run per micro-batch: its ids and targets written, the step parameters written, one
 * pass, one submit, with the optimizer's dispatches appended to the last. The loss and gradient norm come back
 * asynchronously; the host never waits for the GPU inside a step.
 *
 * Batches are padded to a bucket of shapes (rows to the session's batch size, tokens up to a multiple of
 * `tokenBucket`), padding out of the loss: a plan serves every batch of its bucket.
 */
import type * as tf from "@tensorflow/tfjs";
import { ShapeError } from "../errors.js";
import type { StepParams } from "../kernels/step_params.js";
import { collectMatmulUses } from "../kernels/lora_linear/variant.js";
import { autotuneFor, type AutotuneOption } from "./autotune.js";
import { StepBuilder } from "./builder.js";
import { Engine } from "./engine.js";
import { planOptions, type CompiledGraph } from "./executor.js";
import { graphLimits, StepGraph, type GraphTensor } from "./graph.js";
import { embeddingGradIndex } from "../kernels/grads/embedding_grads.js";
import { recordOptimizer } from "./ops/optimizer.js";
import { alignUp, planBuffers } from "./plan.js";
import { readBuffer, TrainState, type StateEntry } from "./state.js";

/**
 * Where the host's int32 values of a batch of N tokens sit in the step's one input tensor, each part at a
 * 256-byte boundary (the storage binding alignment): the token ids, the label each position predicts, and, when
 * the embedding trains, the ids grouped by id for its gradient (`embeddingGradIndex`).
 */
export interface TokenLayout {
  ids: number;
  targets: number;
  index: number | undefined;
  /** Elements of the whole input. */
  size: number;
}

export function tokenLayout(N: number, grouped: boolean): TokenLayout {
  const part = alignUp(N, 64);
  const index = grouped ? 2 * part : undefined;
  return {
    ids: 0,
    targets: part,
    index,
    size: index === undefined ? 2 * part : index + alignUp(2 * N + 2, 64),
  };
}

/** The tensors of a recorded step graph that the host writes and reads. */
export interface StepIO {
  /** int32, laid out by `layout`: written once per micro-batch. */
  tokens: GraphTensor;
  layout: TokenLayout;
  /** Σ of the token losses, each weighted by the step's lossScale: read back. */
  loss: GraphTensor;
}

/** Records one step graph of [B, T] (training, or forward-only for evaluation). */
export type RecordStep = (s: StepBuilder, B: number, T: number) => StepIO;

/** A batch as the session takes it: right-padded ids and labels (-100 where no loss applies). */
export interface SessionBatch {
  inputIds: number[][];
  labels: number[][];
}

export interface OptimizerGroup {
  lrScale: number;
  weightDecay: number;
}

export interface SessionOptions {
  /** Rows of every batch (the last, smaller batch is padded with empty rows). */
  batchSize: number;
  /** Token counts are padded up to a multiple of this. Default 16. */
  tokenBucket?: number;
  /** The most tokens a row may have (the model's positions). */
  maxTokens: number;
  /** Token ids must be below this. */
  vocabSize: number;
  /**
   * What a label is: a next token (count = the vocabulary, shifted left by one as HF shifts them), or a
   * classification head's label id at the position it scores (count = the labels, not shifted). Default: next
   * tokens.
   */
  labels?: { count: number; shift: boolean };
  betas: [number, number];
  eps: number;
  /** One entry per parameter group; `entries` name a group by index. */
  groups: OptimizerGroup[];
  /** Global-norm clipping threshold; 0 turns it off. */
  maxGradNorm: number;
  /** Shaders suited to CPU adapters. */
  software: boolean;
}

interface Plan {
  graph: CompiledGraph;
  io: StepIO;
  B: number;
  T: number;
}

/** What the Trainer tells a model's compiled step about the run. */
export interface CompileTrainingOptions {
  /** Parameter groups in optimizer order: each variable in exactly one. */
  groups: { variables: tf.Variable[]; lrScale: number; weightDecay: number }[];
  /** Rows of the largest batch. */
  batchSize: number;
  betas: [number, number];
  eps: number;
  maxGradNorm: number;
  /** Bytes of logits the loss may hold at once; default 32 MiB (see engine/ops/loss.ts). */
  logitBudget?: number;
}

/** The GPU bytes a training step of one shape holds beyond the model's weights, from its plan. */
export interface StepMemory {
  /** The training state: trained values, their gradients and AdamW's two moments (f32 each). */
  state: number;
  /** The step's arenas (every activation, packed by lifetime) and its own inputs and read-backs. */
  activations: number;
  /** The largest range one dispatch binds (recording refuses one over the storage binding limit). */
  largestTensor: { name: string; bytes: number };
  /** Dispatches of one micro-batch's step graph (the optimizer's are apart). */
  dispatches: number;
}

/** At most this many step graphs are kept per mode; the least recently used is released first. */
const MAX_PLANS = 8;

export class TrainingSession {
  readonly engine: Engine;
  readonly state: TrainState;
  private readonly plans = new Map<string, Plan>();
  private readonly optimizer: { graph: CompiledGraph; norm: GraphTensor };
  /** Optimizer steps taken (torch's state["step"]). */
  steps = 0;

  constructor(
    readonly device: GPUDevice,
    entries: StateEntry[],
    private readonly record: { train: RecordStep; eval: RecordStep },
    readonly options: SessionOptions,
  ) {
    this.engine = new Engine(device);
    this.state = new TrainState(device, entries);
    try {
      this.state.pull();
      this.state.resetMoments();
      const g = new StepGraph(graphLimits(device));
      const s = new StepBuilder(g, options.software, "train", this.state);
      const norm = recordOptimizer(s, this.state, options);
      this.optimizer = { graph: this.engine.compile(g), norm };
    } catch (error) {
      this.dispose();
      throw error;
    }
  }

  /** The graph for batches of [B, T] in `mode`, recorded and compiled on first use. */
  private plan(mode: "train" | "eval", B: number, T: number): Plan {
    const key = `${mode}:${B}x${T}`;
    const hit = this.plans.get(key);
    if (hit) {
      // Map order is insertion order: re-inserting marks it most recently used.
      this.plans.delete(key);
      this.plans.set(key, hit);
      return hit;
    }
    const g = new StepGraph(graphLimits(this.device));
    const s = new StepBuilder(g, this.options.software, mode, this.state);
    const io = this.record[mode](s, B, T);
    const plan = { graph: this.engine.compile(g), io, B, T };
    this.plans.set(key, plan);
    const sameMode = [...this.plans.keys()].filter((k) => k.startsWith(mode));
    if (sameMode.length > MAX_PLANS) {
      const oldest = sameMode[0]!;
      this.engine.release(this.plans.get(oldest)!.graph);
      this.plans.delete(oldest);
    }
    return plan;
  }

  /**
   * The memory of a training step of this batch's padded shape, from its buffer plan: recorded and planned, but
   * nothing allocated or compiled, so that a step that will not fit is refused before it takes the memory.
   */
  memoryPlan(batch: SessionBatch): StepMemory {
    const [B, T] = this.shapeOf(batch);
    const g = new StepGraph(graphLimits(this.device));
    this.record.train(
      new StepBuilder(g, this.options.software, "train", this.state),
      B,
      T,
    );
    const plan = planBuffers(g, planOptions(this.device));
    const own = g.tensors.filter(
      (t) => t.source.kind === "input" || g.readbacks.includes(t),
    );
    let largest = { name: "", bytes: 0 };
    for (const d of g.dispatches)
      for (const { tensor, length } of d.bindings) {
        const bytes = (tensor.bytes / tensor.size) * length;
        if (bytes > largest.bytes) largest = { name: tensor.name, bytes };
      }
    return {
      state: 4 * this.state.size * 4,
      activations:
        plan.arenas.reduce((a, b) => a + b, 0) +
        own.reduce((a, t) => a + t.bytes, 0),
      largestTensor: largest,
      dispatches: g.dispatches.length,
    };
  }

  /**
   * Times the matmul variants on the matmuls of a step of this batch's shape, and keeps the fastest per shape class
   * for every graph recorded after (engine/autotune.ts). `option` as TrainerOptions.autotune.
   */
  autotune(batch: SessionBatch, option?: AutotuneOption): Promise<void> {
    const [B, T] = this.shapeOf(batch);
    const s = () =>
      new StepBuilder(
        new StepGraph(graphLimits(this.device)),
        this.options.software,
        "train",
        this.state,
      );
    const uses = () => collectMatmulUses(() => this.record.train(s(), B, T));
    return autotuneFor(this.device, uses, option, this.options.software);
  }

  /** The padded shape of a batch: [rows, tokens] rounded up to the session's buckets. */
  shapeOf(batch: SessionBatch): [number, number] {
    const rows = batch.inputIds.length;
    const tokens = Math.max(...batch.inputIds.map((r) => r.length));
    const { batchSize, maxTokens } = this.options;
    if (rows > batchSize)
      throw new ShapeError(
        `a batch of ${rows} rows is larger than the session's batch size ${batchSize}.`,
      );
    const bucket = this.options.tokenBucket ?? 16;
    const T = Math.min(Math.ceil(tokens / bucket) * bucket, maxTokens);
    if (tokens > maxTokens || tokens < 2)
      throw new ShapeError(
        `rows of ${tokens} tokens: need 2 to ${maxTokens} (the model's positions).`,
      );
    return [batchSize, T];
  }

  /**
   * One optimizer step over micro-batches: each one's loss and gradients (added up), then clipping and AdamW.
   * `lossScales` has one weight per micro-batch for each of its loss tokens (1 / loss tokens of the whole step for
   * the step's mean; a mixed batch's parts differ); `dropoutSeeds` has one seed per micro-batch; `lr` is this
   * step's learning rate. Resolves with the summed loss and the gradient norm before
   * clipping, once the GPU has finished; nothing here waits for it.
   */
  step(
    group: SessionBatch[],
    scalars: { lr: number; lossScales: number[]; dropoutSeeds: number[] },
  ): Promise<{ loss: number; gradNorm: number }> {
    if (group.length === 0)
      throw new ShapeError("an optimizer step needs a micro-batch.");
    // Every micro-batch is checked (and its graph made) before anything runs: a refused step changes nothing.
    const runs = group.map((batch) => {
      const plan = this.plan("train", ...this.shapeOf(batch));
      return { plan, inputs: this.inputsOf(plan, batch) };
    });
    const t = ++this.steps;
    const [beta1, beta2] = this.options.betas;
    const bias1 = 1 - beta1 ** t;
    const bias2Sqrt = Math.sqrt(1 - beta2 ** t);
    const adam = this.options.groups.map((g) => {
      const lr = scalars.lr * g.lrScale;
      return { stepSize: lr / bias1, bias2Sqrt, decay: 1 - lr * g.weightDecay };
    });
    const reads = runs.map(({ plan, inputs }, i) => {
      const last = i === runs.length - 1;
      const params: StepParams = {
        dropoutSeed: scalars.dropoutSeeds[i] ?? 0,
        accumulate: i > 0,
        lossScale: scalars.lossScales[i]!,
        maxGradNorm: this.options.maxGradNorm,
        adam,
      };
      return this.engine.run({
        graphs: last ? [plan.graph, this.optimizer.graph] : [plan.graph],
        inputs,
        params,
        readback: last
          ? [
              [plan.graph, plan.io.loss],
              [this.optimizer.graph, this.optimizer.norm],
            ]
          : [[plan.graph, plan.io.loss]],
      });
    });
    return Promise.all(reads).then((values) => ({
      loss: values.reduce((sum, v) => sum + v[0]![0]!, 0),
      gradNorm: values.at(-1)![1]![0]!,
    }));
  }

  /**
   * The loss and the gradient of every trainable tensor for one batch, without an optimizer step: what
   * `loss.backward()` leaves in `.grad` in torch. `lossScale` weights every loss token (1 / loss tokens gives the
   * mean); the gradients are of that weighted loss.
   */
  async lossAndGradients(
    batch: SessionBatch,
    scalars: { lossScale: number; dropoutSeed: number },
  ): Promise<{ loss: number; gradients: Float32Array[] }> {
    const plan = this.plan("train", ...this.shapeOf(batch));
    const [loss] = await this.engine.run({
      graphs: [plan.graph],
      inputs: this.inputsOf(plan, batch),
      params: {
        dropoutSeed: scalars.dropoutSeed,
        accumulate: false,
        lossScale: scalars.lossScale,
        maxGradNorm: 0,
        adam: [],
      },
      readback: [[plan.graph, plan.io.loss]],
    });
    const grads = await readBuffer(this.device, this.state.grads);
    return {
      loss: loss![0]!,
      gradients: this.state.entries.map(({ variable }) => {
        const { offset, length } = this.state.slot(variable);
        return grads.slice(offset, offset + length);
      }),
    };
  }

  /** Σ of the next-token NLL over every loss token of `batch`, forward only, dropout off. */
  lossSum(batch: SessionBatch): Promise<number> {
    const plan = this.plan("eval", ...this.shapeOf(batch));
    return this.engine
      .run({
        graphs: [plan.graph],
        inputs: this.inputsOf(plan, batch),
        params: {
          dropoutSeed: 0,
          accumulate: false,
          lossScale: 1,
          maxGradNorm: 0,
          adam: [],
        },
        readback: [[plan.graph, plan.io.loss]],
      })
      .then((v) => v[0]![0]!);
  }

  private inputsOf(
    plan: Plan,
    batch: SessionBatch,
  ): [CompiledGraph, GraphTensor, Int32Array][] {
    const labels = this.options.labels ?? {
      count: this.options.vocabSize,
      shift: true,
    };
    checkTokens(batch, this.options.vocabSize, labels.count);
    const { ids, targets } = stepInputs(batch, plan.B, plan.T, labels.shift);
    const { layout, tokens } = plan.io;
    const values = new Int32Array(layout.size);
    values.set(ids, layout.ids);
    values.set(targets, layout.targets);
    if (layout.index !== undefined)
      embeddingGradIndex(
        ids,
        values.subarray(layout.index, layout.index + 2 * ids.length + 2),
      );
    return [[plan.graph, tokens, values]];
  }

  dispose(): void {
    this.engine.dispose();
    this.state.dispose();
    this.plans.clear();
  }
}

/**
 * Refuses ids outside the vocabulary and labels that are neither -100 nor a token id, naming the position: on the
 * GPU such a value would read a wrong row, or none, and give a silently wrong loss.
 */
function checkTokens(batch: SessionBatch, V: number, L: number): void {
  batch.inputIds.forEach((row, b) => {
    const labels = batch.labels[b];
    if (!labels || labels.length !== row.length)
      throw new ShapeError(
        `batch row ${b}: ${labels?.length ?? 0} labels for ${row.length} token ids; they must be the same length.`,
      );
    row.forEach((id, t) => {
      if (!Number.isInteger(id) || id < 0 || id >= V)
        throw new ShapeError(
          `token id ${id} at [${b}, ${t}] is outside the vocabulary [0, ${V}).`,
        );
      const label = labels[t]!;
      if (
        label !== -100 &&
        !(Number.isInteger(label) && label >= 0 && label < L)
      )
        throw new ShapeError(
          `label ${label} at [${b}, ${t}] is neither -100 (ignored) nor a ${L === V ? "token" : "label"} id in [0, ${L}).`,
        );
    });
  });
}

/**
 * The host side of a batch padded to [B, T]: ids (padding 0) and the label each position predicts (labels
 * shifted left by one, as Hugging Face shifts them; -100 at padding and at each row's last position). Unshifted,
 * for a classification head, each position's own label.
 */
export function stepInputs(
  batch: SessionBatch,
  B: number,
  T: number,
  shift = true,
): { ids: Int32Array; targets: Int32Array } {
  const ids = new Int32Array(B * T);
  const targets = new Int32Array(B * T).fill(-100);
  const by = shift ? 1 : 0;
  batch.inputIds.forEach((row, b) => {
    ids.set(row, b * T);
    const labels = batch.labels[b]!;
    for (let t = 0; t + by < row.length; t++)
      targets[b * T + t] = labels[t + by]!;
  });
  return { ids, targets };
}
