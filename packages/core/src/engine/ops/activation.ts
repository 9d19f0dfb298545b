/**
 * MLP activations in a compiled step (kernels/activation/program.ts): act(x), or act(gate)·up, and their
 * backward (both gradients of the gated form in one dispatch).
 */
import type { Activation } from "../../kernels/activation/activation.js";
import {
  activationBackward,
  activationForward,
  gatedActivationBackward,
  gatedActivationForward,
  packedGatedActivationForward,
} from "../../kernels/activation/program.js";
import type { StepBuilder } from "../builder.js";
import type { GraphTensor } from "../graph.js";

/** act(x), or act(x)·up: a new tensor of x's shape. */
export function activate(
  s: StepBuilder,
  label: string,
  x: GraphTensor,
  act: Activation,
  up?: GraphTensor,
): GraphTensor {
  const y = s.g.activation(`${label}.out`, x.shape);
  s.g.dispatch(
    label,
    up ? gatedActivationForward(x.size, act) : activationForward(x.size, act),
    up ? [y, x, up] : [y, x],
  );
  return y;
}

/** act(gate)·up with each row of `gateUp` [R, 2F] holding gate then up: a new [R, F]. */
export function activatePacked(
  s: StepBuilder,
  label: string,
  gateUp: GraphTensor,
  act: Activation,
): GraphTensor {
  const [R, twoF] = gateUp.shape as [number, number];
  const y = s.g.activation(`${label}.out`, [R, twoF / 2]);
  s.g.dispatch(label, packedGatedActivationForward(R, twoF / 2, act), [
    y,
    gateUp,
  ]);
  return y;
}

/** dx = dy·act'(x) (·up), and with `up` also dup = dy·act(x). */
export function activateBackward(
  s: StepBuilder,
  label: string,
  dy: GraphTensor,
  x: GraphTensor,
  act: Activation,
  up?: GraphTensor,
): { dx: GraphTensor; dup: GraphTensor | undefined } {
  const dx = s.g.activation(`${label}.dx`, x.shape);
  if (!up) {
    s.g.dispatch(`${label} dx`, activationBackward(x.size, act), [dx, dy, x]);
    return { dx, dup: undefined };
  }
  const dup = s.g.activation(`${label}.dup`, x.shape);
  s.g.dispatch(`${label} dx`, gatedActivationBackward(x.size, act), [
    dx,
    dup,
    dy,
    x,
    up,
  ]);
  return { dx, dup };
}
