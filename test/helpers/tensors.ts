/** The comparison every kernel test uses, with a message that says where it failed. */
import { expect } from "vitest";
import { relativeError } from "../../packages/core/src/kernels/lora_linear/self_test.js";

export { seededValues } from "../../packages/core/src/kernels/lora_linear/self_test.js";

/** Elementwise |actual − expected| ≤ rtol · max(|expected|, rms(expected)); see `relativeError`. */
export function expectClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  rtol: number,
  what: string,
): number {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  const { error, index } = relativeError(actual, expected);
  expect(
    error,
    `${what}: worst relative error ${error} at ${index} (actual ${actual[index]}, expected ${expected[index]})`,
  ).toBeLessThanOrEqual(rtol);
  return error;
}

/**
 * Normwise: max |actual − expected| ≤ rtol · max |expected|. For results two implementations sum in different
 * orders (a tensor's small entries carry the absolute error of its large ones).
 */
export function expectNear(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  rtol: number,
  what: string,
): number {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  let scale = 0;
  let worst = 0;
  let at = 0;
  for (let i = 0; i < expected.length; i++) {
    scale = Math.max(scale, Math.abs(expected[i]!));
    const err = Math.abs(actual[i]! - expected[i]!);
    if (!(err <= worst)) [worst, at] = [err, i];
  }
  expect(
    worst,
    `${what}: worst error ${worst} at ${at} (actual ${actual[at]}, expected ${expected[at]}), scale ${scale}`,
  ).toBeLessThanOrEqual(rtol * scale);
  return scale > 0 ? worst / scale : worst;
}
