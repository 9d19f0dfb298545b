/**
 * Query and key preparation in a compiled step (kernels/rope/program.ts): a projection's heads, optionally
 * RMS-normalised per head (Gemma 3's q_norm and k_norm), rotated by RoPE into a contiguous [B, heads, T, D]
 * tensor; and the way back, written into the projection output's gradient, with the norm weight's gradient
 * when it trains (kernels/grads/column_grads.ts).
 */
import {
  qkRopeBackward,
  qkRopeForward,
  type HeadView,
} from "../../kernels/rope/program.js";
import { cacheLayout } from "../../kernels/kv_cache/program.js";
import { ShapeError } from "../../errors.js";
import { headRmsNormScaleGrad } from "../../kernels/grads/column_grads.js";
import type { StepBuilder } from "../builder.js";
import type { GraphTensor, TensorRange } from "../graph.js";
import { rowHeads, type Heads } from "./attention.js";
import { recordParamGrads } from "./norm.js";

/** cos and sin [T, D], the half-frequencies repeated (rotate_half), bound as constants of the graph. */
export interface RopeTables {
  cos: GraphTensor;
  sin: GraphTensor;
}

function view(h: Heads): HeadView {
  const { B, heads: H, T, D, offset, sB, sH, sT } = h;
  return { B, H, T, D, offset, sB, sH, sT };
}

/** rope(norm(x)) of each head of `src` -> [B, heads, T, D], with the norm's rstd [B, heads, T] when normed. */
export function ropeHeads(
  s: StepBuilder,
  label: string,
  src: Heads,
  tables: RopeTables,
  norm?: { weight: GraphTensor | TensorRange; eps: number },
): { out: GraphTensor; rstd: GraphTensor | undefined } {
  const { B, heads, T, D } = src;
  const out = s.g.activation(`${label}_rope`, [B, heads, T, D]);
  const rstd = norm
    ? s.g.activation(`${label}_norm.rstd`, [B, heads, T])
    : undefined;
  s.g.dispatch(
    `${label} rope`,
    qkRopeForward(view(src), norm ? { eps: norm.eps } : undefined),
    [
      out,
      ...(rstd ? [rstd] : []),
      src.tensor,
      tables.cos,
      tables.sin,
      ...(norm ? [norm.weight] : []),
    ],
  );
  return { out, rstd };
}

/**
 * Decoding: a run whose first token is at the step's position p. Queries come back as [B, heads, T, D], rotated
 * by rows p + t of tables that cover every position ([S, D]); with `cache` (keys), they are written into the
 * cache [B, heads, S, D] at rows p..p+T−1 instead, and nothing else is made.
 */
export function ropeHeadsAt(
  s: StepBuilder,
  label: string,
  src: Heads,
  tables: RopeTables,
  options: {
    norm?: { weight: GraphTensor | TensorRange; eps: number };
    cache?: { tensor: GraphTensor; S: number };
  } = {},
): GraphTensor {
  const { B, heads, T, D } = src;
  const { norm, cache } = options;
  const out =
    cache?.tensor ?? s.g.activation(`${label}_rope`, [B, heads, T, D]);
  // The norm's rstd only serves a backward; a decoding run keeps it in a scratch.
  const rstd = norm && s.g.activation(`${label}_norm.rstd`, [B, heads, T]);
  s.g.dispatch(
    `${label} rope`,
    qkRopeForward(view(src), norm && { eps: norm.eps }, {
      positioning: cache ? "tables+out" : "tables",
      out: cache && cacheLayout(heads, cache.S, D),
    }),
    [
      out,
      ...(rstd ? [rstd] : []),
      src.tensor,
      tables.cos,
      tables.sin,
      ...(norm ? [norm.weight] : []),
    ],
  );
  return out;
}

/**
 * The gradient of `ropeHeads`' input from its output's gradient dOut [B, heads, T, D], written into the heads
 * of `dSrc` (other elements of that tensor are left as they are). With a norm, its input and rstd are read; with
 * the norm weight's gradient `grad` (full fine-tuning), Σ rope'(dOut)·x·rstd over rows and heads is recorded too,
 * through rope'(dOut) kept in a scratch of the input's layout (two dispatches more).
 */
export function ropeHeadsBackward(
  s: StepBuilder,
  label: string,
  dOut: GraphTensor,
  dSrc: Heads,
  tables: RopeTables,
  norm?: {
    weight: GraphTensor | TensorRange;
    input: Heads;
    rstd: GraphTensor;
    grad?: TensorRange;
  },
): void {
  if (norm?.grad) {
    const { B, heads: H, T, D, offset, sT } = norm.input;
    if (offset !== 0 || sT !== H * D)
      throw new ShapeError(
        `${label}: a trained head norm needs its input as a whole [B·T, heads·D] tensor, got offset ${offset}, ` +
          `row stride ${sT}.`,
      );
    const dNormed = s.g.activation(`${label}_norm.dy`, [B * T, H * D]);
    dispatchRopeBackward(s, label, dOut, rowHeads(dNormed, B, T, H, D), tables);
    recordParamGrads(
      s,
      `${label}_norm dscale`,
      headRmsNormScaleGrad(B, T, H, D),
      [norm.grad],
      [dNormed, norm.input.tensor, norm.rstd],
    );
  }
  dispatchRopeBackward(s, label, dOut, dSrc, tables, norm);
}

function dispatchRopeBackward(
  s: StepBuilder,
  label: string,
  dOut: GraphTensor,
  dSrc: Heads,
  tables: RopeTables,
  norm?: { weight: GraphTensor | TensorRange; input: Heads; rstd: GraphTensor },
): void {
  s.g.dispatch(
    `${label} rope dx`,
    qkRopeBackward(view(dSrc), norm !== undefined),
    [
      dSrc.tensor,
      dOut,
      ...(norm ? [norm.input.tensor, norm.rstd] : []),
      tables.cos,
      tables.sin,
      ...(norm ? [norm.weight] : []),
    ],
  );
}
