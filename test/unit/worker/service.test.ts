/**
 * The worker's service, in-thread on Dawn, and the shape of its comlink proxy.
 */
import type { Remote } from "comlink";
import { afterAll, describe, expect, expectTypeOf, it } from "vitest";
import { DeviceError, type GpuInfo, type LoraCheckResult } from "@webtune/core";
import type { TrainerApi, WorkerTrainer } from "@webtune/worker";
import { TrainerService } from "../../../packages/worker/src/service.js";
import { allowNoGpu } from "../../helpers/gpu.js";
import { GOLDEN_DIR, readConfig, readGolden } from "../../helpers/golden.js";
import { checkpointShapes } from "../../helpers/random_weights.js";

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

  it("loads a model, computes its loss, and says when no model is loaded", async (ctx) => {
    await service
      .init()
      .catch((e: unknown) =>
        allowNoGpu ? ctx.skip(String(e)) : Promise.reject(e),
      );
    await expect(service.loss([[1, 2]])).rejects.toThrow(
      /No model is loaded in the worker: call loadModel/,
    );
    const dir = `${GOLDEN_DIR}tiny/llama_tied`;
    const info = await service.loadModel(dir, { cache: false });
    expect(info.dims.modelType).toBe("llama");
    expect(info.hasTokenizer).toBe(false);
    const golden = readGolden(dir);
    const loss = await service.loss(golden.input_ids);
    expect(Math.abs(loss - golden.loss) / golden.loss).toBeLessThan(1e-5);
    // A tied model counts its embedding once, like the checkpoint (which has no lm_head.weight).
    const shapes = Object.values(checkpointShapes(readConfig(dir)));
    expect(info.parameters).toBe(
      shapes.reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0),
    );
    const result = await service.generate(golden.input_ids[0]!, {
      maxNewTokens: 3,
      eosTokenIds: [],
    });
    expect(result.ids).toHaveLength(3);
    expect(info.weightFormat).toBe("float32");
    expect(info.weightBytes).toBe(4 * info.parameters);
  });

  it("loads the base compact when asked: NF4 projections and f16 embeddings, close to the f32 loss", async (ctx) => {
    await service
      .init()
      .catch((e: unknown) =>
        allowNoGpu ? ctx.skip(String(e)) : Promise.reject(e),
      );
    const dir = `${GOLDEN_DIR}tiny/llama_tied`;
    const info = await service.loadModel(dir, {
      cache: false,
      dtype: "float16",
      quantize: "nf4",
      doubleQuant: true,
    });
    expect(info.weightFormat).toBe("nf4");
    expect(info.weightBytes).toBeLessThan(0.5 * 4 * info.parameters);
    const golden = readGolden(dir);
    // Quantization error, not a tolerance of the kernels (those are tested exactly against decoded weights).
    const loss = await service.loss(golden.input_ids);
    expect(Math.abs(loss - golden.loss) / golden.loss).toBeLessThan(0.05);
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
