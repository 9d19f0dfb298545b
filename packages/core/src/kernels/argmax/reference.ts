/** CPU reference of `rowArgmax` (program.ts): each row's first maximum and its column (+ v0). */
export function rowArgmaxReference(
  z: ArrayLike<number>,
  rows: number,
  V: number,
  v0: number,
): Float64Array {
  const out = new Float64Array(2 * rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let c = 1; c < V; c++) if (z[r * V + c]! > z[r * V + best]!) best = c;
    out[2 * r] = z[r * V + best]!;
    out[2 * r + 1] = best + v0;
  }
  return out;
}
