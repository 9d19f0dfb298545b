/** Small statistics and rounding shared by the scenarios. */

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function geometricMean(xs: number[]): number {
  return Math.exp(xs.reduce((s, v) => s + Math.log(v), 0) / xs.length);
}

/** Four significant digits: enough for ratios and timings on a noisy machine. */
export function round(x: number, significant = 4): number {
  return Number.isFinite(x) ? Number(x.toPrecision(significant)) : x;
}

/** Milliseconds of an async call. */
export async function timed<T>(
  fn: () => Promise<T>,
): Promise<{ ms: number; value: T }> {
  const start = performance.now();
  const value = await fn();
  return { ms: performance.now() - start, value };
}
