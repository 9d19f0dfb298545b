/**
 * MLP activations as plain programs for the compiled step, forward and backward side by side: one invocation per
 * element (flat, workgroups wrapped into y past 65535), the activation itself being `activation.ts`'s WGSL.
 *   plain:  y = act(x)                dx = dy·act'(x)
 *   gated:  y = act(g)·u              dg = dy·u·act'(g),  du = dy·act(g)   (one dispatch, two outputs)
 *   silu'(x)      = σ(x)·(1 + x·(1 − σ(x)))
 *   gelu_tanh'(x) = ½·(1 + t) + ½·x·(1 − t²)·k·(1 + 3·0.044715·x²),  t = tanh(k·(x + 0.044715·x³)), k = √(2/π)
 * (1 − t²) is computed as q·(2 − q) with q = 1 − t = 2/(exp(2u) + 1), which does not cancel; past the clamp
 * where tanh saturates (|u| ≥ 40) the second term is exactly 0, so no 0·inf appears for huge |x|.
 *
 * Letters: S elements (any shape, flattened).
 */
import { ACT_WGSL, GELU_K, type Activation } from "./activation.js";
import {
  flatGrid,
  type Program,
  type ProgramCall,
  type StorageBinding,
} from "../program.js";

const WORKGROUP = 64;

/** `fn actGrad(v : f32) -> f32`: act'(v). */
const ACT_GRAD_WGSL: Record<Activation, string> = {
  silu: `fn actGrad(v : f32) -> f32 {
  let s = 1.0 / (1.0 + exp(-v));
  return s * (1.0 + v * (1.0 - s));
}`,
  gelu_tanh: `fn actGrad(v : f32) -> f32 {
  let u = ${GELU_K} * (v + 0.044715 * v * v * v);
  let q = 2.0 / (exp(2.0 * clamp(u, -40.0, 40.0)) + 1.0);
  let inner = 0.5 * v * (q * (2.0 - q)) * ${GELU_K} * (1.0 + ${3 * 0.044715} * v * v);
  return 0.5 * (2.0 - q) + select(inner, 0.0, abs(u) >= 40.0);
}`,
};

function program(
  name: string,
  act: Activation,
  names: string[],
  outputs: number,
  statement: string,
): Program {
  const storage: StorageBinding[] = names.map((n, i) => ({
    name: n,
    element: "f32",
    access: i < outputs ? "read_write" : "read",
  }));
  return {
    key: `webtuneEngine_${name}_${act}_w${WORKGROUP}`,
    storage,
    uniforms: [{ name: "size", type: "i32" }],
    stepParams: false,
    workgroupSize: [WORKGROUP, 1, 1],
    body: `${ACT_WGSL[act]}
${ACT_GRAD_WGSL[act]}
fn main(i : i32) {
  if (i >= uniforms.size) { return; }
  ${statement}
}`,
    flat: true,
  };
}

function call(p: Program, size: number): ProgramCall {
  return {
    program: p,
    uniforms: [size],
    workgroups: flatGrid(Math.ceil(size / WORKGROUP)),
  };
}

/** y = act(x). Bindings: Y [S], X [S]. Uniforms: size (S). */
export function activationForward(size: number, act: Activation): ProgramCall {
  return call(
    program("activationForward", act, ["Y", "X"], 1, "Y[i] = act(X[i]);"),
    size,
  );
}

/** y = act(g)·u. Bindings: Y [S], G [S], U [S]. Uniforms: size. */
export function gatedActivationForward(
  size: number,
  act: Activation,
): ProgramCall {
  return call(
    program(
      "gatedActivationForward",
      act,
      ["Y", "G", "U"],
      1,
      "Y[i] = act(G[i]) * U[i];",
    ),
    size,
  );
}

/**
 * y = act(g)·u with g and u the two halves of each row of one [R, 2F] tensor (a projection over gate and up
 * concatenated). Bindings: Y [R, F], GU [R, 2F]. Uniforms: size (R·F), F.
 */
export function packedGatedActivationForward(
  rows: number,
  F: number,
  act: Activation,
): ProgramCall {
  const p = program(
    "packedGatedActivationForward",
    act,
    ["Y", "GU"],
    1,
    "let r = i / uniforms.F; let f = i % uniforms.F;\n  Y[i] = act(GU[2 * r * uniforms.F + f]) * GU[(2 * r + 1) * uniforms.F + f];",
  );
  return {
    program: { ...p, uniforms: [...p.uniforms, { name: "F", type: "i32" }] },
    uniforms: [rows * F, F],
    workgroups: flatGrid(Math.ceil((rows * F) / WORKGROUP)),
  };
}

/** dx = dy·act'(x). Bindings: dX [S], dY [S], X [S]. Uniforms: size. */
export function activationBackward(size: number, act: Activation): ProgramCall {
  return call(
    program(
      "activationBackward",
      act,
      ["dX", "dY", "X"],
      1,
      "dX[i] = dY[i] * actGrad(X[i]);",
    ),
    size,
  );
}

/**
 * dg = dy·u·act'(g), du = dy·act(g), in one dispatch. Bindings: dG [S], dU [S], dY [S], G [S], U [S].
 * Uniforms: size.
 */
export function gatedActivationBackward(
  size: number,
  act: Activation,
): ProgramCall {
  return call(
    program(
      "gatedActivationBackward",
      act,
      ["dG", "dU", "dY", "G", "U"],
      2,
      `let dy = dY[i];
  let g = G[i];
  let u = U[i];
  dG[i] = dy * u * actGrad(g);
  dU[i] = dy * act(g);`,
    ),
    size,
  );
}
