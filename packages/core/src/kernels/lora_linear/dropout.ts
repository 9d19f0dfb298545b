/**
 * The dropout mask of LoRA's input, as a pure function of (seed, element index), written twice: in WGSL and in
 * JavaScript. Both use only u32 arithmetic, so they agree bit for bit; the backward pass recomputes the forward's
 * mask instead of storing it.
 *
 * keep(seed, i) = lowbias32(i ^ lowbias32(seed)) >= threshold, with threshold = round(p * 2^32) (clamped).
 * lowbias32 is Chris Wellons' 32-bit integer hash (bias 0.17), good enough for a Bernoulli mask.
 */

/** WGSL functions `dropoutKeep(index)`, reading `uniforms.seedHash` and `uniforms.dropThreshold`. */
export const DROPOUT_WGSL = /* wgsl */ `
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
  return select(0.0, 1.0, lowbias32(u32(index) ^ uniforms.seedHash) >= uniforms.dropThreshold);
}
`;

export function lowbias32(v: number): number {
  let x = v >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  return x;
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
