/**
 * The one place where the tiled matmul's variant is chosen, from the problem's shape, the adapter and the tuned
 * table. In order: a variant forced by `setLoraKernelVariant` (tests, benchmarks), the autotuner's choice for the
 * shape's class (`installTileTable`, filled by `autotune.ts`), then the fixed default ('direct' on CPU adapters,
 * 'shared' elsewhere).
 *
 * Variants (tiles.wgsl.ts has the loops, split_k.ts the second pass):
 *   direct             register tiles straight from storage, 4×4 per invocation (CPU adapters)
 *   shared             64×64 workgroup tile, 4×4 per invocation, one workgroup-memory buffer (the default)
 *   shared-double      the same, double-buffered
 *   shared128          128×128 tile, 8×8 per invocation
 *   shared128-double   the same, double-buffered
 *   <any>-splitk       K cut into S splits over grid z, then a sum pass; only where the caller can record two
 *                      dispatches (the engine; tfjs's kernels run the variant without the split)
 * Narrow outputs (N ≤ 16: a rank) get tall tiles and short ones (M ≤ 16) wide tiles, so few invocations idle.
 */
import { deviceLimit } from "../../runtime/runtime.js";
import type { MatmulLayout, TileConfig } from "./shader.wgsl.js";
import { splitChunk } from "./split_k.js";

export type KernelKind = TileConfig["kind"];

export const BASE_VARIANTS = [
  "direct",
  "shared",
  "shared-double",
  "shared128",
  "shared128-double",
] as const;
export type BaseVariant = (typeof BASE_VARIANTS)[number];
export type VariantName = BaseVariant | `${BaseVariant}-splitk`;

/** Every variant name, split-K ones included. */
export const VARIANT_NAMES: VariantName[] = BASE_VARIANTS.flatMap((b) => [
  b,
  `${b}-splitk` as const,
]);

export function isVariantName(v: unknown): v is VariantName {
  return (VARIANT_NAMES as unknown[]).includes(v);
}

export interface ProblemShape {
  M: number;
  N: number;
  K: number;
}

/** One tuned choice: a variant and the K step depth it was timed with. */
export interface TileChoice {
  variant: VariantName;
  tileK: number;
}

/** Shape class (`shapeClass`) → the tuned choice. */
export type TileTable = Record<string, TileChoice>;

/** What the caller of `chooseTile` can run. */
export interface TileContext {
  /** The adapter runs shaders on CPU cores (lavapipe, SwiftShader). */
  software: boolean;
  /** The caller can record split-K's two dispatches and its scratch (the engine can; tfjs's kernels cannot). */
  splitK: boolean;
}

/** A matmul as recorded: what the autotuner times (see `collectMatmulUses`). */
export interface MatmulUse {
  shape: ProblemShape & { R?: number };
  layout: MatmulLayout;
  splitK: boolean;
}

let forced: VariantName | undefined;
let table: TileTable | undefined;
let collector: MatmulUse[] | undefined;
const refusedOnce = new Set<string>();

/** Forces a variant (tests, benchmarks); `undefined` restores the automatic choice. */
export function setLoraKernelVariant(variant: VariantName | undefined): void {
  forced = variant;
}

/** Makes `chooseTile` consult `tuned` (autotune.ts), or no table. */
export function installTileTable(tuned: TileTable | undefined): void {
  table = tuned && { ...tuned };
}

export function installedTileTable(): TileTable | undefined {
  return table;
}

/** Runs `record` and returns every matmul `chooseTile` was asked about meanwhile (a step graph's shapes). */
export function collectMatmulUses(record: () => void): MatmulUse[] {
  const uses: MatmulUse[] = [];
  collector = uses;
  try {
    record();
  } finally {
    collector = undefined;
  }
  return uses;
}

/** Dims bucketed to the power of two at or above them: the table's rows. */
function bucket(d: number): number {
  return Math.ceil(Math.log2(Math.max(1, d)));
}

/** The table key of a shape: operand layouts, W's format, vec4 loads, and the M, N, K buckets. */
export function shapeClass(shape: ProblemShape, layout: MatmulLayout): string {
  const { vec4X, vec4W } = vectorLoads(shape, layout);
  return [
    `${layout.xLayout}.${layout.wLayout}.${layout.wFormat}${layout.doubleQuant ? ".dq" : ""}`,
    `x${vec4X ? 4 : 1}w${vec4W ? 4 : 1}`,
    `m${bucket(shape.M)}n${bucket(shape.N)}k${bucket(shape.K)}`,
  ].join("|");
}

function vectorLoads(shape: ProblemShape, layout: MatmulLayout) {
  return {
    vec4X: layout.xLayout === "mk" ? shape.K % 4 === 0 : shape.M % 4 === 0,
    // A packed W takes its 4-element loaders under the same condition: 4 stored neighbours start at a multiple of 4.
    vec4W: layout.wLayout === "kn" ? shape.N % 4 === 0 : shape.K % 4 === 0,
  };
}

/** Bytes of workgroup memory a tile declares. */
export function workgroupBytes(tile: TileConfig): number {
  if (tile.kind === "direct") return 0;
  const [wx, wy] = tile.workgroup;
  return tile.stages * tile.tileK * tile.thread * (wx + wy) * 4;
}

/** Split-K's split count: enough workgroups to fill a large GPU, chunks of ≥ 32 rows of K, a bounded scratch. */
export function splitCount(shape: ProblemShape, tile: TileConfig): number {
  const [wx, wy] = tile.workgroup;
  const tiles =
    Math.ceil(shape.M / (tile.thread * wy)) *
    Math.ceil(shape.N / (tile.thread * wx));
  const most = Math.min(
    64,
    Math.max(2, Math.floor(shape.K / 32)),
    // The partials [S, M, N] stay under 32 MiB.
    Math.floor((8 << 20) / (shape.M * shape.N)),
  );
  const S = Math.min(most, Math.max(2, Math.ceil(512 / tiles)));
  return S < 2 ? 1 : Math.ceil(shape.K / splitChunk(shape.K, S));
}

/**
 * The tile of `variant` for this shape: workgroup geometry, the deepest K step (`tileK` if given, else 16, 8 or 4)
 * whose workgroup memory fits `workgroupStorage`, and the split count. Undefined if no K step fits.
 */
export function tileFor(
  variant: VariantName,
  shape: ProblemShape,
  layout: MatmulLayout,
  options: { splitK: boolean; workgroupStorage: number; tileK?: number },
): TileConfig | undefined {
  const base = variant.replace(/-splitk$/, "") as BaseVariant;
  const { N, M } = shape;
  const wide = base.startsWith("shared128");
  const thread = wide ? 8 : 4;
  let workgroup: [number, number] = [16, 16];
  if (base === "direct")
    workgroup = N <= 16 ? [4, 16] : M <= 16 ? [16, 4] : [8, 8];
  else if (N <= 16) workgroup = wide ? [2, 64] : [4, 64];
  else if (M <= 16) workgroup = wide ? [64, 2] : [64, 4];
  const tile: TileConfig = {
    kind: base === "direct" ? "direct" : "shared",
    workgroup,
    thread,
    tileK: 16,
    stages: base.endsWith("-double") ? 2 : 1,
    ...vectorLoads(shape, layout),
    splits: 1,
  };
  // A tuned depth is taken as timed: if the device refuses it now, compiling it says so (autotune.ts checks).
  if (options.tileK !== undefined) tile.tileK = options.tileK;
  else if (tile.kind === "shared") {
    const fits = [16, 8, 4].find(
      (tileK) => workgroupBytes({ ...tile, tileK }) <= options.workgroupStorage,
    );
    if (fits === undefined) return undefined;
    tile.tileK = fits;
  }
  if (variant.endsWith("-splitk") && options.splitK)
    tile.splits = splitCount(shape, tile);
  return tile;
}

/** The device's workgroup memory, as the running runtime reports it (WebGPU's default 16 KiB before it starts). */
function workgroupStorage(): number {
  return deviceLimit("maxComputeWorkgroupStorageSize") ?? 16384;
}

export function chooseTile(
  shape: ProblemShape & { R?: number },
  layout: MatmulLayout,
  context: TileContext,
): TileConfig {
  collector?.push({ shape: { ...shape }, layout, splitK: context.splitK });
  const fallback: VariantName = context.software ? "direct" : "shared";
  const tuned = forced ? undefined : table?.[shapeClass(shape, layout)];
  const variant = forced ?? tuned?.variant ?? fallback;
  const options = {
    splitK: context.splitK,
    workgroupStorage: workgroupStorage(),
    tileK: tuned?.tileK,
  };
  const tile = tileFor(variant, shape, layout, options);
  if (tile) return tile;
  if (!refusedOnce.has(variant)) {
    refusedOnce.add(variant);
    console.warn(
      `webtune: the matmul variant ${variant} needs more workgroup memory than this device's ` +
        `maxComputeWorkgroupStorageSize (${options.workgroupStorage} bytes); using ${fallback}.`,
    );
  }
  return tileFor(fallback, shape, layout, { ...options, tileK: undefined })!;
}
