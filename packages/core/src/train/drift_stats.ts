/**
 * The statistics behind drift reports, pure and seeded: a two-sample bootstrap of a ratio metric's change, the
 * two-sample Kolmogorov–Smirnov test (asymptotic p-value from the Kolmogorov distribution's series), and the
 * chi-square test of homogeneity (p-value from the regularised upper incomplete gamma function).
 */
import { ConfigError } from "../errors.js";
import { checkInteger, mulberry32, streamSeed } from "./data/random.js";

/** One row of a ratio metric Σnum / Σden: accuracy (num = correct, den = 1), loss (num = nll, den = tokens). */
export interface RatioRow {
  num: number;
  den: number;
}

/** A metric on two samples, its change (current − baseline) and a bootstrap percentile interval of the change. */
export interface DeltaInterval {
  baseline: number;
  current: number;
  delta: number;
  /** The interval's ends: the (1 − confidence)/2 and (1 + confidence)/2 quantiles of the resampled changes. */
  low: number;
  high: number;
  confidence: number;
  resamples: number;
  seed: number;
}

/** The bootstrap's own stream of the caller's seed (see random.ts), apart from splits and shuffles. */
const BOOTSTRAP_STREAM = 0xb007;

/**
 * The change of the metric Σnum/Σden from `baseline` to `current`, with a two-sample bootstrap percentile interval:
 * each side is resampled with replacement to its own size, `resamples` times, from one seeded generator. Rows with
 * `den` 0 (a row without loss tokens) carry nothing and are left out.
 *
 * @example
 * ```ts
 * const rows = (correct: number[]) => correct.map((c) => ({ num: c, den: 1 }));
 * const d = bootstrapDelta(rows([1, 1, 0, 1]), rows([0, 1, 0, 0]), { seed: 0 });
 * console.log(d.delta, d.low, d.high); // -0.5 and its 95 % interval
 * ```
 */
export function bootstrapDelta(
  baseline: readonly RatioRow[],
  current: readonly RatioRow[],
  options: { resamples?: number; confidence?: number; seed?: number } = {},
): DeltaInterval {
  const { resamples = 2000, confidence = 0.95, seed = 0 } = options;
  checkInteger(resamples, "resamples", 1);
  checkInteger(seed, "seed");
  if (!(confidence > 0 && confidence < 1))
    throw new ConfigError(
      `confidence is ${confidence}; expected a number between 0 and 1, e.g. 0.95.`,
    );
  const a = usable(baseline, "baseline");
  const b = usable(current, "current");
  const random = mulberry32(streamSeed(seed, BOOTSTRAP_STREAM));
  const deltas = new Float64Array(resamples);
  for (let r = 0; r < resamples; r++)
    deltas[r] = resampledRatio(b, random) - resampledRatio(a, random);
  deltas.sort();
  const [before, now] = [ratio(a), ratio(b)];
  return {
    baseline: before,
    current: now,
    delta: now - before,
    low: quantile(deltas, (1 - confidence) / 2),
    high: quantile(deltas, (1 + confidence) / 2),
    confidence,
    resamples,
    seed,
  };
}

function usable(rows: readonly RatioRow[], side: string): RatioRow[] {
  const kept = rows.filter((r) => r.den > 0);
  if (kept.length === 0)
    throw new ConfigError(
      `the ${side} rows have nothing to measure (${rows.length} rows, none with a positive denominator).`,
    );
  return kept;
}

function ratio(rows: readonly RatioRow[]): number {
  let num = 0;
  let den = 0;
  for (const r of rows) {
    num += r.num;
    den += r.den;
  }
  return num / den;
}

function resampledRatio(rows: readonly RatioRow[], random: () => number) {
  let num = 0;
  let den = 0;
  for (let i = 0; i < rows.length; i++) {
    const r = rows[Math.floor(random() * rows.length)]!;
    num += r.num;
    den += r.den;
  }
  return num / den;
}

/** The q-quantile of sorted values, linearly interpolated between order statistics (R's type 7, NumPy's default). */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0)
    throw new ConfigError("quantile of no values: give at least one.");
  const at = q * (sorted.length - 1);
  const lo = Math.floor(at);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo]! + (at - lo) * (sorted[hi]! - sorted[lo]!);
}

/** The two-sample Kolmogorov–Smirnov test: D = sup |F_a − F_b| and its asymptotic p-value. */
export interface KsTest {
  d: number;
  pValue: number;
}

/**
 * Two-sample Kolmogorov–Smirnov test. D is the largest gap between the two empirical distribution functions (ties
 * are stepped over together); the p-value is the Kolmogorov distribution's survival at √(nm/(n+m))·D, as
 * scipy.stats.kstwobign gives it: asymptotic, so conservative or loose for a few dozen rows.
 *
 * @example
 * ```ts
 * ksTwoSample([1, 2, 3, 4], [3, 4, 5, 6]); // { d: 0.5, pValue: 0.6994 } (λ = √2 · 0.5)
 * ```
 */
export function ksTwoSample(
  a: readonly number[],
  b: readonly number[],
): KsTest {
  if (a.length === 0 || b.length === 0)
    throw new ConfigError(
      `the Kolmogorov–Smirnov test needs values on both sides (got ${a.length} and ${b.length}).`,
    );
  const x = [...a].sort((p, q) => p - q);
  const y = [...b].sort((p, q) => p - q);
  let [i, j, d] = [0, 0, 0];
  while (i < x.length && j < y.length) {
    const v = Math.min(x[i]!, y[j]!);
    while (i < x.length && x[i]! <= v) i++;
    while (j < y.length && y[j]! <= v) j++;
    d = Math.max(d, Math.abs(i / x.length - j / y.length));
  }
  const n = (x.length * y.length) / (x.length + y.length);
  return { d, pValue: kolmogorovSurvival(Math.sqrt(n) * d) };
}

/**
 * P(K > λ) for the Kolmogorov distribution: 2 Σ_{k≥1} (−1)^{k−1} e^{−2k²λ²}, or, for small λ where that series
 * converges slowly, 1 − (√(2π)/λ) Σ_{k≥1} e^{−(2k−1)²π²/(8λ²)}.
 */
export function kolmogorovSurvival(lambda: number): number {
  if (!(lambda > 0)) return 1;
  let sum = 0;
  if (lambda < 1.18) {
    const c = (Math.PI * Math.PI) / (8 * lambda * lambda);
    for (let k = 1; k <= 20; k++) sum += Math.exp(-((2 * k - 1) ** 2) * c);
    return clamp01(1 - (Math.sqrt(2 * Math.PI) / lambda) * sum);
  }
  for (let k = 1; k <= 100; k++) {
    const term = Math.exp(-2 * k * k * lambda * lambda);
    sum += k % 2 === 1 ? term : -term;
    if (term < 1e-17) break;
  }
  return clamp01(2 * sum);
}

const clamp01 = (v: number) => Math.min(1, Math.max(0, v));

/** A chi-square test: the statistic, its degrees of freedom and p-value. */
export interface ChiSquareTest {
  statistic: number;
  dof: number;
  pValue: number;
}

/**
 * Chi-square test of homogeneity of two samples' counts per category (a 2 × K table): Σ (O − E)²/E with E from
 * the margins, K − 1 degrees of freedom. A category counted on one side only is a column like any other (its
 * expected count on the other side is positive). One category in all: statistic 0, p 1. Like every chi-square
 * test it is approximate when expected counts are small (under about 5).
 *
 * @example
 * ```ts
 * chiSquareHomogeneity({ yes: 30, no: 10 }, { yes: 15, no: 25 }); // { statistic: 11.43, dof: 1, pValue: 0.0007 }
 * ```
 */
export function chiSquareHomogeneity(
  a: Readonly<Record<string, number>>,
  b: Readonly<Record<string, number>>,
): ChiSquareTest {
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter(
    (k) => (a[k] ?? 0) + (b[k] ?? 0) > 0,
  );
  const total = (c: Readonly<Record<string, number>>) =>
    keys.reduce((s, k) => s + (c[k] ?? 0), 0);
  const [na, nb] = [total(a), total(b)];
  if (na === 0 || nb === 0)
    throw new ConfigError(
      `the chi-square test needs counts on both sides (got ${na} and ${nb}).`,
    );
  if (keys.length < 2) return { statistic: 0, dof: 0, pValue: 1 };
  let statistic = 0;
  for (const k of keys) {
    const column = (a[k] ?? 0) + (b[k] ?? 0);
    for (const [observed, n] of [
      [a[k] ?? 0, na],
      [b[k] ?? 0, nb],
    ] as const) {
      const expected = (n * column) / (na + nb);
      statistic += (observed - expected) ** 2 / expected;
    }
  }
  const dof = keys.length - 1;
  return { statistic, dof, pValue: chiSquareSurvival(statistic, dof) };
}

/** P(X > x) for X ~ χ²(dof): the regularised upper incomplete gamma Q(dof/2, x/2). */
export function chiSquareSurvival(x: number, dof: number): number {
  if (!(dof > 0))
    throw new ConfigError(`chi-square needs dof > 0, got ${dof}.`);
  return x <= 0 ? 1 : gammaQ(dof / 2, x / 2);
}

/**
 * The regularised upper incomplete gamma function Q(a, x) = Γ(a, x)/Γ(a): by its series below x = a + 1, by its
 * continued fraction (modified Lentz) above, as Numerical Recipes (§6.2) does.
 */
export function gammaQ(a: number, x: number): number {
  if (!(a > 0) || x < 0)
    throw new ConfigError(`gammaQ needs a > 0 and x >= 0, got a=${a}, x=${x}.`);
  if (x === 0) return 1;
  const front = Math.exp(-x + a * Math.log(x) - logGamma(a));
  if (x < a + 1) {
    // P(a, x) = e^{−x} x^a / Γ(a) · Σ_n x^n / (a (a+1) … (a+n))
    let term = 1 / a;
    let sum = term;
    for (let n = 1; n < 1000 && Math.abs(term) > Math.abs(sum) * 1e-16; n++) {
      term *= x / (a + n);
      sum += term;
    }
    return clamp01(1 - front * sum);
  }
  const tiny = 1e-300;
  let b = x + 1 - a;
  let c = 1 / tiny;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 1000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const step = d * c;
    h *= step;
    if (Math.abs(step - 1) < 1e-16) break;
  }
  return clamp01(front * h);
}

/** ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms: about 15 significant digits). */
export function logGamma(x: number): number {
  if (x < 0.5)
    return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  const g = 7;
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028,
    771.32342877765313, -176.61502916214059, 12.507343278686905,
    -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  const z = x - 1;
  let s = c[0]!;
  for (let i = 1; i < c.length; i++) s += c[i]! / (z + i);
  const t = z + g + 0.5;
  return (
    0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(s)
  );
}
