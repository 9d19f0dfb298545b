/**
 * Pins what webtune assumes about tfjs-backend-webgpu's internals, so that an upgrade that moves them fails here
 * with a clear message rather than as wrong numbers in a kernel.
 */
import * as tf from "@tensorflow/tfjs";
import { WebGPUBackend } from "@tensorflow/tfjs-backend-webgpu";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { disposeRuntime, loraLinear } from "@webtune/core";
import {
  computePipeline,
  recordDispatch,
  runProgram,
  webgpuBackendOf,
  type WebGPUProgram,
} from "../../../packages/core/src/backend/programs.js";
import { trimBufferPool } from "../../../packages/core/src/backend/buffers.js";
import { UNIFORMS_WGSL } from "../../../packages/core/src/kernels/lora_linear/shader.wgsl.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

/** Writes back its uniforms and its input's shape, as tfjs declares them. */
class EchoUniformsProgram implements WebGPUProgram {
  outputShape = [10];
  shaderKey = "webtuneEchoUniforms";
  dispatchLayout = { x: [0] };
  dispatch: [number, number, number] = [1, 1, 1];
  variableNames = ["X"];
  workgroupSize: [number, number, number] = [1, 1, 1];
  uniforms = UNIFORMS_WGSL;
  getUserCode() {
    return `
fn main(index: i32) {
  if (index != 0) { return; }
  result[0] = f32(uniforms.M);
  result[1] = f32(uniforms.N);
  result[2] = f32(uniforms.K);
  result[3] = f32(uniforms.R);
  result[4] = uniforms.outScale;
  result[5] = uniforms.loraScale;
  result[6] = f32(uniforms.seedHash);
  result[7] = f32(uniforms.dropThreshold);
  result[8] = f32(uniforms.xShape.x * 100 + uniforms.xShape.y);
  result[9] = X[5];
}`;
  }
}

describe("tfjs-backend-webgpu internals webtune relies on", () => {
  it("prints webtune's generated WGSL under WEBGPU_PRINT_SHADER", async (ctx) => {
    await needGpu(ctx);
    const printed: string[] = [];
    const debug = vi
      .spyOn(console, "debug")
      .mockImplementation((text: unknown) => void printed.push(String(text)));
    tf.env().set("WEBGPU_PRINT_SHADER", "webtuneLoraMatmul");
    try {
      // A shape and layout no other test in this file compiles, so the pipeline is built (and printed) now.
      const y = loraLinear(
        tf.ones([3, 5]),
        tf.ones([5, 2]) as tf.Tensor2D,
        null,
        tf.ones([1, 5]) as tf.Tensor2D,
        tf.ones([2, 1]) as tf.Tensor2D,
        { scale: 1, weightLayout: "in_out" },
      );
      await y.data();
    } finally {
      tf.env().set("WEBGPU_PRINT_SHADER", "");
      debug.mockRestore();
    }
    expect(
      printed.some(
        (s) => s.includes("fn storeBlock") && s.includes("@compute"),
      ),
    ).toBe(true);
  });

  it("exposes runWebGPUProgram and the device on WebGPUBackend", async (ctx) => {
    await needGpu(ctx);
    expect(typeof WebGPUBackend.prototype.runWebGPUProgram).toBe("function");
    const backend = webgpuBackendOf(tf.backend());
    expect(backend.device).toBeDefined();
    expect(() => webgpuBackendOf({})).toThrow(/not tfjs-backend-webgpu/);
  });

  it("binds inputs by variableNames and appends program uniforms after the shapes, in order", async (ctx) => {
    await needGpu(ctx);
    const backend = webgpuBackendOf(tf.backend());
    const x = tf.range(0, 12, 1, "float32").reshape([3, 4]);
    const out = runProgram(
      backend,
      new EchoUniformsProgram(),
      [x],
      [
        { type: "int32", data: [3] },
        { type: "int32", data: [5] },
        { type: "int32", data: [7] },
        { type: "int32", data: [2] },
        { type: "float32", data: [0.5] },
        { type: "float32", data: [1.25] },
        { type: "uint32", data: [123456] },
        { type: "uint32", data: [4000000000] },
      ],
    );
    const values = await tf.engine().makeTensorFromTensorInfo(out).data();
    expect(Array.from(values)).toEqual([
      3, 5, 7, 2, 0.5, 1.25, 123456, 4000000000, 304, 5,
    ]);
    x.dispose();
  });

  it("keeps the private members recordDispatch drives, as recordAndSubmit uses them", async (ctx) => {
    await needGpu(ctx);
    const backend = webgpuBackendOf(tf.backend()) as unknown as Record<
      string,
      unknown
    >;
    for (const method of [
      "uploadToGPU",
      "tensorToBinding",
      "makeUniforms",
      "ensureCommandEncoderReady",
      "endComputePassEncoder",
      "submitQueue",
    ])
      expect(typeof backend[method], method).toBe("function");
    expect(backend["commandQueueOwnedIds"]).toBeInstanceOf(WeakSet);
    expect(typeof backend["dispatchCountInPass"]).toBe("number");
    for (const field of ["commandEncoder", "computePassEncoder"])
      expect(backend, field).toHaveProperty(field);
    // null or undefined outside tf.time/tf.profile; recordDispatch reads it as "timing" when set.
    expect(backend["activeTimers"] == null).toBe(true);
  });

  it("recordDispatch writes several outputs in order with tfjs's own programs, timed or not", async (ctx) => {
    await needGpu(ctx);
    const backend = webgpuBackendOf(tf.backend());
    const pipeline = computePipeline(
      backend,
      "webtuneTestTwoOutputs",
      () => `
@group(0) @binding(0) var<storage, read> X : array<f32>;
@group(0) @binding(1) var<storage, read_write> plus : array<f32>;
@group(0) @binding(2) var<storage, read_write> times : array<f32>;
struct Uniforms { n : u32, a : f32, }
@group(0) @binding(3) var<uniform> u : Uniforms;
@compute @workgroup_size(4)
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  if (gid.x < u.n) { plus[gid.x] = X[gid.x] + u.a; times[gid.x] = X[gid.x] * u.a; }
}`,
    );
    expect(
      computePipeline(backend, "webtuneTestTwoOutputs", () => "not compiled"),
    ).toBe(pipeline);
    const run = (x: tf.Tensor, a: number): tf.Tensor[] => {
      const outputs = [0, 1].map(() =>
        backend.makeTensorInfo(x.shape, "float32"),
      );
      recordDispatch(backend, {
        pipeline,
        inputs: [x],
        outputs,
        uniforms: [
          { type: "uint32", data: [x.size] },
          { type: "float32", data: [a] },
        ],
        workgroups: [Math.ceil(x.size / 4), 1, 1],
      });
      return outputs.map((o) => tf.engine().makeTensorFromTensorInfo(o));
    };
    const before = tf.memory().numTensors;
    // x comes from a tfjs program still unsubmitted; the outputs feed another.
    const range = tf.range(0, 7, 1, "float32");
    const x = tf.add(range, 1); // 1..7
    const [plus, times] = run(x, 3);
    const sum = tf.add(plus!, times!); // 4x + 3
    expect(Array.from(await sum.data())).toEqual([7, 11, 15, 19, 23, 27, 31]);
    // While tf.time/tf.profile time kernels, tfjs runs each program in its own pass; the dispatch still lands.
    let timed: tf.Tensor[] = [];
    await backend.time(() => {
      timed = run(x, -1);
    });
    expect(Array.from(await timed[1]!.data())).toEqual([
      -1, -2, -3, -4, -5, -6, -7,
    ]);
    tf.dispose([range, x, plus!, times!, sum, ...timed]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it("trimBufferPool frees pooled buffers of sizes nobody asked for since its last call, once they outweigh those in use", async (ctx) => {
    await needGpu(ctx);
    const pool = (
      tf.backend() as unknown as {
        bufferManager: {
          numFreeBuffers: number;
          numBytesAllocated: number;
          numBytesUsed: number;
        };
      }
    ).bufferManager;
    const work = async (rows: number) => {
      const t = tf.tidy(() => tf.add(tf.ones([rows, 1024]), 1));
      await t.data();
      tf.dispose(t);
    };
    expect(
      trimBufferPool(0),
      "the first call only starts the bookkeeping",
    ).toBe(0);
    // Forty distinct sizes, as padded batches of varying length make them: each released buffer stays pooled.
    for (let n = 1; n <= 40; n++) await work(n);
    expect(pool.numFreeBuffers).toBeGreaterThanOrEqual(40);
    const pooled = pool.numBytesAllocated - pool.numBytesUsed;
    expect(trimBufferPool(1 << 30), "under the floor: kept").toBe(0);
    expect(pool.numFreeBuffers).toBeGreaterThanOrEqual(40);
    // Nothing asked for those sizes since the last call: all go.
    const freed = trimBufferPool(0);
    expect(freed).toBeGreaterThanOrEqual(pooled * 0.99);
    expect(pool.numFreeBuffers).toBe(0);
    expect(pool.numBytesAllocated).toBe(pool.numBytesUsed);

    // Work that repeats its shapes between calls, as training steps do, keeps its pool...
    await work(50);
    expect(trimBufferPool(0)).toBe(0);
    const kept = pool.numFreeBuffers;
    expect(kept).toBeGreaterThan(0);
    await work(50);
    expect(pool.numFreeBuffers, "reused, not reallocated").toBe(kept);
    expect(trimBufferPool(0)).toBe(0);
    // ...until it stops asking for them.
    expect(trimBufferPool(0)).toBeGreaterThan(0);
    expect(pool.numFreeBuffers).toBe(0);
    const again = tf.tidy(() => tf.add(tf.ones([7, 1024]), 2));
    expect(Array.from((await again.data()).slice(0, 3))).toEqual([3, 3, 3]);
    again.dispose();
  });
});
