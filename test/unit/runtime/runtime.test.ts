/**
 * The runtime on a real adapter (Dawn; Mesa lavapipe on CI): what it reports, what it refuses, and a lost device.
 */
import * as tf from "@tensorflow/tfjs";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  DeviceError,
  disposeRuntime,
  gpuDevice,
  gpuInfo,
  initRuntime,
  loraLinear,
} from "@webtune/core";
import { allowNoGpu } from "../../helpers/gpu.js";

afterEach(() => {
  disposeRuntime();
  vi.restoreAllMocks();
});

describe("runtime", () => {
  it("says to call initRuntime before it has started", () => {
    expect(() => gpuInfo()).toThrow(DeviceError);
    expect(() => gpuInfo()).toThrow(/call `await initRuntime\(\)` first/);
  });

  it("starts tfjs on its own WebGPU device and reports the adapter, features and limits", async (ctx) => {
    const info = await initRuntime().catch((e: unknown) =>
      allowNoGpu ? ctx.skip(String(e)) : Promise.reject(e),
    );
    expect(info.backend).toBe("webgpu");
    expect(tf.getBackend()).toBe("webgpu");
    expect(gpuInfo()).toEqual(info);
    expect(
      `${info.vendor}${info.architecture}${info.description}`.length,
    ).toBeGreaterThan(0);
    expect(info.limits["maxStorageBufferBindingSize"]).toBeGreaterThanOrEqual(
      128 * 1024 * 1024,
    );
    expect(
      info.limits["maxComputeInvocationsPerWorkgroup"],
    ).toBeGreaterThanOrEqual(256);
    // Each optional feature is granted exactly when the adapter offers it.
    const adapter = await navigator.gpu.requestAdapter();
    for (const feature of ["shader-f16", "subgroups", "timestamp-query"]) {
      expect(info.features.includes(feature), feature).toBe(
        adapter!.features.has(feature),
      );
    }
    expect(gpuDevice().features.has("shader-f16")).toBe(
      info.features.includes("shader-f16"),
    );
    // A second call returns the running runtime rather than a second device.
    expect(await initRuntime()).toBe(info);
  });

  it("refuses a required feature the adapter lacks, naming it", async (ctx) => {
    if (
      allowNoGpu &&
      !(await initRuntime().then(
        () => true,
        () => false,
      ))
    )
      ctx.skip("no WebGPU");
    disposeRuntime();
    const start = initRuntime({
      requiredFeatures: ["texture-compression-astc"],
    });
    await expect(start).rejects.toThrow(DeviceError);
    await expect(
      initRuntime({ requiredFeatures: ["texture-compression-astc"] }),
    ).rejects.toThrow(
      /lacks required feature\(s\) texture-compression-astc; it offers: .*shader-f16/,
    );
  });

  it("falls back to the CPU backend only when asked, and says it is slow", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    const info = await initRuntime({
      requiredFeatures: ["texture-compression-astc"],
      fallback: "cpu",
    });
    expect(info.backend).toBe("cpu");
    expect(tf.getBackend()).toBe("cpu");
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0]![0])).toMatch(
      /running on tfjs's CPU backend .* slow/,
    );
    // The op runs on the CPU references, with gradients.
    const x = tf.ones([2, 3]);
    const W = tf.ones([4, 3]) as tf.Tensor2D;
    const A = tf.ones([1, 3]) as tf.Tensor2D;
    const B = tf.ones([4, 1]) as tf.Tensor2D;
    const y = loraLinear(x, W, null, A, B, {
      scale: 0.5,
      weightLayout: "out_in",
    });
    // y = x·Wᵀ + 0.5·(x·Aᵀ)·Bᵀ = 3 + 0.5·3 = 4.5 everywhere.
    expect(Array.from(await y.data())).toEqual(new Array(8).fill(4.5));
    const dB = tf.grad((b: tf.Tensor) =>
      loraLinear(x, W, null, A, b as tf.Tensor2D, {
        scale: 0.5,
        weightLayout: "out_in",
      }).sum(),
    )(B);
    // dB[o, 0] = 0.5 · Σ_t h[t] = 0.5 · (3 + 3) = 3.
    expect(Array.from(await dB.data())).toEqual([3, 3, 3, 3]);
    tf.dispose([x, W, A, B, y, dB]);
  });

  it("turns a lost device into a DeviceError that says what to do, and can start again", async (ctx) => {
    const info = await initRuntime().catch((e: unknown) =>
      allowNoGpu ? ctx.skip(String(e)) : Promise.reject(e),
    );
    expect(info.backend).toBe("webgpu");
    const device = gpuDevice();
    // Destroying the device from outside webtune is a real loss, as a driver reset would be.
    device.destroy();
    await device.lost;
    const x = tf.ones([2, 3]);
    const W = tf.ones([4, 3]) as tf.Tensor2D;
    const A = tf.ones([1, 3]) as tf.Tensor2D;
    const B = tf.ones([4, 1]) as tf.Tensor2D;
    expect(() =>
      loraLinear(x, W, null, A, B, { scale: 1, weightLayout: "out_in" }),
    ).toThrow(DeviceError);
    expect(() => gpuInfo()).toThrow(
      /The GPU device was lost \(destroyed: .*\)\. .*call disposeRuntime\(\), then initRuntime\(\)/,
    );
    disposeRuntime();
    const again = await initRuntime();
    expect(again.backend).toBe("webgpu");
    expect(gpuDevice()).not.toBe(device);
  });
});
