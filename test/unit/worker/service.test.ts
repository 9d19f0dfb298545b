/**
 * The worker's service, in-thread on Dawn, and the shape of its comlink proxy.
 */
import type { Remote } from "comlink";
import { afterAll, describe, expect, expectTypeOf, it } from "vitest";
import { DeviceError, type GpuInfo, type LoraCheckResult } from "@webtune/core";
import type { TrainerApi, WorkerTrainer } from "@webtune/worker";
import { TrainerService } from "../../../packages/worker/src/service.js";
import { allowNoGpu } from "../../helpers/gpu.js";

const service = new TrainerService();
afterAll(() => service.dispose());

describe("TrainerService", () => {
  it("starts the GPU, verifies the kernels, and releases the device on dispose", async (ctx) => {
    const info = await service
      .init()
      .catch((e: unknown) =>
        allowNoGpu ? ctx.skip(String(e)) : Promise.reject(e),
      );
    expect(info.backend).toBe("webgpu");
    expect(await service.gpuInfo()).toEqual(info);
    const results = await service.verifyKernels();
    expect(results.length).toBeGreaterThanOrEqual(2);
    for (const r of results) {
      for (const [name, err] of Object.entries(r.errors))
        expect(err, name).toBeLessThanOrEqual(1e-4);
    }
    await service.dispose();
    await expect(service.gpuInfo()).rejects.toThrow(DeviceError);
    // And it can start again.
    expect((await service.init()).backend).toBe("webgpu");
  });

  it("is what the main thread sees through comlink, with every method async", () => {
    expectTypeOf<WorkerTrainer["api"]>().toEqualTypeOf<Remote<TrainerApi>>();
    expectTypeOf<
      Remote<TrainerApi>["init"]
    >().returns.resolves.toEqualTypeOf<GpuInfo>();
    expectTypeOf<
      Remote<TrainerApi>["verifyKernels"]
    >().returns.resolves.toEqualTypeOf<LoraCheckResult[]>();
    expectTypeOf(service).toMatchTypeOf<TrainerApi>();
  });
});
