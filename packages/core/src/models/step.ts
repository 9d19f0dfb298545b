/**
 * The compiled step of any architecture, as llm.c's gpt2_forward and gpt2_backward: embed, every block's forward,
 * the final norm, the loss and its gradient straight from the LM head, then every block's backward in reverse,
 * and the embedding's own gradient when it trains. An architecture gives its blocks' forward and backward
 * (`StepArchitecture`); this file gives the order.
 *
 * With gradient checkpointing a block keeps only its input, and its backward first runs its forward again: the
 * recomputed activations live only while that block's backward runs.
 *
 * Letters: B batch, T tokens, N = B·T rows, C hidden size.
 */
import * as tf from "@tensorflow/tfjs";
import type { StepBuilder } from "../engine/builder.js";
import type { GraphTensor } from "../engine/graph.js";
import type { LayerCache } from "../engine/ops/kv_cache.js";
import { embed, embedBackward } from "../engine/ops/embedding.js";
import { crossEntropy } from "../engine/ops/loss.js";
import {
  tokenLayout,
  TrainingSession,
  type CompileTrainingOptions,
  type StepIO,
} from "../engine/session.js";
import { gpuDevice, isSoftwareGpu } from "../runtime/runtime.js";
import type { CausalLM } from "./causal_lm.js";
import type { Embedding } from "./embedding.js";
import type { ClassificationHead } from "./heads.js";

/** One block of a compiled step: a forward that keeps what its backward needs, and that backward. */
export interface StepBlock<Saved = unknown> {
  /** x [N, C] -> y [N, C] */
  forward(s: StepBuilder, x: GraphTensor): { y: GraphTensor; saved: Saved };
  /**
   * dy [N, C] -> dx [N, C], the trained tensors' gradients recorded on the way. dy may be updated in place and
   * returned as dx (the residual stream's gradient); the caller must not read dy afterwards. With `inputGrad`
   * false nothing before the block trains, and dx is not computed.
   */
  backward(
    s: StepBuilder,
    saved: Saved,
    dy: GraphTensor,
    inputGrad: boolean,
  ): GraphTensor | undefined;
}

/** How an architecture embeds its tokens: a table's rows (· scale) (+ a learned position's row). */
export interface StepEmbedding {
  table: Embedding;
  /** Multiplies every row (Gemma's √C, as a float32). */
  scale?: number;
  /** GPT-2's wpe: row t of the table is added at position t. */
  positions?: tf.Tensor2D;
}

/** What an architecture gives the compiled step, for one batch shape. */
export interface StepLayers {
  embedding: StepEmbedding;
  blocks: StepBlock[];
  /** The final norm; its backward gives the last block's output gradient. */
  norm: StepBlock;
}

/** A block of a decoding graph: x [B·T, C] -> y [B·T, C], its keys and values written into its layer's cache. */
export interface DecodeBlock {
  decode(s: StepBuilder, x: GraphTensor, cache: LayerCache): GraphTensor;
}

/** What an architecture gives a decoding graph of [B, T] new tokens over a cache of S positions. */
export interface DecodeLayers {
  /** With positions, the table's rows are read at the step's position (`fromStep`). */
  embedding: StepEmbedding;
  blocks: DecodeBlock[];
  norm: StepBlock;
}

/** An architecture's decoding (see models/decode_step.ts). */
export interface StepDecoding {
  /** The cache's per-layer shape: kv heads and head dim. */
  kvHeads: number;
  headDim: number;
  layers(s: StepBuilder, B: number, T: number, S: number): DecodeLayers;
}

export interface StepArchitecture {
  /** The layers for batches of [B, T] (recording any per-shape constants, such as RoPE tables). */
  layers(s: StepBuilder, B: number, T: number): StepLayers;
  /** Decoding with a KV cache written in place, where the architecture has it. */
  decoding?: StepDecoding;
  /** The LM head's vocabulary chunks (the tied embedding, or lm_head). */
  head: Embedding;
  /** Gemma-style final logit softcapping. */
  logitSoftcap: number | undefined;
}

/**
 * Records one micro-batch of [B, T]: the loss, and in a training graph the gradient of every trained tensor
 * (added into the training state's gradient buffer). In a forward-only graph, the loss alone. The host writes
 * `tokens` (see `tokenLayout`: ids, the label each position predicts, and when the embedding trains the ids
 * grouped for its gradient) and reads `loss` (Σ of the token losses, each weighted by the step's lossScale).
 */
export function recordStep(
  s: StepBuilder,
  arch: StepArchitecture,
  B: number,
  T: number,
  options: {
    checkpointing: boolean;
    /** Bytes of logits the loss may hold at once (see `crossEntropy`). */
    logitBudget?: number;
    /** A classification head in place of the LM head: its weight (and bias) train in the step's state. */
    taskHead?: ClassificationHead;
  },
): StepIO {
  const N = B * T;
  const { embedding, blocks, norm } = arch.layers(s, B, T);
  const C = embedding.table.dim;
  const table = embedding.table.chunks.map((c, i) =>
    s.matrix(c, `${embedding.table.name} chunk ${i}`),
  );
  const positions =
    embedding.positions && s.vector(embedding.positions, "positions");
  const embeddingTrains =
    s.training && (table.some((w) => w.grad) || positions?.grad !== undefined);
  const layout = tokenLayout(N, embeddingTrains);
  const tokens = s.g.input("tokens", [layout.size]);
  const ids = tokens.range(layout.ids, N);
  const targets = tokens.range(layout.targets, N);
  let x = embed(s, embedding.table.name, ids, table, {
    rows: N,
    C,
    scale: embedding.scale,
    positions: positions && { table: positions.value, T },
  });
  const checkpointing = options.checkpointing && s.training;
  const saved: unknown[] = [];
  for (const block of blocks) {
    const out = block.forward(s, x);
    saved.push(checkpointing ? x : out.saved);
    x = out.y;
  }
  const final = norm.forward(s, x);
  const task = options.taskHead;
  const { loss, dh } = task
    ? crossEntropy(
        s,
        task.name,
        final.y,
        { name: task.name, chunks: [task.weight] },
        targets,
        {
          softcap: undefined,
          bias: task.bias && s.vector(task.bias, `${task.name}.bias`),
        },
      )
    : crossEntropy(s, "lm_head", final.y, arch.head, targets, {
        softcap: arch.logitSoftcap,
        logitBudget: options.logitBudget,
      });
  s.g.readback(loss);
  if (!s.training) return { tokens, layout, loss };
  let dx = norm.backward(s, final.saved, dh!, true)!;
  for (let i = blocks.length - 1; i >= 0; i--) {
    const block = blocks[i]!;
    const kept = checkpointing
      ? block.forward(s, saved[i] as GraphTensor).saved
      : saved[i];
    const inputGrad = i > 0 || embeddingTrains;
    const next = block.backward(s, kept, dx, inputGrad);
    if (inputGrad) dx = next!;
  }
  if (embeddingTrains)
    embedBackward(
      s,
      embedding.table.name,
      dx,
      ids,
      tokens.range(layout.index!, 2 * N + 2),
      table,
      {
        C,
        scale: embedding.scale,
        positions: positions?.grad && {
          grad: positions.grad,
          rows: positions.size / C,
          T,
        },
        // A tied LM head has written this step's first part of the table's gradient already.
        tied: !task && arch.head === embedding.table,
      },
    );
  return { tokens, layout, loss };
}

/**
 * A training session of this model's compiled step over `options.groups`' variables (adapter tensors, or every
 * weight for full fine-tuning); undefined where there is no compiled step (no WebGPU backend, or an architecture
 * without one).
 */
export function compileTrainingSession(
  lm: CausalLM,
  options: CompileTrainingOptions & { checkpointing: boolean },
): TrainingSession | undefined {
  const arch = lm.stepArchitecture();
  if (!arch || tf.getBackend() !== "webgpu") return undefined;
  const { checkpointing, logitBudget } = options;
  const taskHead = lm.taskHead;
  const record = (s: StepBuilder, B: number, T: number) =>
    recordStep(s, arch, B, T, { checkpointing, logitBudget, taskHead });
  return new TrainingSession(
    gpuDevice(),
    options.groups.flatMap((g, group) =>
      g.variables.map((variable) => ({ variable, group })),
    ),
    { train: record, eval: record },
    {
      batchSize: options.batchSize,
      maxTokens: lm.dims.maxPositions,
      vocabSize: lm.dims.vocabSize,
      // A head's labels are label ids at the positions they score; the LM's are next tokens.
      labels: taskHead
        ? { count: taskHead.numLabels, shift: false }
        : { count: lm.dims.vocabSize, shift: true },
      betas: options.betas,
      eps: options.eps,
      groups: options.groups.map(({ lrScale, weightDecay }) => ({
        lrScale,
        weightDecay,
      })),
      maxGradNorm: options.maxGradNorm,
      software: isSoftwareGpu(),
    },
  );
}
