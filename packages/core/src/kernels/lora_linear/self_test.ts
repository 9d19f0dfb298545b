/**
 * A self-test of the LoRA linear kernels on the running device: seeded inputs, the op and its gradients on the
 * current tfjs backend, and the CPU reference of each. Tests use it as their oracle harness; apps can run it once
 * to catch a broken GPU driver before training on it.
 */
import * as tf from "@tensorflow/tfjs";
import type { LoraKernelAttrs } from "./attrs.js";
import { loraLinear, type LoraLinearOptions } from "./op.js";
import {
  loraForwardReference,
  loraGradAReference,
  loraGradBReference,
  loraGradXReference,
  projectGradReference,
} from "./reference.js";

export interface LoraCheckCase {
  /** Tokens (batch × sequence), input and output features, rank. */
  T: number;
  IN: number;
  OUT: number;
  R: number;
  weightLayout: LoraLinearOptions["weightLayout"];
  bias?: boolean;
  dropout?: number;
  seed?: number;
  scale?: number;
  /** Leading batch dims of x, whose product is T (default [T]). */
  lead?: number[];
}

/** The four results of one case: y and the gradients of Σ cotangent∘y. */
export interface LoraCheckTensors {
  y: Float32Array;
  dx: Float32Array;
  dA: Float32Array;
  dB: Float32Array;
}

export interface LoraCheckResult {
  case: LoraCheckCase;
  /** Worst elementwise relative error of each output (see `relativeError`). */
  errors: Record<keyof LoraCheckTensors, number>;
}

/** Deterministic uniform values in [-1, 1) from a 32-bit seed (mulberry32). */
export function seededValues(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

/**
 * max over i of |actual − expected| / max(|expected|, rms(expected)). The rms floor keeps entries that cancel to
 * near zero from demanding more digits than f32 accumulation has. NaN anywhere gives NaN.
 */
export function relativeError(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
): { error: number; index: number } {
  if (actual.length !== expected.length) return { error: Infinity, index: -1 };
  let sq = 0;
  for (let i = 0; i < expected.length; i++) sq += expected[i]! * expected[i]!;
  const rms = Math.sqrt(sq / Math.max(1, expected.length));
  let error = 0;
  let index = -1;
  for (let i = 0; i < expected.length; i++) {
    const err =
      Math.abs(actual[i]! - expected[i]!) /
      Math.max(Math.abs(expected[i]!), rms, 1e-30);
    if (!(err <= error)) {
      error = err;
      index = i;
      if (Number.isNaN(err)) break;
    }
  }
  return { error, index };
}

interface CaseData {
  x: Float32Array;
  W: Float32Array;
  bias: Float32Array | undefined;
  A: Float32Array;
  B: Float32Array;
  cotangent: Float32Array;
}

function caseData(c: LoraCheckCase): CaseData {
  return {
    x: seededValues(c.T * c.IN, 1),
    W: seededValues(c.IN * c.OUT, 2),
    bias: c.bias ? seededValues(c.OUT, 3) : undefined,
    A: seededValues(c.R * c.IN, 4),
    B: seededValues(c.OUT * c.R, 5),
    cotangent: seededValues(c.T * c.OUT, 6),
  };
}

function attrsOf(c: LoraCheckCase): LoraKernelAttrs {
  return {
    scale: c.scale ?? 2,
    weightLayout: c.weightLayout,
    dropout: c.dropout ?? 0,
    seed: c.seed ?? 7,
  };
}

/** y, dx, dA and dB of one case on the current tfjs backend. Disposes everything it makes. */
export async function runLoraCase(c: LoraCheckCase): Promise<LoraCheckTensors> {
  const data = caseData(c);
  const lead = c.lead ?? [c.T];
  const t = {
    x: tf.tensor(data.x, [...lead, c.IN]),
    W: tf.tensor2d(
      data.W,
      c.weightLayout === "in_out" ? [c.IN, c.OUT] : [c.OUT, c.IN],
    ),
    bias: data.bias ? tf.tensor1d(data.bias) : null,
    A: tf.tensor2d(data.A, [c.R, c.IN]),
    B: tf.tensor2d(data.B, [c.OUT, c.R]),
    cot: tf.tensor(data.cotangent, [...lead, c.OUT]),
  };
  const options = attrsOf(c);
  const outputs: tf.Tensor[] = [];
  try {
    const y = loraLinear(t.x, t.W, t.bias, t.A, t.B, options);
    outputs.push(y);
    const f = (x: tf.Tensor, A: tf.Tensor, B: tf.Tensor) =>
      loraLinear(x, t.W, t.bias, A as tf.Tensor2D, B as tf.Tensor2D, options)
        .mul(t.cot)
        .sum();
    const grads = tf.grads(f)([t.x, t.A, t.B]);
    outputs.push(...grads);
    const [y_, dx, dA, dB] = await Promise.all(
      outputs.map((o) => o.data() as Promise<Float32Array>),
    );
    return { y: y_!, dx: dx!, dA: dA!, dB: dB! };
  } finally {
    tf.dispose([...outputs, t.x, t.W, t.A, t.B, t.cot]);
    t.bias?.dispose();
  }
}

/** The CPU reference's y, dx, dA and dB for the same case. */
export function referenceLoraCase(c: LoraCheckCase): LoraCheckTensors {
  const data = caseData(c);
  const d = { T: c.T, IN: c.IN, OUT: c.OUT, R: c.R };
  const a = attrsOf(c);
  const g = projectGradReference(data.cotangent, data.B, d);
  return {
    y: loraForwardReference(data.x, data.W, data.bias, data.A, data.B, d, a),
    dx: loraGradXReference(data.cotangent, data.W, g, data.A, d, a),
    dA: loraGradAReference(g, data.x, d, a),
    dB: loraGradBReference(data.cotangent, data.x, data.A, d, a),
  };
}

/** Cases that cover both weight layouts, bias, dropout and shapes off every tile edge. */
export const DEFAULT_CHECK_CASES: LoraCheckCase[] = [
  { T: 7, IN: 13, OUT: 9, R: 3, weightLayout: "in_out", bias: true },
  {
    T: 33,
    IN: 64,
    OUT: 48,
    R: 8,
    weightLayout: "out_in",
    dropout: 0.1,
    seed: 3,
  },
];

/**
 * Runs the LoRA kernels against their CPU references on the current backend.
 *
 * @example
 * ```ts
 * await initRuntime();
 * const results = await verifyLoraKernels();
 * if (results.some((r) => Object.values(r.errors).some((e) => !(e <= 1e-4)))) alert('this GPU computes wrong results');
 * ```
 */
export async function verifyLoraKernels(
  cases: LoraCheckCase[] = DEFAULT_CHECK_CASES,
): Promise<LoraCheckResult[]> {
  const results: LoraCheckResult[] = [];
  for (const c of cases) {
    const got = await runLoraCase(c);
    const want = referenceLoraCase(c);
    const errors = {
      y: relativeError(got.y, want.y).error,
      dx: relativeError(got.dx, want.dx).error,
      dA: relativeError(got.dA, want.dA).error,
      dB: relativeError(got.dB, want.dB).error,
    };
    results.push({ case: c, errors });
  }
  return results;
}
