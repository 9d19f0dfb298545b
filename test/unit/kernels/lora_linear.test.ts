/**
 * The fused LoRA linear kernels on WebGPU (Dawn; Mesa lavapipe on CI) against their CPU references.
 * Tolerance: every element of y, dx, dA and dB within 1e-4 relative (see expectClose) in f32.
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  disposeRuntime,
  setLoraKernelVariant,
  type KernelKind,
  type VariantName,
} from "@webtune/core";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import {
  expectCaseMatchesReference,
  runCase,
  type LoraCase,
} from "./lora_case.js";

beforeAll(async () => {
  await startGpu();
});
afterEach(() => setLoraKernelVariant(undefined));
afterAll(() => disposeRuntime());

const layouts = ["in_out", "out_in"] as const;
const variants: KernelKind[] = ["shared", "direct"];

// Shapes chosen to miss every tile edge: 4-wide register blocks, 16/64-wide tiles, vec4 loads.
const oddCases: Omit<LoraCase, "weightLayout">[] = [
  { T: 1, IN: 5, OUT: 3, R: 1 },
  { T: 7, IN: 13, OUT: 9, R: 3, bias: true },
  { T: 65, IN: 67, OUT: 130, R: 5, bias: true },
  { T: 33, IN: 64, OUT: 48, R: 8, lead: [3, 11] },
  { T: 17, IN: 36, OUT: 20, R: 64 },
];

describe.each(variants)("loraLinear, %s kernels", (variant) => {
  for (const weightLayout of layouts) {
    for (const c of oddCases) {
      it(`matches the reference: T=${c.T} in=${c.IN} out=${c.OUT} r=${c.R} ${weightLayout}${c.bias ? " +bias" : ""}`, async (ctx) => {
        await needGpu(ctx);
        setLoraKernelVariant(variant);
        await expectCaseMatchesReference({ ...c, weightLayout });
      });
    }
    it(`applies one seeded dropout mask in forward and backward (${weightLayout})`, async (ctx) => {
      await needGpu(ctx);
      setLoraKernelVariant(variant);
      await expectCaseMatchesReference({
        T: 19,
        IN: 40,
        OUT: 24,
        R: 4,
        weightLayout,
        dropout: 0.3,
        seed: 12345,
        bias: true,
      });
    });
  }
});

// The big-GPU tiles through tfjs's kernels (forward, h, g, dx, dA, dB): 8×8 per invocation and double buffering.
// A split-K variant runs there without the split (tfjs records one program per kernel); the engine's two-pass
// path is matmul_variants.test.ts.
const bigTiles: VariantName[] = [
  "shared-double",
  "shared128",
  "shared128-double",
  "shared128-double-splitk",
];
describe.each(bigTiles)("loraLinear, %s kernels", (variant) => {
  for (const weightLayout of layouts) {
    for (const c of [oddCases[2]!, oddCases[4]!])
      it(`matches the reference: T=${c.T} in=${c.IN} out=${c.OUT} r=${c.R} ${weightLayout}${c.bias ? " +bias" : ""}`, async (ctx) => {
        await needGpu(ctx);
        setLoraKernelVariant(variant);
        await expectCaseMatchesReference({ ...c, weightLayout });
      });
  }
  it("applies one seeded dropout mask in forward and backward (out_in)", async (ctx) => {
    await needGpu(ctx);
    setLoraKernelVariant(variant);
    await expectCaseMatchesReference({
      T: 19,
      IN: 40,
      OUT: 24,
      R: 4,
      weightLayout: "out_in",
      dropout: 0.3,
      seed: 12345,
      bias: true,
    });
  });
});

describe("loraLinear at the size limits", () => {
  it("handles in = 8192 and out = 8192 (with W within the binding limit)", async (ctx) => {
    await needGpu(ctx);
    await expectCaseMatchesReference({
      T: 3,
      IN: 8192,
      OUT: 1024,
      R: 4,
      weightLayout: "out_in",
    });
    await expectCaseMatchesReference({
      T: 2,
      IN: 1024,
      OUT: 8192,
      R: 4,
      weightLayout: "in_out",
      bias: true,
    });
  });
  it("runs an 8192 x 8192 weight where the device can bind it, and otherwise says why before any GPU work", async (ctx) => {
    const info = await needGpu(ctx);
    const c = {
      T: 1,
      IN: 8192,
      OUT: 8192,
      R: 2,
      weightLayout: "out_in",
    } as const;
    if (info.limits["maxStorageBufferBindingSize"]! >= 8192 * 8192 * 4) {
      await expectCaseMatchesReference(c);
    } else {
      const before = tf.memory().numTensors;
      await expect(runCase(c)).rejects.toThrow(
        /W \[8192, 8192\] takes 268435456 bytes, over this device's maxStorageBufferBindingSize/,
      );
      expect(tf.memory().numTensors).toBe(before);
    }
  });
  it("handles 4096 tokens", async (ctx) => {
    await needGpu(ctx);
    await expectCaseMatchesReference({
      T: 4096,
      IN: 64,
      OUT: 96,
      R: 16,
      weightLayout: "in_out",
      bias: true,
    });
  });
  it("handles a wide Conv1D projection (GPT-2 c_attn shape, short sequence)", async (ctx) => {
    await needGpu(ctx);
    await expectCaseMatchesReference({
      T: 8,
      IN: 768,
      OUT: 2304,
      R: 8,
      weightLayout: "in_out",
      bias: true,
      dropout: 0.1,
    });
  });
});

describe("loraLinear dropout", () => {
  it("drops about p of the inputs, and a different seed drops others", async (ctx) => {
    await needGpu(ctx);
    // With A = 1 and B = 1 (r = 1, scale 1, W = 0), y[t] = Σ_i drop(x)[t, i]: count kept inputs per row.
    const T = 64;
    const IN = 256;
    const x = tf.ones([T, IN]);
    const W = tf.zeros([1, IN]) as tf.Tensor2D;
    const A = tf.ones([1, IN]) as tf.Tensor2D;
    const B = tf.ones([1, 1]) as tf.Tensor2D;
    const run = async (seed: number) => {
      const { loraLinear } = await import("@webtune/core");
      const y = loraLinear(x, W, null, A, B, {
        scale: 1,
        weightLayout: "out_in",
        dropout: 0.25,
        seed,
      });
      const v = (await y.data()) as Float32Array;
      y.dispose();
      return v;
    };
    const a = await run(1);
    const b = await run(2);
    // Kept inputs are scaled by 1/(1-p), so y/(1/(1-p)) counts them.
    const keptA = a.reduce((s, v) => s + v * 0.75, 0) / (T * IN);
    expect(keptA).toBeGreaterThan(0.73);
    expect(keptA).toBeLessThan(0.77);
    let differing = 0;
    for (let t = 0; t < T; t++) if (Math.abs(a[t]! - b[t]!) > 1e-3) differing++;
    expect(differing).toBeGreaterThan(T / 2);
    tf.dispose([x, W, A, B]);
  });
});
