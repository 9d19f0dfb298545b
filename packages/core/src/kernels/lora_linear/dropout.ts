/**
 * The dropout mask of LoRA's input, as a pure function of (seed, element index), written twice: in WGSL and in
 * JavaScript. Both use only u32 arithmetic, so they agree bit for bit; the backward pass recomputes the forward's
 * mask instead of storing it.
 *
 * keep(seed, i) = lowbias32(i ^ lowbias32(seed)) >= threshold, with threshold = round(p * 2^32) (clamped).
 * lowbias32 is Chris Wellons' 32-bit integer hash (bias 0.17), good enough for a Bernoulli mask.
 */

import { lowbias32 } from "../../hash.js";

export { lowbias32 };

/**
 * WGSL functions `lowbias32` and `dropoutKeep(index)`. The mask's hashed seed is `seedHashExpr`: the
 * `uniforms.seedHash` a tfjs program is given, or the compiled step's private `seedHash`, derived from the step
 * parameters (`STEP_SEED_HASH_WGSL`).
 */
export function dropoutWGSL(seedHashExpr: string): string {
  return /* wgsl */ `
fn lowbias32(v: u32) -> u32 {
  var x = v;
  x = x ^ (x >> 16u);
  x = x * 0x7feb352du;
  x = x ^ (x >> 15u);
  x = x * 0x846ca68bu;
  x = x ^ (x >> 16u);
  return x;
}
// 1.0 if element \`index\` of the dropout input is kept, else 0.0.
fn dropoutKeep(index: i32) -> f32 {
  return select(0.0, 1.0, lowbias32(u32(index) ^ ${seedHashExpr}) >= uniforms.dropThreshold);
}
`;
}

/**
 * The compiled step's mask seed, as `layerSeed` and `dropoutUniforms` derive it on the host, from this
 * micro-batch's seed and the layer's salt: lowbias32(lowbias32(dropoutSeed ^ salt)), all u32 arithmetic.
 */
export const STEP_SEED_HASH_WGSL =
  "seedHash = lowbias32(lowbias32(step.dropoutSeed ^ uniforms.seedSalt));";

/** The salt of the adapted layer at `index` among the model's adapted layers. */
export function layerSalt(index: number): number {
  return Math.imul(index + 1, 0x9e3779b9) >>> 0;
}

/** A layer's dropout seed in a micro-batch, as the tfjs path derives it (LoraLinear.forward). */
export function layerSeed(dropoutSeed: number, index: number): number {
  return lowbias32((dropoutSeed ^ layerSalt(index)) >>> 0);
}

/** keep = 1 / (1 - p): inverted dropout scales the kept elements up. */
export function keepScale(p: number): number {
  return 1 / (1 - p);
}

/** The integer threshold below which an element is dropped; p in [0, 1). */
export function dropThreshold(p: number): number {
  return Math.min(0xffffffff, Math.round(p * 2 ** 32)) >>> 0;
}

/** The uniforms the WGSL mask reads, for a dropout probability and seed. */
export function dropoutUniforms(
  p: number,
  seed: number,
): { seedHash: number; threshold: number } {
  return { seedHash: lowbias32(seed >>> 0), threshold: dropThreshold(p) };
}

/** JavaScript twin of `dropoutKeep`: 1 when element `index` is kept, else 0. */
export function dropoutKeep(
  index: number,
  seedHash: number,
  threshold: number,
): number {
  return lowbias32((index ^ seedHash) >>> 0) >= threshold ? 1 : 0;
}
