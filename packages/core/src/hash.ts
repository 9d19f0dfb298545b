/**
 * Hashes that must not change between releases. lowbias32, Chris Wellons' 32-bit integer hash (bias 0.17): dropout
 * masks (with a WGSL twin in kernels/lora_linear/dropout.ts, bit for bit) and the per-micro-batch dropout seeds the
 * Trainer derives. keyDigest: record keys of the data cleaner, and the matmul autotuner's shader-source digest.
 */
export function lowbias32(v: number): number {
  let x = v >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  return x;
}

/**
 * A 64-bit digest of a record key as 16 hex digits (two multiply-xorshift lanes over the UTF-16 code units, as
 * cyrb53). Not cryptographic: two different records collide with probability about n² / 2⁶⁵ among n rows.
 */
export function keyDigest(key: string): string {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 =
    Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^
    Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 =
    Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^
    Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  const hex = (h: number) => (h >>> 0).toString(16).padStart(8, "0");
  return hex(h2) + hex(h1);
}
