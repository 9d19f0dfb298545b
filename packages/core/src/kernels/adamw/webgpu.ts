/**
 * The WebGPU kernel of the fused AdamW update: one dispatch per variable (see shader.wgsl.ts for why it is not a
 * tfjs program).
 */
import {
  registerKernel,
  util,
  type KernelConfig,
  type NamedTensorInfoMap,
} from "@tensorflow/tfjs";
import { ShapeError } from "../../errors.js";
import {
  computePipeline,
  recordDispatch,
  webgpuBackendOf,
  type TensorInfo,
} from "../../backend/programs.js";
import { ADAMW_KERNEL, f32Constants, readScalars } from "./attrs.js";
import {
  ADAMW_INPUTS,
  ADAMW_SHADER_KEY,
  ADAMW_WGSL,
  MAX_WORKGROUPS,
  WORKGROUP_SIZE,
} from "./shader.wgsl.js";

const adamwWebGPU: KernelConfig["kernelFunc"] = ({
  inputs,
  backend,
  attrs,
}) => {
  const gpu = webgpuBackendOf(backend);
  const named = inputs as NamedTensorInfoMap;
  const [param, grad, expAvg, expAvgSq] = ADAMW_INPUTS.map((k) => named[k]!);
  const n = util.sizeFromShape(param!.shape);
  const { limits } = gpu.device;
  if (n * 4 > limits.maxStorageBufferBindingSize)
    throw new ShapeError(
      `AdamW: a variable of shape ${JSON.stringify(param!.shape)} takes ${n * 4} bytes, over this device's ` +
        `maxStorageBufferBindingSize (${limits.maxStorageBufferBindingSize} bytes); train fewer or smaller tensors.`,
    );
  const outputs: TensorInfo[] = [param!, expAvg!, expAvgSq!].map((t) =>
    gpu.makeTensorInfo(t.shape, "float32"),
  );
  const groups = Math.min(Math.ceil(n / WORKGROUP_SIZE), MAX_WORKGROUPS);
  recordDispatch(gpu, {
    pipeline: computePipeline(gpu, ADAMW_SHADER_KEY, () => ADAMW_WGSL),
    inputs: [param!, grad!, expAvg!, expAvgSq!],
    outputs,
    uniforms: [
      { type: "uint32", data: [n] },
      ...f32Constants(readScalars(attrs!)).map((x) => ({
        type: "float32" as const,
        data: [x],
      })),
    ],
    workgroups: [groups, 1, 1],
  });
  return outputs;
};

/** Registers the fused AdamW kernel with tfjs for the 'webgpu' backend. */
export function registerWebGPUKernel(): void {
  registerKernel({
    kernelName: ADAMW_KERNEL,
    backendName: "webgpu",
    kernelFunc: adamwWebGPU,
  });
}
