/** Seeded test data and the comparison every kernel test uses. */
import { expect } from 'vitest';

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

export interface Closeness {
  maxError: number;
  worstIndex: number;
}

/**
 * Elementwise |actual − expected| ≤ rtol · max(|expected|, rms(expected)). The rms floor keeps entries that
 * cancel to near zero from demanding more digits than f32 accumulation has.
 */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, what: string): Closeness {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  let sq = 0;
  for (let i = 0; i < expected.length; i++) sq += expected[i]! * expected[i]!;
  const rms = Math.sqrt(sq / Math.max(1, expected.length));
  let maxError = 0;
  let worstIndex = -1;
  for (let i = 0; i < expected.length; i++) {
    const scale = Math.max(Math.abs(expected[i]!), rms, 1e-30);
    const err = Math.abs(actual[i]! - expected[i]!) / scale;
    if (!(err <= maxError)) {
      maxError = err;
      worstIndex = i;
    }
  }
  expect(
    maxError,
    `${what}: worst relative error ${maxError} at ${worstIndex} (actual ${actual[worstIndex]}, expected ${expected[worstIndex]})`,
  ).toBeLessThanOrEqual(rtol);
  return { maxError, worstIndex };
}
