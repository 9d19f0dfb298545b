/**
 * Norms in a compiled step (kernels/norm/program.ts), forward and backward. Each forward keeps its row statistics
 * for the backward; each backward can add its result into a tensor (the residual stream's gradient), and, when
 * the norm's own parameters train (full fine-tuning), records their gradients (kernels/grads).
 *
 * Letters: N rows, C features.
 */
import {
  layerNormParamGrads,
  recordColumnGrads,
  rmsNormScaleGrad,
  type ColumnGrads,
} from "../../kernels/grads/column_grads.js";
import {
  layerNormBackward as layerNormBackwardCall,
  layerNormForward as layerNormForwardCall,
  rmsNormBackward as rmsNormBackwardCall,
  rmsNormForward as rmsNormForwardCall,
} from "../../kernels/norm/program.js";
import type { BoundVector, StepBuilder } from "../builder.js";
import type { GraphTensor, TensorRange } from "../graph.js";

function rowsOf(x: GraphTensor, weight: BoundVector): [number, number] {
  const C = weight.size;
  return [x.size / C, C];
}

/** Records a column reduction (a parameter's gradient over the rows), with its scratch when it needs one. */
export function recordParamGrads(
  s: StepBuilder,
  label: string,
  grads: ColumnGrads,
  outputs: (GraphTensor | TensorRange)[],
  inputs: GraphTensor[],
): void {
  recordColumnGrads<GraphTensor | TensorRange>(
    grads,
    outputs,
    inputs,
    (n) => s.g.activation(`${label}.partials`, [n]),
    (call, bindings) => s.g.dispatch(label, call, bindings),
  );
}

/** y [N, C] = layernorm(x)·w + b, with mean and rstd [N] kept. */
export function layerNorm(
  s: StepBuilder,
  label: string,
  x: GraphTensor,
  weight: BoundVector,
  bias: BoundVector,
  eps: number,
): { y: GraphTensor; mean: GraphTensor; rstd: GraphTensor } {
  const [N, C] = rowsOf(x, weight);
  const y = s.g.activation(`${label}.out`, [N, C]);
  const mean = s.g.activation(`${label}.mean`, [N]);
  const rstd = s.g.activation(`${label}.rstd`, [N]);
  s.g.dispatch(label, layerNormForwardCall(N, C, eps), [
    y,
    mean,
    rstd,
    x,
    weight.value,
    bias.value,
  ]);
  return { y, mean, rstd };
}

/** dx [N, C] of layernorm, a new tensor or added into `into`; dweight and dbias when they train. */
export function layerNormBackward(
  s: StepBuilder,
  label: string,
  dy: GraphTensor,
  x: GraphTensor,
  mean: GraphTensor,
  rstd: GraphTensor,
  weight: BoundVector,
  bias: BoundVector,
  into?: GraphTensor,
): GraphTensor {
  const [N, C] = rowsOf(x, weight);
  if (weight.grad || bias.grad)
    recordParamGrads(
      s,
      `${label} dweight dbias`,
      layerNormParamGrads(N, C),
      [
        weight.grad ?? s.g.activation(`${label}.dweight`, [C]),
        bias.grad ?? s.g.activation(`${label}.dbias`, [C]),
      ],
      [dy, x, mean, rstd],
    );
  const dx = into ?? s.g.activation(`${label}.dx`, [N, C]);
  s.g.dispatch(`${label} dx`, layerNormBackwardCall(N, C, into !== undefined), [
    dx,
    dy,
    x,
    mean,
    rstd,
    weight.value,
  ]);
  return dx;
}

/** y [N, C] = rmsnorm(x)·scale (+ residual), with rstd [N] kept. */
export function rmsNorm(
  s: StepBuilder,
  label: string,
  x: GraphTensor,
  scale: BoundVector,
  eps: number,
  options: { residual?: GraphTensor } = {},
): { y: GraphTensor; rstd: GraphTensor } {
  const [N, C] = rowsOf(x, scale);
  const y = s.g.activation(`${label}.out`, [N, C]);
  const rstd = s.g.activation(`${label}.rstd`, [N]);
  const { residual } = options;
  s.g.dispatch(label, rmsNormForwardCall(N, C, eps, residual !== undefined), [
    y,
    rstd,
    x,
    scale.value,
    ...(residual ? [residual] : []),
  ]);
  return { y, rstd };
}

/** dx [N, C] of rmsnorm, a new tensor or added into `into`; dscale when it trains. */
export function rmsNormBackward(
  s: StepBuilder,
  label: string,
  dy: GraphTensor,
  x: GraphTensor,
  rstd: GraphTensor,
  scale: BoundVector,
  into?: GraphTensor,
): GraphTensor {
  const [N, C] = rowsOf(x, scale);
  if (scale.grad)
    recordParamGrads(
      s,
      `${label} dscale`,
      rmsNormScaleGrad(N, C),
      [scale.grad],
      [dy, x, rstd],
    );
  const dx = into ?? s.g.activation(`${label}.dx`, [N, C]);
  s.g.dispatch(`${label} dx`, rmsNormBackwardCall(N, C, into !== undefined), [
    dx,
    dy,
    x,
    rstd,
    scale.value,
  ]);
  return dx;
}
