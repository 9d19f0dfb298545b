/**
 * The optimizer in a compiled step: the global gradient norm and AdamW over the whole training state in two
 * dispatches (kernels/adamw/program.ts). The clipping coefficient never leaves the GPU: AdamW computes it from the
 * norm's partial sums, and the norm itself is read back for the logs.
 */
import {
  adamwStepCall,
  gradNormPartialsCall,
  gradNormWorkgroups,
} from "../../kernels/adamw/program.js";
import type { StepBuilder } from "../builder.js";
import type { GraphTensor } from "../graph.js";
import type { TrainState } from "../state.js";

/** Records clipping and AdamW over `state`; returns the gradient norm before clipping, read back after the run. */
export function recordOptimizer(
  s: StepBuilder,
  state: TrainState,
  options: { betas: [number, number]; eps: number },
): GraphTensor {
  const P = state.size;
  const W = gradNormWorkgroups(P);
  const g = s.g;
  const buffer = (name: string, b: () => GPUBuffer) =>
    g.external(`optimizer.${name}`, [P], b);
  const params = buffer("params", () => state.params);
  const grads = buffer("grads", () => state.grads);
  const m = buffer("exp_avg", () => state.m);
  const v = buffer("exp_avg_sq", () => state.v);
  const groupOf = g.constant(
    "optimizer.group_of_block",
    [state.groupOfBlock.length],
    state.groupOfBlock,
  );
  const partials = g.activation("optimizer.grad_norm_partials", [W]);
  const norm = g.activation("optimizer.grad_norm", [1]);
  g.dispatch("grad norm", gradNormPartialsCall(P), [partials, grads]);
  const [beta1, beta2] = options.betas;
  g.dispatch("AdamW", adamwStepCall(P, W, { beta1, beta2, eps: options.eps }), [
    params,
    m,
    v,
    norm,
    grads,
    groupOf,
    partials,
  ]);
  g.readback(norm);
  return norm;
}
