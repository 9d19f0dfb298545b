/**
 * The matmul autotuner (engine/autotune.ts): with a deterministic fake timer it installs the fastest variant per
 * shape class and `chooseTile` then uses it; its cache round-trips through a file; a corrupt or unknown cache, and
 * a cached choice this device refuses to compile, are each ignored with one log line; real timing runs on this
 * device; software adapters keep the fixed choice unless tuning is asked for.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { disposeRuntime, gpuDevice } from "@webtune/core";
import {
  autotune,
  autotuneFor,
  shaderDigest,
} from "../../../packages/core/src/engine/autotune.js";
import {
  matmulCall,
  matmulCalls,
} from "../../../packages/core/src/kernels/lora_linear/program.js";
import {
  tuningFileName,
  tuningIdentity,
  writeTable,
} from "../../../packages/core/src/kernels/lora_linear/tuning_cache.js";
import {
  installedTileTable,
  installTileTable,
  shapeClass,
  type MatmulUse,
  type VariantName,
} from "../../../packages/core/src/kernels/lora_linear/variant.js";
import { WEBTUNE_VERSION } from "../../../packages/core/src/version.js";
import { PLAIN_MATMUL } from "../../../packages/core/src/kernels/lora_linear/shader.wgsl.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";

/** LoRA's dA at gpt2's c_attn input, rank 8 over 1024 tokens: skinny, with a long K. */
const skinny: MatmulUse = {
  shape: { M: 8, N: 768, K: 1024 },
  layout: { ...PLAIN_MATMUL, xLayout: "km", wLayout: "kn", accumulate: "step" },
  splitK: true,
};
/** A square projection. */
const square: MatmulUse = {
  shape: { M: 256, N: 256, K: 256 },
  layout: { ...PLAIN_MATMUL, xLayout: "mk", wLayout: "kn" },
  splitK: true,
};

/** A timer that makes `fastest` win for each use's shape, and counts its calls. */
function fakeTimer(fastest: Map<MatmulUse, VariantName>) {
  const calls: string[] = [];
  const time = async (use: MatmulUse, variant: VariantName) => {
    calls.push(`${use.shape.M}x${use.shape.N}x${use.shape.K} ${variant}`);
    return variant === fastest.get(use) ? 1 : 2 + variant.length / 100;
  };
  return { time, calls };
}

let dir = "";
beforeAll(async () => {
  await startGpu();
  dir = await mkdtemp(join(tmpdir(), "webtune-autotune-"));
});
afterEach(() => installTileTable(undefined));
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  disposeRuntime();
});

async function cacheFile(): Promise<string> {
  const device = gpuDevice();
  const identity = tuningIdentity(device.adapterInfo, shaderDigest());
  return join(dir, tuningFileName(identity));
}

describe("autotune", () => {
  it("installs the variant a deterministic timer finds fastest, per shape class, and chooseTile uses it", async (ctx) => {
    await needGpu(ctx);
    const { time, calls } = fakeTimer(
      new Map([
        [skinny, "shared-splitk"],
        [square, "shared128-double"],
      ]),
    );
    const table = await autotune(gpuDevice(), [skinny, square, skinny], {
      cache: false,
      time,
    });
    expect(table).toEqual({
      [shapeClass(skinny.shape, skinny.layout)]: {
        variant: "shared-splitk",
        tileK: 16,
      },
      [shapeClass(square.shape, square.layout)]: {
        variant: "shared128-double",
        tileK: 16,
      },
    });
    // Each class once, every variant that fits (lavapipe has 32 KiB of workgroup memory: all of them do).
    expect(calls.filter((c) => c.startsWith("8x768")).length).toBe(10);
    const split = matmulCalls(skinny.shape, skinny.layout, false);
    expect(split.calls.length).toBe(2);
    expect(split.tile.splits).toBeGreaterThan(1);
    // One program where the caller cannot split (tfjs's kernels): the same variant, unsplit.
    const single = matmulCall(skinny.shape, skinny.layout, false).program.key;
    expect(single).toContain("_shared_");
    expect(single).not.toContain("splitk");
    const big = matmulCalls(square.shape, square.layout, false);
    expect(big.tile).toMatchObject({ thread: 8, stages: 2, splits: 1 });
  });

  it("round-trips its cache: the second start reads the file and times nothing", async (ctx) => {
    await needGpu(ctx);
    const first = fakeTimer(new Map([[square, "shared-double"]]));
    const lines: string[] = [];
    const log = (line: string) => lines.push(line);
    const tuned = await autotune(gpuDevice(), [square], {
      cache: dir,
      time: first.time,
      log,
    });
    const doc = JSON.parse(await readFile(await cacheFile(), "utf8"));
    expect(doc.identity.version).toBe(WEBTUNE_VERSION);
    expect(doc.identity.shaders).toBe(shaderDigest());
    expect(doc.table).toEqual(tuned);
    installTileTable(undefined);
    const second = fakeTimer(new Map());
    const again = await autotune(gpuDevice(), [square], {
      cache: dir,
      time: second.time,
      log,
    });
    expect(second.calls).toEqual([]);
    expect(again).toEqual(tuned);
    expect(installedTileTable()).toEqual(tuned);
    expect(lines.filter((l) => /ignoring|refused/.test(l))).toEqual([]);
  });

  it("ignores a corrupt cache with one log line, then replaces it", async (ctx) => {
    await needGpu(ctx);
    await writeFile(await cacheFile(), "{ not json");
    const lines: string[] = [];
    const { time } = fakeTimer(new Map([[square, "shared"]]));
    const table = await autotune(gpuDevice(), [square], {
      cache: dir,
      time,
      log: (line) => lines.push(line),
    });
    const ignored = lines.filter((l) => l.includes("ignoring"));
    expect(ignored.length).toBe(1);
    expect(ignored[0]).toMatch(/is not JSON/);
    const doc = JSON.parse(await readFile(await cacheFile(), "utf8"));
    expect(doc.table).toEqual(table);
  });

  it("ignores a cache naming an unknown variant with one log line", async (ctx) => {
    await needGpu(ctx);
    const identity = tuningIdentity(gpuDevice().adapterInfo, shaderDigest());
    const key = shapeClass(square.shape, square.layout);
    const doc = JSON.parse(writeTable(identity, {}));
    doc.table[key] = { variant: "shared256", tileK: 16 };
    await writeFile(await cacheFile(), JSON.stringify(doc));
    const lines: string[] = [];
    const table = await autotune(gpuDevice(), [square], {
      cache: dir,
      mode: "cached",
      log: (line) => lines.push(line),
    });
    expect(lines.length).toBe(1);
    expect(lines[0]).toMatch(/ignoring .* unknown choice .*shared256/);
    expect(table).toEqual({});
  });

  it("falls back to the default, with one log line, when the device refuses a cached choice", async (ctx) => {
    const info = await needGpu(ctx);
    const identity = tuningIdentity(gpuDevice().adapterInfo, shaderDigest());
    const key = shapeClass(square.shape, square.layout);
    // 2 buffers × 32 × (128 + 128) × 4 bytes = 64 KiB of workgroup memory: over lavapipe's 32 KiB.
    const tileK = 32;
    expect(2 * tileK * 256 * 4).toBeGreaterThan(
      info.limits["maxComputeWorkgroupStorageSize"]!,
    );
    await writeFile(
      await cacheFile(),
      writeTable(identity, { [key]: { variant: "shared128-double", tileK } }),
    );
    const lines: string[] = [];
    const table = await autotune(gpuDevice(), [square], {
      cache: dir,
      mode: "cached",
      log: (line) => lines.push(line),
    });
    expect(lines.length).toBe(1);
    expect(lines[0]).toMatch(/shared128-double \(tileK 32\) .* was refused/);
    expect(table).toEqual({});
    expect(matmulCalls(square.shape, square.layout, false).tile).toMatchObject({
      kind: "shared",
      thread: 4,
      stages: 1,
    });
  });

  it("times real candidates on this device", async (ctx) => {
    await needGpu(ctx);
    const use: MatmulUse = { ...skinny, shape: { M: 8, N: 64, K: 256 } };
    const table = await autotune(gpuDevice(), [use], {
      cache: false,
      repetitions: 1,
      variants: ["direct", "direct-splitk", "shared"],
    });
    const choice = table[shapeClass(use.shape, use.layout)];
    expect(["direct", "direct-splitk", "shared"]).toContain(choice?.variant);
  });

  it("leaves software adapters on the fixed choice unless tuning is asked for", async (ctx) => {
    await needGpu(ctx);
    let recorded = 0;
    const uses = () => {
      recorded++;
      return [square];
    };
    installTileTable({ stale: { variant: "shared", tileK: 16 } });
    await autotuneFor(gpuDevice(), uses, undefined, true);
    expect(recorded).toBe(0);
    expect(installedTileTable()).toBeUndefined();
  });

  it("keeps WEBTUNE_VERSION equal to the package's version", async () => {
    const pkg = JSON.parse(
      await readFile(
        new URL("../../../packages/core/package.json", import.meta.url),
        "utf8",
      ),
    );
    expect(WEBTUNE_VERSION).toBe(pkg.version);
  });
});
