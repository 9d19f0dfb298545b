/**
 * The only file that reaches into tfjs-backend-webgpu beyond its documented surface: running a custom WGSL
 * program, recording a dispatch with several outputs into tfjs's command encoder, releasing an intermediate,
 * trimming the buffer pool, and the shape of the header tfjs writes above every program's WGSL.
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

/** The private part of WebGPUBackend that `recordDispatch` drives, as tfjs's own `recordAndSubmit` does. */
interface CommandRecorder {
  device: GPUDevice;
  commandEncoder: GPUCommandEncoder | null;
  computePassEncoder: GPUComputePassEncoder | null;
  dispatchCountInPass: number;
  /** Data whose release tfjs defers until the commands that use them are submitted. */
  commandQueueOwnedIds: WeakSet<object>;
  /** Set while `tf.time`/`tf.profile` measure kernels: every pass is then ended after one dispatch. */
  activeTimers: unknown;
  uploadToGPU(dataId: object): void;
  tensorToBinding(info: TensorInfo): GPUBindingResource;
  makeUniforms(uniforms: ProgramUniform[]): GPUBufferBinding;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
}

/** One dispatch of a pipeline built by `computePipeline`, with bindings a tfjs program cannot declare. */
export interface StorageDispatch {
  pipeline: GPUComputePipeline;
  /** Bound read-only at bindings 0, 1, ... */
  inputs: TensorInfo[];
  /** Fresh tensors from `backend.makeTensorInfo`, bound read_write after the inputs; the dispatch fills them. */
  outputs: TensorInfo[];
  /** One uniform struct, bound last, laid out as tfjs lays out a program's uniforms. */
  uniforms: ProgramUniform[];
  workgroups: [number, number, number];
}

/**
 * Records one dispatch into tfjs's command encoder, in order with tfjs's own programs, with the same
 * bookkeeping as tfjs's `recordAndSubmit`: inputs uploaded, outputs allocated from the buffer pool, their
 * release deferred until submission, a submit every WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE dispatches. For kernels
 * that write several outputs in one pass (a tfjs program writes one). Outputs must not alias inputs: WebGPU
 * rejects a buffer bound both read-only and writable in one dispatch.
 */
export function recordDispatch(
  backend: WebGPUBackend,
  dispatch: StorageDispatch,
): void {
  const b = backend as unknown as CommandRecorder;
  // tfjs's compile-only warm-up mode records nothing either.
  if (tf.env().getBool("WEBGPU_ENGINE_COMPILE_ONLY")) return;
  const limit = b.device.limits.maxComputeWorkgroupsPerDimension;
  if (dispatch.workgroups.some((d) => d > limit))
    throw new ShapeError(
      `dispatch [${dispatch.workgroups.join(", ")}] exceeds this device's maxComputeWorkgroupsPerDimension (${limit}).`,
    );
  const tensors = [...dispatch.inputs, ...dispatch.outputs];
  for (const t of tensors) b.uploadToGPU(t.dataId);
  const resources = [
    ...tensors.map((t) => b.tensorToBinding(t)),
    b.makeUniforms(dispatch.uniforms),
  ];
  for (const t of tensors) b.commandQueueOwnedIds.add(t.dataId);
  const bindGroup = b.device.createBindGroup({
    layout: dispatch.pipeline.getBindGroupLayout(0),
    entries: resources.map((resource, binding) => ({ binding, resource })),
  });
  b.ensureCommandEncoderReady();
  b.computePassEncoder ??= b.commandEncoder!.beginComputePass({});
  const pass = b.computePassEncoder;
  pass.setPipeline(dispatch.pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(...dispatch.workgroups);
  b.dispatchCountInPass++;
  const timing = b.activeTimers != null;
  const batch = tf.env().getNumber("WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE");
  if (timing || b.dispatchCountInPass >= batch) {
    b.endComputePassEncoder();
    // While timing, tfjs submits when it resolves its next timestamp query.
    if (!timing) b.submitQueue();
  }
}

const pipelines = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();

/**
 * A compute pipeline for complete WGSL (entry point `main`), built once per device and key. Printed under
 * WEBGPU_PRINT_SHADER as tfjs prints its programs ('all', or a comma-separated list of key substrings).
 */
export function computePipeline(
  backend: WebGPUBackend,
  key: string,
  code: () => string,
): GPUComputePipeline {
  const device = backend.device;
  let cache = pipelines.get(device);
  if (!cache) pipelines.set(device, (cache = new Map()));
  let pipeline = cache.get(key);
  if (pipeline) return pipeline;
  const source = code();
  const print = String(tf.env().get("WEBGPU_PRINT_SHADER")).toLowerCase();
  if (
    print !== "" &&
    (print === "all" ||
      print.split(",").some((k) => key.toLowerCase().includes(k)))
  ) {
    console.group(key);
    console.debug(source);
    console.groupEnd();
  }
  pipeline = device.createComputePipeline({
    label: key,
    layout: "auto",
    compute: {
      module: device.createShaderModule({ label: key, code: source }),
      entryPoint: "main",
    },
  });
  cache.set(key, pipeline);
  return pipeline;
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
