/**
 * The matmul autotuner: which tiled-matmul variant (kernels/lora_linear/variant.ts) is fastest on this GPU for the
 * shapes a model actually runs. Each shape class (operand layouts and W's format, vec4 loads, M/N/K buckets) not
 * in the cache has every variant that fits the device timed once on its first shape (`matmul_timing.ts`), and the
 * fastest goes in the table `chooseTile` consults. The table is cached per adapter, webtune version and shader
 * source (tuning_cache.ts), so a later start only reads it.
 *
 * Nothing here falls back silently: a cache that cannot be used, a cached choice this device now refuses to
 * compile, and a candidate refused while timing each cost one log line, and the choice falls back to the default.
 *
 * @example
 * ```ts
 * await session.autotune(batch);           // a TrainingSession: the step's own matmuls
 * await autotune(device, uses);            // any matmuls, e.g. from collectMatmulUses(() => record(...))
 * ```
 */
import { keyDigest } from "../hash.js";
import { gpuInfo } from "../runtime/runtime.js";
import {
  partialLayout,
  splitSumProgram,
} from "../kernels/lora_linear/split_k.js";
import {
  matmulDispatches,
  matmulProgram,
  type MatmulDispatches,
} from "../kernels/lora_linear/program.js";
import type { MatmulLayout } from "../kernels/lora_linear/shader.wgsl.js";
import {
  openTuningStore,
  readTable,
  tuningIdentity,
  writeTable,
  type TuningStore,
} from "../kernels/lora_linear/tuning_cache.js";
import {
  installTileTable,
  shapeClass,
  tileFor,
  VARIANT_NAMES,
  type MatmulUse,
  type TileChoice,
  type TileTable,
  type VariantName,
} from "../kernels/lora_linear/variant.js";
import { timeMatmul } from "./matmul_timing.js";
import { compileProgram } from "./pipelines.js";

/** true: the cached choices, and every shape class the cache lacks timed and stored; "cached": the cache alone. */
export type AutotuneMode = true | "cached";

export interface AutotuneOptions {
  /** Default true. */
  mode?: AutotuneMode;
  /** A folder (Node) or a store for the cache; default ~/.cache/webtune/tuning in Node, OPFS in browsers; false: none. */
  cache?: string | false | TuningStore;
  /** Timed passes per candidate; the median counts. Default 5. */
  repetitions?: number;
  /** Times one candidate in ms; default on the device (`timeMatmul`). Tests give a deterministic one. */
  time?: (
    use: MatmulUse,
    variant: VariantName,
    m: MatmulDispatches,
  ) => Promise<number>;
  /** The variants to try; default all of them (those that do not fit the device are skipped). */
  variants?: readonly VariantName[];
  /** Where the autotuner's lines go; default console.warn. */
  log?: (line: string) => void;
  /** Called with each timed candidate (benchmarks report them all). */
  onTimed?: (use: MatmulUse, variant: VariantName, ms: number) => void;
  /** Install the choices for `chooseTile`. Default true; a benchmark that only measures passes false. */
  install?: boolean;
}

/** The layouts whose source the cache's shader digest covers: every loader, epilogue and loop. */
const DIGEST_LAYOUTS: MatmulLayout[] = [
  {
    xLayout: "mk",
    wLayout: "kn",
    dropout: "x",
    lowRank: "nr",
    lowRankMask: false,
    bias: true,
    wFormat: "float32",
    doubleQuant: false,
    residual: true,
  },
  {
    xLayout: "km",
    wLayout: "nk",
    dropout: "w",
    lowRank: "rn",
    lowRankMask: true,
    bias: false,
    wFormat: "nf4",
    doubleQuant: true,
    accumulate: "step",
  },
];

let digest: string | undefined;

/** A digest of every variant's WGSL (both passes of split-K), so that a kernel change reads another cache. */
export function shaderDigest(): string {
  if (digest) return digest;
  const sources: string[] = [];
  for (const layout of DIGEST_LAYOUTS)
    for (const vec4 of [false, true])
      for (const variant of VARIANT_NAMES) {
        const K = vec4 ? 1024 : 1023;
        const tile = tileFor(variant, { M: 256, N: 256, K }, layout, {
          splitK: true,
          workgroupStorage: 1 << 20,
        })!;
        const split = tile.splits > 1;
        sources.push(
          matmulProgram(split ? partialLayout(layout) : layout, tile).body,
        );
        if (split) sources.push(splitSumProgram(layout, []).body);
      }
  return (digest = keyDigest(sources.join("\n")));
}

/** The adapter's description: the device's own where it has one, else the runtime's. */
function adapterInfo(device: GPUDevice) {
  return (device as { adapterInfo?: GPUAdapterInfo }).adapterInfo ?? gpuInfo();
}

/** The first use of each shape class, in order. */
function byClass(uses: MatmulUse[]): Map<string, MatmulUse> {
  const classes = new Map<string, MatmulUse>();
  for (const use of uses) {
    const key = shapeClass(use.shape, use.layout);
    if (!classes.has(key)) classes.set(key, use);
  }
  return classes;
}

/** A use's dispatches under `variant` (with a tuned `tileK`), or undefined when it does not fit or does not differ. */
function dispatchesOf(
  device: GPUDevice,
  use: MatmulUse,
  variant: VariantName,
  tileK?: number,
) {
  const tile = tileFor(variant, use.shape, use.layout, {
    splitK: use.splitK,
    workgroupStorage: device.limits.maxComputeWorkgroupStorageSize,
    tileK,
  });
  // A split that does not split (small K, or a caller without two passes) is its base variant again.
  if (
    !tile ||
    (variant.endsWith("-splitk") && tile.splits === 1 && tileK === undefined)
  )
    return undefined;
  return matmulDispatches(use.shape, use.layout, tile);
}

/** Whether the device compiles a cached choice for this use; one log line if not. */
async function compiles(
  device: GPUDevice,
  use: MatmulUse,
  key: string,
  choice: TileChoice,
  log: (line: string) => void,
) {
  const m = dispatchesOf(device, use, choice.variant, choice.tileK);
  const error = m
    ? await Promise.all(
        m.calls.map((c) => compileProgram(device, c.program).checked),
      ).then(
        () => undefined,
        (e: unknown) => (e instanceof Error ? e.message : String(e)),
      )
    : "it does not fit this device's workgroup memory";
  if (error === undefined) return true;
  log(
    `webtune: the cached matmul choice ${choice.variant} (tileK ${choice.tileK}) for ${key} was refused: ${error}; using the default for it.`,
  );
  return false;
}

/** Times every candidate of one use; the fastest, or undefined when none ran. */
async function tuneOne(
  device: GPUDevice,
  use: MatmulUse,
  o: AutotuneOptions,
  log: (line: string) => void,
) {
  const time =
    o.time ??
    ((u, _v, m) =>
      timeMatmul(device, u, m, { repetitions: o.repetitions ?? 5 }));
  let best: (TileChoice & { ms: number }) | undefined;
  for (const variant of o.variants ?? VARIANT_NAMES) {
    const m = dispatchesOf(device, use, variant);
    if (!m) continue;
    const ms = await time(use, variant, m).catch((error: unknown) => {
      log(
        `webtune: autotune skipped the matmul variant ${variant}: ${error instanceof Error ? error.message : String(error)}`,
      );
      return undefined;
    });
    if (ms !== undefined) o.onTimed?.(use, variant, ms);
    if (ms !== undefined && (!best || ms < best.ms))
      best = { variant, tileK: m.tile.tileK, ms };
  }
  return best && { variant: best.variant, tileK: best.tileK };
}

/**
 * Chooses a variant per shape class of `uses` on `device`, installs the choices for `chooseTile`, and returns
 * them. See the file comment for what is cached and what is logged.
 */
export async function autotune(
  device: GPUDevice,
  uses: MatmulUse[],
  options: AutotuneOptions = {},
): Promise<TileTable> {
  const log = options.log ?? ((line: string) => console.warn(line));
  const identity = tuningIdentity(adapterInfo(device), shaderDigest());
  const store = await openTuningStore(options.cache, identity, log);
  let cached: TileTable = {};
  const text = await store?.read();
  if (text !== undefined) {
    const read = readTable(text, identity);
    if ("table" in read) cached = read.table;
    else
      log(
        `webtune: ignoring the matmul tuning cache ${store!.location}: ${read.reason}.`,
      );
  }
  const table: TileTable = {};
  let tuned = 0;
  const started = performance.now();
  for (const [key, use] of byClass(uses)) {
    const hit = cached[key];
    if (hit && (await compiles(device, use, key, hit, log))) {
      table[key] = hit;
      continue;
    }
    if (options.mode === "cached") continue;
    const best = await tuneOne(device, use, options, log);
    if (best) {
      table[key] = cached[key] = best;
      tuned++;
    }
  }
  if (tuned > 0) {
    log(
      `webtune: autotuned ${tuned} matmul shape(s) in ${((performance.now() - started) / 1000).toFixed(1)} s${store ? `; cached in ${store.location}` : ""}.`,
    );
    await store?.write(writeTable(identity, cached));
  }
  if (options.install !== false) installTileTable(table);
  return table;
}

/** What sessions and the Trainer take: off, a mode, or the options themselves (a cache folder, the variants). */
export type AutotuneOption = boolean | AutotuneMode | AutotuneOptions;

/**
 * A session's `autotune` option: undefined tunes on hardware adapters and keeps today's fixed choice on software
 * ones (lavapipe, SwiftShader); false keeps the fixed choice; true, "cached" or options as `autotune` takes them.
 */
export async function autotuneFor(
  device: GPUDevice,
  uses: () => MatmulUse[],
  option: AutotuneOption | undefined,
  software: boolean,
): Promise<void> {
  const chosen = option ?? !software;
  if (chosen === false) {
    installTileTable(undefined);
    return;
  }
  await autotune(
    device,
    uses(),
    typeof chosen === "object" ? chosen : { mode: chosen },
  );
}
