/**
 * The one place where tile sizes and the shared/direct kernel kind are chosen, from the problem's shape and the
 * adapter. `setLoraKernelVariant` overrides the choice so tests can cover every variant on any machine.
 */
import type { MatmulLayout, TileConfig } from "./shader.wgsl.js";

export type KernelKind = TileConfig["kind"];

let forcedKind: KernelKind | undefined;

/** Forces 'shared' or 'direct' kernels (tests, benchmarks); `undefined` restores the automatic choice. */
export function setLoraKernelVariant(kind: KernelKind | undefined): void {
  forcedKind = kind;
}

export interface ProblemShape {
  M: number;
  N: number;
  K: number;
}

export function chooseTile(
  shape: ProblemShape,
  layout: MatmulLayout,
  softwareAdapter: boolean,
): TileConfig {
  const kind: KernelKind =
    forcedKind ?? (softwareAdapter ? "direct" : "shared");
  const vec4X = layout.xLayout === "mk" ? shape.K % 4 === 0 : shape.M % 4 === 0;
  // A packed W takes its 4-element loaders under the same condition: 4 stored neighbours start at a multiple of 4.
  const vec4W = layout.wLayout === "kn" ? shape.N % 4 === 0 : shape.K % 4 === 0;
  // Narrow outputs (N = rank) get a tall tile, short ones (M = rank) a wide tile, so few invocations idle.
  let workgroup: [number, number] = [16, 16];
  if (shape.N <= 16) workgroup = [4, 64];
  else if (shape.M <= 16) workgroup = [64, 4];
  if (kind === "direct")
    workgroup = shape.N <= 16 ? [4, 16] : shape.M <= 16 ? [16, 4] : [8, 8];
  return { kind, workgroup, tileK: 16, vec4X, vec4W };
}
