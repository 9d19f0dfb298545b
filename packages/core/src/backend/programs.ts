/**
 * Running WGSL through tfjs-backend-webgpu beyond its documented surface: a custom program, a dispatch with
 * several outputs recorded into tfjs's command encoder, releasing an intermediate, and pipelines for complete WGSL.
 * With `buffers.ts` and `tape.ts`, the only files that reach into tfjs's internals; if a tfjs upgrade moves any of
 * this, `test/unit/backend/tfjs_internals.test.ts` fails loudly.
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
 * A compute pipeline for complete WGSL (entry point `main` unless named), built once per device and key. Printed
 * under WEBGPU_PRINT_SHADER as tfjs prints its programs ('all', or a comma-separated list of key substrings).
 */
export function computePipeline(
  backend: WebGPUBackend,
  key: string,
  code: () => string,
  entryPoint = "main",
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
      entryPoint,
    },
  });
  cache.set(key, pipeline);
  return pipeline;
}

/** The tfjs kernel-function signature, re-exported so kernel files need not import tfjs internals themselves. */
export type KernelFunc = tf.KernelFunc;
export type NamedAttrMap = tf.NamedAttrMap;
