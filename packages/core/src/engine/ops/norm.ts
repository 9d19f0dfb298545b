/**
 * Norms in a compiled step (kernels/norm/program.ts), forward and backward. Each forward keeps its row statistics
 * for the backward; each backward can add its result into a tensor (the residual stream's gradient).
 *
 * Letters: N rows, C features.
 */
import {
  layerNormBackward as layerNormBackwardCall,
  layerNormForward as layerNormForwardCall,
  rmsNormBackward as rmsNormBackwardCall,
  rmsNormForward as rmsNormForwardCall,
} from "../../kernels/norm/program.js";
import type { StepBuilder } from "../builder.js";
import type { GraphTensor } from "../graph.js";

function rowsOf(x: GraphTensor, weight: GraphTensor): [number, number] {
  const C = weight.size;
  return [x.size / C, C];
}

/** y [N, C] = layernorm(x)·w + b, with mean and rstd [N] kept. */
export function layerNorm(
  s: StepBuilder,
  label: string,
  x: GraphTensor,
  weight: GraphTensor,
  bias: GraphTensor,
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
    weight,
    bias,
  ]);
  return { y, mean, rstd };
}

/** dx [N, C] of layernorm, a new tensor or added into `into`. */
export function layerNormBackward(
  s: StepBuilder,
  label: string,
  dy: GraphTensor,
  x: GraphTensor,
  mean: GraphTensor,
  rstd: GraphTensor,
  weight: GraphTensor,
  into?: GraphTensor,
): GraphTensor {
  const [N, C] = rowsOf(x, weight);
  const dx = into ?? s.g.activation(`${label}.dx`, [N, C]);
  s.g.dispatch(`${label} dx`, layerNormBackwardCall(N, C, into !== undefined), [
    dx,
    dy,
    x,
    mean,
    rstd,
    weight,
  ]);
  return dx;
}

/** y [N, C] = rmsnorm(x)·scale (+ residual), with rstd [N] kept. */
export function rmsNorm(
  s: StepBuilder,
  label: string,
  x: GraphTensor,
  scale: GraphTensor,
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
    scale,
    ...(residual ? [residual] : []),
  ]);
  return { y, rstd };
}

/** dx [N, C] of rmsnorm, a new tensor or added into `into`. */
export function rmsNormBackward(
  s: StepBuilder,
  label: string,
  dy: GraphTensor,
  x: GraphTensor,
  rstd: GraphTensor,
  scale: GraphTensor,
  into?: GraphTensor,
): GraphTensor {
  const [N, C] = rowsOf(x, scale);
  const dx = into ?? s.g.activation(`${label}.dx`, [N, C]);
  s.g.dispatch(`${label} dx`, rmsNormBackwardCall(N, C, into !== undefined), [
    dx,
    dy,
    x,
    rstd,
    scale,
  ]);
  return dx;
}
