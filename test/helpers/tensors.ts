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
