/** What bench.ts hands each of the parts that live in their own files (engine_step.ts, decode.ts, checks.ts). */
export interface PartContext {
  /** WEBTUNE_GPU_BENCH_SMOKE=1: tiny sizes, to check the recipe on lavapipe. */
  smoke: boolean;
  log(line: string): void;
  /** The run's JSON result (its last line): a part puts its numbers under its own key. */
  result: Record<string, unknown>;
}

/** `digits` + 3 significant digits, as bench.ts rounds its numbers; null for what is not finite. */
export function sig(x: number, digits = 3): number | null {
  return Number.isFinite(x) ? Number(x.toPrecision(digits + 3)) : null;
}

/** An integer from the environment, or `fallback`. */
export function envInt(name: string, fallback: number): number {
  const v = process.env[name];
  return v === undefined || v === "" ? fallback : Number(v);
}

export function exp2(x: number): string {
  return Number.isFinite(x) ? x.toExponential(2) : String(x);
}
