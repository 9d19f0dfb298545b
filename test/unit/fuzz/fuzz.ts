/**
 * Shared by the fuzz tests: every input either parses or is refused with a WebtuneError, quickly; anything else (a
 * TypeError, RangeError or SyntaxError escaping, or one input taking seconds) fails the property with the input.
 *
 * Runs are seeded, so CI sees the same inputs every time. To explore further locally:
 *   WEBTUNE_FUZZ_SEED=123 WEBTUNE_FUZZ_SCALE=20 npx vitest run --project unit test/unit/fuzz/
 */
import { WebtuneError } from "../../../packages/core/src/errors.js";

const SEED = Number(process.env["WEBTUNE_FUZZ_SEED"] ?? 20261217);
const SCALE = Number(process.env["WEBTUNE_FUZZ_SCALE"] ?? 1);

/** The longest one input may take: every parser here is linear in its input, and the inputs are small. */
export const PER_INPUT_MS = 2_000;

/** fast-check parameters: `numRuns` (times the scale), a seed per property, and a time budget as a safety net. */
export function fuzzParameters(numRuns: number, property: number) {
  return {
    seed: SEED + property,
    numRuns: Math.max(1, Math.round(numRuns * SCALE)),
    interruptAfterTimeLimit: 8_000 * SCALE,
    markInterruptAsFailure: false,
    endOnFailure: true,
  };
}

/** How often inputs parsed and were refused: a property that never reaches one side explores too little. */
export class Outcomes {
  parsed = 0;
  refused = 0;
  get total(): number {
    return this.parsed + this.refused;
  }

  /** The class names of the WebtuneErrors seen. */
  readonly kinds = new Set<string>();

  /** Runs `fn` on one input: it returns, or throws a WebtuneError (counted); any other throw fails the run. */
  async check(fn: () => unknown): Promise<void> {
    const start = performance.now();
    let error: unknown;
    try {
      await fn();
    } catch (e) {
      error = e ?? new Error("threw undefined");
    }
    this.count(error, start);
  }

  /** The synchronous form, for fc.property. */
  checkSync(fn: () => unknown): void {
    const start = performance.now();
    let error: unknown;
    try {
      fn();
    } catch (e) {
      error = e ?? new Error("threw undefined");
    }
    this.count(error, start);
  }

  private count(error: unknown, start: number): void {
    if (error === undefined) this.parsed++;
    else if (error instanceof WebtuneError) {
      this.refused++;
      this.kinds.add(error.name);
    } else throw error;
    const ms = performance.now() - start;
    if (ms > PER_INPUT_MS)
      throw new Error(
        `one input took ${ms.toFixed(0)} ms (limit ${PER_INPUT_MS})`,
      );
  }
}
