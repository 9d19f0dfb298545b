/**
 * Float64 CPU references of the MLP activations (`program.ts`): act and act' in closed form (Math.tanh, not the
 * shader's exp form), the plain and gated forward, and their backward.
 *
 * Letters: S elements.
 */
import { GELU_K, type Activation } from "./activation.js";

const C3 = 0.044715;

/** act(v). */
export function act(v: number, kind: Activation): number {
  if (kind === "silu") return v / (1 + Math.exp(-v));
  return 0.5 * v * (1 + Math.tanh(GELU_K * (v + C3 * v ** 3)));
}

/** act'(v). */
export function actGrad(v: number, kind: Activation): number {
  if (kind === "silu") {
    const s = 1 / (1 + Math.exp(-v));
    return s * (1 + v * (1 - s));
  }
  const t = Math.tanh(GELU_K * (v + C3 * v ** 3));
  // 1 − t² underflows to 0 long before v² overflows, but 0·inf is guarded anyway.
  const sech2 = 1 - t * t;
  const inner =
    sech2 === 0 ? 0 : 0.5 * v * sech2 * GELU_K * (1 + 3 * C3 * v * v);
  return 0.5 * (1 + t) + inner;
}

/** out[i] = f(i), for S elements (a plain loop: `Float64Array.from` with a map function is slow in V8). */
function each(S: number, f: (i: number) => number): Float64Array {
  const out = new Float64Array(S);
  for (let i = 0; i < S; i++) out[i] = f(i);
  return out;
}

/** x [S] -> y [S] = act(x). */
export function activationForwardReference(
  x: ArrayLike<number>,
  kind: Activation,
): Float64Array {
  return each(x.length, (i) => act(x[i]!, kind));
}

/** g [S], u [S] -> y [S] = act(g)·u. */
export function gatedActivationForwardReference(
  g: ArrayLike<number>,
  u: ArrayLike<number>,
  kind: Activation,
): Float64Array {
  return each(g.length, (i) => act(g[i]!, kind) * u[i]!);
}

/** dy [S], x [S] -> dx [S] = dy·act'(x). */
export function activationBackwardReference(
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
  kind: Activation,
): Float64Array {
  return each(x.length, (i) => dy[i]! * actGrad(x[i]!, kind));
}

/** dy [S], g [S], u [S] -> dg [S] = dy·u·act'(g), du [S] = dy·act(g). */
export function gatedActivationBackwardReference(
  dy: ArrayLike<number>,
  g: ArrayLike<number>,
  u: ArrayLike<number>,
  kind: Activation,
): { dg: Float64Array; du: Float64Array } {
  return {
    dg: each(g.length, (i) => dy[i]! * u[i]! * actGrad(g[i]!, kind)),
    du: each(g.length, (i) => dy[i]! * act(g[i]!, kind)),
  };
}
