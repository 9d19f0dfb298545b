/**
 * The only file that reaches into tfjs-backend-webgpu beyond its documented surface: running a custom WGSL
 * program, releasing an intermediate, and the shape of the header tfjs writes above every program's WGSL.
 * If a tfjs upgrade moves any of this, `test/unit/kernels/tfjs_internals.test.ts` fails loudly.
 */
import * as tf from "@tensorflow/tfjs";
import type {
  WebGPUBackend,
  WebGPUProgram,
} from "@tensorflow/tfjs-backend-webgpu";
import { ShapeError } from "../errors.js";

export type { WebGPUProgram };
export type TensorInfo = tf.TensorInfo;

/** A uniform value appended after tfjs's own (NaN, Infinity, shapes and strides), in `program.uniforms` order. */
export interface ProgramUniform {
  type: "int32" | "uint32" | "float32";
  data: number[];
}

/** tfjs declares storage bindings in this order: `result` first, then `program.variableNames`. */
export const OUTPUT_BINDING_NAME = "result";

/** The backend a kernel function received, checked to be tfjs-backend-webgpu. */
export function webgpuBackendOf(backend: unknown): WebGPUBackend {
  const b = backend as Partial<WebGPUBackend>;
  if (typeof b.runWebGPUProgram !== "function" || b.device === undefined) {
    throw new ShapeError(
      "A webtune WebGPU kernel was invoked on a backend that is not tfjs-backend-webgpu.",
    );
  }
  return backend as WebGPUBackend;
}

/**
 * Runs one WGSL program. tfjs prepends its header (bindings, a `Uniforms` struct with every input's shape, then
 * `program.uniforms`) and caches the pipeline by `program.shaderKey`, so shapes must live in uniforms.
 */
export function runProgram(
  backend: WebGPUBackend,
  program: WebGPUProgram,
  inputs: TensorInfo[],
  uniforms: ProgramUniform[],
): TensorInfo {
  const limit = backend.device.limits.maxComputeWorkgroupsPerDimension;
  if (program.dispatch.some((d) => d > limit)) {
    throw new ShapeError(
      `${program.constructor.name}: dispatch [${program.dispatch.join(", ")}] exceeds this device's ` +
        `maxComputeWorkgroupsPerDimension (${limit}); split the batch.`,
    );
  }
  return backend.runWebGPUProgram(program, inputs, "float32", uniforms);
}

/** Frees an intermediate a kernel made and will not return. */
export function disposeIntermediate(
  backend: WebGPUBackend,
  info: TensorInfo,
): void {
  backend.disposeData(info.dataId);
}

/** The tfjs kernel-function signature, re-exported so kernel files need not import tfjs internals themselves. */
export type KernelFunc = tf.KernelFunc;
export type NamedAttrMap = tf.NamedAttrMap;

/** What tfjs-backend-webgpu's BufferManager keeps of released buffers: a list per (size, usage), never freed. */
interface BufferPool {
  freeBuffers: Map<string, GPUBuffer[]>;
  numFreeBuffers: number;
  numBytesAllocated: number;
  numBytesUsed: number;
  acquireBuffer(size: number, usage: number, ...rest: unknown[]): GPUBuffer;
}

const MiB = 1 << 20;

/** The (size, usage) pairs each pool was asked for since the last trim; present once tracking is installed. */
const requested = new WeakMap<BufferPool, Set<string>>();

/** The sizes a pool handed out since the last trim; undefined on the first call, which starts the recording. */
function trackRequests(pool: BufferPool): Set<string> | undefined {
  const seen = requested.get(pool);
  if (seen) return seen;
  const keys = new Set<string>();
  requested.set(pool, keys);
  const acquire = pool.acquireBuffer.bind(pool);
  pool.acquireBuffer = (size, usage, ...rest) => {
    keys.add(`${size}:${usage}`);
    return acquire(size, usage, ...rest);
  };
  return undefined;
}

/**
 * Destroys the GPU buffers tfjs keeps for reuse whose size nothing asked for since the previous call, when the
 * pool holds more than `floorBytes` and more than the buffers in use; returns the bytes freed.
 * tfjs pools every released buffer by its exact size and never frees one, so work whose shapes vary (padded
 * batches of different lengths, evaluation, generation with a growing KV cache) grows the pool without bound: on
 * a CPU adapter, until the process runs out of memory. Work that repeats its shapes between calls (training steps
 * of one batch shape) keeps its pool: destroying it made every step allocate its activations again (142 ms of a
 * 1.4 s gpt2 step on an H200). The first call on a backend starts the bookkeeping and frees nothing. Buffers in
 * use are not touched; WebGPU defers the release of a destroyed buffer until submitted work that reads it is done.
 * A no-op on other backends.
 */
export function trimBufferPool(floorBytes = 256 * MiB): number {
  if (tf.getBackend() !== "webgpu") return 0;
  const pool = (tf.backend() as unknown as { bufferManager?: BufferPool })
    .bufferManager;
  if (!(pool?.freeBuffers instanceof Map)) return 0;
  const recent = trackRequests(pool);
  if (!recent) return 0;
  let pooled = 0;
  for (const list of pool.freeBuffers.values())
    for (const buffer of list) pooled += buffer.size;
  let freed = 0;
  if (pooled > Math.max(floorBytes, pool.numBytesUsed)) {
    // The keys stay: tfjs takes an empty map to mean "disposed" and would stop pooling.
    for (const list of pool.freeBuffers.values()) {
      const first = list[0];
      if (!first || recent.has(`${first.size}:${first.usage}`)) continue;
      for (const buffer of list) {
        freed += buffer.size;
        buffer.destroy();
      }
      pool.numFreeBuffers -= list.length;
      list.length = 0;
    }
    pool.numBytesAllocated -= freed;
  }
  recent.clear();
  return freed;
}
