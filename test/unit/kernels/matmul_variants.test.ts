/**
 * Every variant of the tiled matmul (variant.ts: direct, shared, shared-double, shared128, shared128-double, each
 * with and without split-K) as the compiled step records it (`matmulCalls` + `recordMatmul`), forced with
 * setLoraKernelVariant, against the configured matmul's CPU reference (`matmulReference`). The cases cover the
 * operand layouts, vec4 and scalar loads, sizes that miss every tile edge, packed W formats, dropout on either
 * operand and on the low-rank term, bias, residual, and accumulation (always, and per step on both micro-batches).
 * Tolerance: every element within 1e-4 relative (expectClose) in f32.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  disposeRuntime,
  encodeMatrix,
  setLoraKernelVariant,
} from "@webtune/core";
import {
  dropThreshold,
  lowbias32,
} from "../../../packages/core/src/kernels/lora_linear/dropout.js";
import {
  matmulCalls,
  recordMatmul,
  type MatmulScalars,
} from "../../../packages/core/src/kernels/lora_linear/program.js";
import { matmulReference } from "../../../packages/core/src/kernels/lora_linear/reference.js";
import {
  PLAIN_MATMUL,
  type MatmulLayout,
} from "../../../packages/core/src/kernels/lora_linear/shader.wgsl.js";
import {
  VARIANT_NAMES,
  type VariantName,
} from "../../../packages/core/src/kernels/lora_linear/variant.js";
import type { PackedFormat } from "../../../packages/core/src/kernels/quant/packed.js";
import { decodeMatrix } from "../../../packages/core/src/kernels/quant/codec.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { expectClose, seededValues } from "../../helpers/tensors.js";
import { ProgramCase } from "./program_case.js";

const RTOL = 1e-4;

beforeAll(async () => {
  await startGpu();
});
afterEach(() => setLoraKernelVariant(undefined));
afterAll(() => disposeRuntime());

interface Case {
  name: string;
  M: number;
  N: number;
  K: number;
  R?: number;
  layout: MatmulLayout;
  scalars?: MatmulScalars;
  packed?: { format: PackedFormat; doubleQuant: boolean };
  /** The step parameters' accumulate flag (a later micro-batch). */
  accumulateStep?: boolean;
}

// Five cases, each combining several features, keep the compiles (slow on lavapipe) per variant few.
const cases: Case[] = [
  {
    name: "forward: no vec4, dropout on X, bias, low-rank [N, R], residual",
    ...{ M: 37, N: 70, K: 45, R: 3 },
    layout: {
      ...PLAIN_MATMUL,
      xLayout: "mk",
      wLayout: "kn",
      dropout: "x",
      lowRank: "nr",
      bias: true,
      residual: true,
    },
    scalars: { loraScale: 1.5, dropout: 0.1, seedSalt: 3 },
  },
  {
    name: "dx: NF4 + double-quant W [N, K], vec4, masked low-rank [R, N], accumulate always",
    ...{ M: 33, N: 68, K: 132, R: 5 },
    layout: {
      ...PLAIN_MATMUL,
      xLayout: "mk",
      wLayout: "nk",
      lowRank: "rn",
      lowRankMask: true,
      accumulate: "always",
    },
    scalars: { loraScale: 0.7, dropout: 0.3, seedSalt: 99 },
    packed: { format: "nf4", doubleQuant: true },
  },
  {
    name: "dA: X [K, M], rank rows, dropout on W's loads, accumulate on a later micro-batch",
    ...{ M: 8, N: 100, K: 300 },
    layout: {
      ...PLAIN_MATMUL,
      xLayout: "km",
      wLayout: "kn",
      dropout: "w",
      accumulate: "step",
    },
    scalars: { outScale: 1.25, dropout: 0.2, seedSalt: 7 },
    accumulateStep: true,
  },
  {
    name: "dB: rank columns, odd K, int8 W, first micro-batch (overwrites)",
    ...{ M: 130, N: 6, K: 257 },
    layout: {
      ...PLAIN_MATMUL,
      xLayout: "km",
      wLayout: "kn",
      accumulate: "step",
    },
    scalars: { outScale: 2 },
    packed: { format: "int8", doubleQuant: false },
  },
  {
    name: "tiny, f16 W",
    ...{ M: 1, N: 3, K: 5 },
    layout: { ...PLAIN_MATMUL, xLayout: "mk", wLayout: "kn" },
    packed: { format: "float16", doubleQuant: false },
  },
];

const DROPOUT_SEED = 1234;

/** Runs one case under the forced variant; returns the GPU result, the reference and the dispatches recorded. */
async function runCase(c: Case) {
  const { M, N, K } = c;
  const R = c.R ?? 0;
  const { layout } = c;
  const X = seededValues(M * K, 11);
  const wShape: [number, number] = layout.wLayout === "kn" ? [K, N] : [N, K];
  const wValues = seededValues(K * N, 12);
  const host = c.packed
    ? encodeMatrix(wValues, wShape, c.packed.format, {
        doubleQuant: c.packed.doubleQuant,
      })
    : undefined;
  const W = host ? decodeMatrix(host) : wValues;
  const H = seededValues(M * R, 13);
  const U = seededValues(R * N, 14);
  const bias = seededValues(N, 15);
  const residual = seededValues(M * N, 16);
  const initial = seededValues(M * N, 17);
  const scales = host?.scales;
  const fullLayout: MatmulLayout = {
    ...layout,
    ...(c.packed
      ? { wFormat: c.packed.format, doubleQuant: c.packed.doubleQuant }
      : {}),
  };
  const scalars: MatmulScalars = {
    ...c.scalars,
    wOffset: scales?.kind === "double" ? scales.offset : 0,
  };

  const p = new ProgramCase();
  const accumulates = (layout.accumulate ?? "none") !== "none";
  const out = p.output("out", M * N, accumulates ? initial : undefined);
  const bindings = [
    out,
    p.input("X", X),
    p.input("W", host ? host.data : W),
    ...(layout.lowRank !== "none" ? [p.input("H", H), p.input("U", U)] : []),
    ...(layout.bias ? [p.input("bias", bias)] : []),
    ...(layout.residual ? [p.input("residual", residual)] : []),
    ...(scales?.kind === "absmax" ? [p.input("absmax", scales.absmax)] : []),
    ...(scales?.kind === "double"
      ? [p.input("codes", scales.codes), p.input("super", scales.superScale)]
      : []),
  ];
  const m = matmulCalls({ M, N, K, R }, fullLayout, false, scalars);
  recordMatmul(
    m,
    bindings,
    (elements) => p.g.activation("partials", [elements]),
    (call, b, pass) => p.dispatch(`matmul pass ${pass}`, call, b),
  );
  const [got] = await p.run({
    dropoutSeed: DROPOUT_SEED,
    accumulate: c.accumulateStep ?? false,
    lossScale: 1,
    maxGradNorm: 0,
    adam: [],
  });
  const seedHash = lowbias32(
    lowbias32((DROPOUT_SEED ^ (scalars.seedSalt ?? 0)) >>> 0),
  );
  const adds =
    layout.accumulate === "always" ||
    (layout.accumulate === "step" && c.accumulateStep === true);
  const want = matmulReference(
    { ...layout, accumulate: adds ? "always" : "none" },
    { M, N, K, R },
    { X, W, H, U, bias, residual, initial },
    {
      outScale: scalars.outScale,
      loraScale: scalars.loraScale,
      seedHash,
      threshold: dropThreshold(scalars.dropout ?? 0),
    },
  );
  return { got: got!, want, dispatches: m.calls.length, tile: m.tile };
}

describe.each(VARIANT_NAMES)("tiled matmul, %s variant", (variant) => {
  for (const c of cases)
    it(`matches the reference: ${c.name} (M ${c.M}, N ${c.N}, K ${c.K})`, async (ctx) => {
      await needGpu(ctx);
      setLoraKernelVariant(variant);
      const { got, want, dispatches, tile } = await runCase(c);
      // Split-K splits every K of these cases (K ≥ 5), and only split-K does.
      expect(dispatches).toBe(variant.endsWith("-splitk") ? 2 : 1);
      expect(tile.kind).toBe(
        variant.startsWith("direct") ? "direct" : "shared",
      );
      expectClose(got, want, RTOL, `${variant} ${c.name}`);
    });
});

describe("the variants' tiles", () => {
  it("name every choice in the shader key, and fit the device's workgroup memory", async (ctx) => {
    const info = await needGpu(ctx);
    const keys = new Set<string>();
    const layout = { ...PLAIN_MATMUL, xLayout: "mk", wLayout: "kn" } as const;
    for (const variant of VARIANT_NAMES) {
      setLoraKernelVariant(variant as VariantName);
      const m = matmulCalls({ M: 512, N: 512, K: 512 }, layout, false);
      const key = m.calls.map((call) => call.program.key).join("+");
      expect(keys.has(key), `${variant}: ${key}`).toBe(false);
      keys.add(key);
      const { workgroup, thread, tileK, stages } = m.tile;
      const bytes = stages * tileK * thread * (workgroup[0] + workgroup[1]) * 4;
      if (m.tile.kind === "shared")
        expect(bytes).toBeLessThanOrEqual(
          info.limits["maxComputeWorkgroupStorageSize"]!,
        );
    }
  });
});
