/**
 * Seeded randomness for splits and shuffles, the same in every JavaScript engine: mulberry32 (a 32-bit generator
 * by Tommy Ettinger: a Weyl sequence stepped by 0x6D2B79F5, then an xorshift-multiply output mix), seeded from the
 * caller's integer seed and a stream number (the purpose, or the epoch) through MurmurHash3's 32-bit finalizer.
 */
import { ConfigError } from "../../errors.js";

/** MurmurHash3's fmix32: a bijection of 32-bit integers that spreads every input bit. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A 32-bit seed for `stream` of the integer `seed` (a safe integer; its high bits count too). */
export function streamSeed(seed: number, stream: number): number {
  const low = seed >>> 0;
  const high = Math.floor(seed / 2 ** 32) >>> 0;
  return fmix32(fmix32(fmix32(low) ^ high) ^ fmix32(stream >>> 0));
}

/** mulberry32: uniform numbers in [0, 1) from a 32-bit seed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A shuffled copy (Fisher-Yates, from the last position down). */
export function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** Throws a ConfigError unless `value` is a safe integer (at least `min`). */
export function checkInteger(
  value: number,
  name: string,
  min = Number.MIN_SAFE_INTEGER,
): void {
  if (Number.isSafeInteger(value) && value >= min) return;
  const range =
    min === Number.MIN_SAFE_INTEGER ? "an integer" : `an integer >= ${min}`;
  throw new ConfigError(`${name} is ${value}; expected ${range}.`);
}
