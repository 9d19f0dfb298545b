/**
 * One LoRA linear test case: seeded inputs, the op and its gradients on the current tfjs backend, and the CPU
 * reference of each, compared with `expectClose`.
 */
import * as tf from '@tensorflow/tfjs';
import { loraLinear, type LoraLinearOptions } from '@webtune/core';
import {
  loraForwardReference,
  loraGradAReference,
  loraGradBReference,
  loraGradXReference,
  projectGradReference,
} from '../../../packages/core/src/kernels/lora_linear/reference.js';
import { expectClose, seededValues } from '../../helpers/tensors.js';

export interface LoraCase {
  T: number;
  IN: number;
  OUT: number;
  R: number;
  weightLayout: LoraLinearOptions['weightLayout'];
  bias?: boolean;
  dropout?: number;
  seed?: number;
  scale?: number;
  /** Leading batch dims of x, whose product is T (default [T]). */
  lead?: number[];
}

export interface CaseData {
  x: Float32Array;
  W: Float32Array;
  bias: Float32Array | undefined;
  A: Float32Array;
  B: Float32Array;
  cotangent: Float32Array;
}

export function caseData(c: LoraCase): CaseData {
  return {
    x: seededValues(c.T * c.IN, 1),
    W: seededValues(c.IN * c.OUT, 2),
    bias: c.bias ? seededValues(c.OUT, 3) : undefined,
    A: seededValues(c.R * c.IN, 4),
    B: seededValues(c.OUT * c.R, 5),
    cotangent: seededValues(c.T * c.OUT, 6),
  };
}

export function optionsOf(c: LoraCase): LoraLinearOptions {
  return { scale: c.scale ?? 2, weightLayout: c.weightLayout, dropout: c.dropout ?? 0, seed: c.seed ?? 7 };
}

/** Runs y and (dx, dA, dB) of Σ cotangent∘y on the current backend; returns them as arrays. */
export async function runCase(c: LoraCase, data = caseData(c)) {
  const wShape: [number, number] = c.weightLayout === 'in_out' ? [c.IN, c.OUT] : [c.OUT, c.IN];
  const lead = c.lead ?? [c.T];
  const x = tf.tensor(data.x, [...lead, c.IN]);
  const W = tf.tensor2d(data.W, wShape);
  const bias = data.bias ? tf.tensor1d(data.bias) : null;
  const A = tf.tensor2d(data.A, [c.R, c.IN]);
  const B = tf.tensor2d(data.B, [c.OUT, c.R]);
  const cot = tf.tensor(data.cotangent, [...lead, c.OUT]);
  const f = (xv: tf.Tensor, Av: tf.Tensor, Bv: tf.Tensor) =>
    loraLinear(xv, W, bias, Av as tf.Tensor2D, Bv as tf.Tensor2D, optionsOf(c)).mul(cot).sum();
  try {
    const y = loraLinear(x, W, bias, A, B, optionsOf(c));
    const [dx, dA, dB] = tf.grads(f)([x, A, B]);
    const out = {
      yShape: y.shape,
      y: (await y.data()) as Float32Array,
      dx: (await dx!.data()) as Float32Array,
      dA: (await dA!.data()) as Float32Array,
      dB: (await dB!.data()) as Float32Array,
    };
    tf.dispose([y, dx!, dA!, dB!]);
    return out;
  } finally {
    tf.dispose([x, W, A, B, cot]);
    if (bias) bias.dispose();
  }
}

export function referenceCase(c: LoraCase, data = caseData(c)) {
  const d = { T: c.T, IN: c.IN, OUT: c.OUT, R: c.R };
  const a = { ...optionsOf(c), dropout: c.dropout ?? 0, seed: c.seed ?? 7 };
  const g = projectGradReference(data.cotangent, data.B, d);
  return {
    y: loraForwardReference(data.x, data.W, data.bias, data.A, data.B, d, a),
    dx: loraGradXReference(data.cotangent, data.W, g, data.A, d, a),
    dA: loraGradAReference(g, data.x, d, a),
    dB: loraGradBReference(data.cotangent, data.x, data.A, d, a),
  };
}

/** The kernel test: forward and every gradient within `rtol` of the CPU reference. */
export async function expectCaseMatchesReference(c: LoraCase, rtol = 1e-4): Promise<void> {
  const data = caseData(c);
  const got = await runCase(c, data);
  const want = referenceCase(c, data);
  const name = `${JSON.stringify(c)}`;
  expectClose(got.y, want.y, rtol, `${name} y`);
  expectClose(got.dx, want.dx, rtol, `${name} dx`);
  expectClose(got.dA, want.dA, rtol, `${name} dA`);
  expectClose(got.dB, want.dB, rtol, `${name} dB`);
}
