/**
 * The float64 CPU oracle of the cross-entropy programs (`program.ts`): each program's output computed by plain
 * loops, and the whole loss head computed the obvious way, from full-vocabulary logits, to check that the chunked
 * pieces add up to it.
 *
 * Letters: n rows of one block, Vc columns of one chunk (vocabulary ids v0 .. v0 + Vc − 1), K chunks, V = Σ Vc.
 * With a softcap cap, l = cap·tanh(z / cap) and dl/dz = 1 − tanh²(z / cap); without one, l = z.
 */
import { IGNORED } from "./program.js";

const logitOf = (z: number, cap: number | undefined) =>
  cap === undefined ? z : cap * Math.tanh(z / cap);

const slopeOf = (z: number, cap: number | undefined) =>
  cap === undefined ? 1 : 1 - Math.tanh(z / cap) ** 2;

/** One chunk's statistics, [n, 4]: (max l, Σ exp(l − max), l[target] or 0, 1 if the target is in the chunk). */
export function chunkStatsReference(
  z: ArrayLike<number>, // [n, Vc]
  targets: ArrayLike<number>, // [n]
  v0: number,
  softcap: number | undefined,
): Float64Array {
  const n = targets.length;
  const Vc = z.length / n;
  const stats = new Float64Array(n * 4);
  for (let r = 0; r < n; r++) {
    const l = Array.from({ length: Vc }, (_, c) =>
      logitOf(z[r * Vc + c]!, softcap),
    );
    const top = Math.max(...l);
    const column = targets[r]! - v0;
    const found = column >= 0 && column < Vc;
    stats.set(
      [
        top,
        l.reduce((s, x) => s + Math.exp(x - top), 0),
        found ? l[column]! : 0,
        found ? 1 : 0,
      ],
      r * 4,
    );
  }
  return stats;
}

/**
 * lse [n] from the K chunks' statistics, and the loss scalar after the block: `prior` + Σ_valid (lse − l[target])
 * · lossScale, with `prior` 0 when combine overwrites.
 */
export function combineReference(
  stats: ArrayLike<number>[], // K × [n, 4]
  targets: ArrayLike<number>, // [n]
  lossScale: number,
  prior: number,
): { lse: Float64Array; loss: number } {
  const n = targets.length;
  const lse = new Float64Array(n);
  let loss = 0;
  for (let r = 0; r < n; r++) {
    const top = Math.max(...stats.map((s) => s[r * 4]!));
    const total = stats.reduce(
      (sum, s) => sum + s[r * 4 + 1]! * Math.exp(s[r * 4]! - top),
      0,
    );
    lse[r] = top + Math.log(total);
    const owner = stats.find((s) => s[r * 4 + 3] === 1);
    if (targets[r] !== IGNORED) loss += lse[r]! - owner![r * 4 + 2]!;
  }
  return { lse, loss: prior + loss * lossScale };
}

/** dloss/dz of one chunk, [n, Vc]: (exp(l − lse) − onehot(target)) · w · dl/dz, w = lossScale or 0 if ignored. */
export function chunkGradReference(
  z: ArrayLike<number>, // [n, Vc]
  targets: ArrayLike<number>, // [n]
  lse: ArrayLike<number>, // [n]
  v0: number,
  softcap: number | undefined,
  lossScale: number,
): Float64Array {
  const n = targets.length;
  const Vc = z.length / n;
  const dz = new Float64Array(n * Vc);
  for (let r = 0; r < n; r++) {
    const w = targets[r] === IGNORED ? 0 : lossScale;
    for (let c = 0; c < Vc; c++) {
      const x = z[r * Vc + c]!;
      const p = Math.exp(logitOf(x, softcap) - lse[r]!);
      const onehot = targets[r] === v0 + c ? 1 : 0;
      dz[r * Vc + c] = (p - onehot) * w * slopeOf(x, softcap);
    }
  }
  return dz;
}

/**
 * Softmax cross-entropy of full-vocabulary logits z [n, V], summed over the valid rows and weighted by
 * `lossScale`, and its gradient dz [n, V]: what the chunked programs must add up to.
 */
export function crossEntropyReference(
  z: ArrayLike<number>, // [n, V]
  targets: ArrayLike<number>, // [n]
  softcap: number | undefined,
  lossScale: number,
): { loss: number; dz: Float64Array } {
  const n = targets.length;
  const V = z.length / n;
  const dz = new Float64Array(n * V);
  let loss = 0;
  for (let r = 0; r < n; r++) {
    const row = Array.from({ length: V }, (_, c) => z[r * V + c]!);
    const l = row.map((x) => logitOf(x, softcap));
    const top = Math.max(...l);
    const sum = l.reduce((s, x) => s + Math.exp(x - top), 0);
    const t = targets[r]!;
    if (t === IGNORED) continue; // dz stays 0
    loss += top + Math.log(sum) - l[t]!;
    l.forEach((x, c) => {
      const p = Math.exp(x - top) / sum;
      dz[r * V + c] =
        (p - (c === t ? 1 : 0)) * lossScale * slopeOf(row[c]!, softcap);
    });
  }
  return { loss: loss * lossScale, dz };
}
