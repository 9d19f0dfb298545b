/**
 * lowbias32, Chris Wellons' 32-bit integer hash (bias 0.17): dropout masks (with a WGSL twin in
 * kernels/lora_linear/dropout.ts, bit for bit) and the per-micro-batch dropout seeds the Trainer derives.
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
