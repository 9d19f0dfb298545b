/** The fused norms as tfjs WebGPU programs: one workgroup per row, rows dispatched along x (and y past the limit). */
import { registerKernel, type NamedTensorInfoMap } from "@tensorflow/tfjs";
import {
  runProgram,
  webgpuBackendOf,
  type TensorInfo,
  type WebGPUProgram,
} from "../../backend/programs.js";
import {
  LAYER_NORM_WGSL,
  NORM_UNIFORMS,
  NORM_WORKGROUP,
  RMS_NORM_WGSL,
} from "./shader.wgsl.js";
import { NORM_KERNELS } from "./attrs.js";

class RowNormProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [0] };
  dispatch: [number, number, number];
  variableNames: string[];
  workgroupSize: [number, number, number] = [NORM_WORKGROUP, 1, 1];
  uniforms = NORM_UNIFORMS;

  constructor(
    rows: number,
    C: number,
    private readonly kind: "rms" | "layer",
  ) {
    this.outputShape = [rows, C];
    this.dispatch = [rows, 1, 1];
    this.variableNames =
      kind === "rms" ? ["X", "scale"] : ["X", "weight", "bias"];
    this.shaderKey = `webtuneNorm_${kind}`;
  }

  getUserCode(): string {
    return this.kind === "rms" ? RMS_NORM_WGSL : LAYER_NORM_WGSL;
  }
}

function rowNorm(
  backend: unknown,
  kind: "rms" | "layer",
  inputs: TensorInfo[],
  eps: number,
): TensorInfo {
  const [rows, C] = inputs[0]!.shape as [number, number];
  return runProgram(
    webgpuBackendOf(backend),
    new RowNormProgram(rows, C, kind),
    inputs,
    [
      { type: "int32", data: [C] },
      { type: "float32", data: [eps] },
    ],
  );
}

export function registerNormWebGPUKernels(): void {
  registerKernel({
    kernelName: NORM_KERNELS.rms,
    backendName: "webgpu",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, scale } = inputs as NamedTensorInfoMap;
      return rowNorm(backend, "rms", [x!, scale!], attrs!["eps"] as number);
    },
  });
  registerKernel({
    kernelName: NORM_KERNELS.layer,
    backendName: "webgpu",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, weight, bias } = inputs as NamedTensorInfoMap;
      return rowNorm(
        backend,
        "layer",
        [x!, weight!, bias!],
        attrs!["eps"] as number,
      );
    },
  });
}
