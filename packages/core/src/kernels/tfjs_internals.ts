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
