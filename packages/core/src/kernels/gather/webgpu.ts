/** The gather kernels on WebGPU: one program class over `gatherShader`, registered for gather and dequantize. */
import {
  registerKernel,
  type KernelFunc,
  type NamedTensorInfoMap,
} from "@tensorflow/tfjs";
import type { WebGPUBackend } from "@tensorflow/tfjs-backend-webgpu";
import {
  runProgram,
  webgpuBackendOf,
  type TensorInfo,
  type WebGPUProgram,
} from "../../backend/programs.js";
import { scaleBindingNames } from "../quant/shader.wgsl.js";
import { scaleInputs } from "../quant/inputs.js";
import { GATHER_KERNELS, readGatherAttrs, type GatherAttrs } from "./attrs.js";
import {
  GATHER_UNIFORMS,
  gatherShader,
  gatherShaderKey,
  type GatherLayout,
} from "./shader.wgsl.js";

const WORKGROUP_X = 64;

class GatherRowsProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [1], y: [0] };
  dispatch: [number, number, number];
  variableNames: string[];
  workgroupSize: [number, number, number] = [WORKGROUP_X, 1, 1];
  uniforms = GATHER_UNIFORMS;
  outputComponent: number;
  variableComponents: number[];

  constructor(
    numRows: number,
    cols: number,
    private readonly layout: GatherLayout,
    maxGroups: number,
  ) {
    this.outputShape = [numRows, cols];
    this.outputComponent = layout.vec4 ? 4 : 1;
    this.variableNames = [
      ...(layout.ids ? ["ids"] : []),
      "W",
      ...scaleBindingNames("W", layout.format, layout.doubleQuant),
    ];
    // tfjs would otherwise bind every input with the output's 4 components; the readers index scalars.
    this.variableComponents = this.variableNames.map(() => 1);
    const perInvocation = layout.vec4 ? 4 : 1;
    this.dispatch = [
      Math.ceil(cols / perInvocation / WORKGROUP_X),
      Math.min(numRows, maxGroups),
      1,
    ];
    this.shaderKey = gatherShaderKey(layout);
  }

  getUserCode(): string {
    return gatherShader(this.layout);
  }
}

/** Rows of the table bound as W (ids given) or all of it, as an f32 [numRows, cols] tensor. */
function runGather(
  backend: WebGPUBackend,
  inputs: NamedTensorInfoMap,
  a: GatherAttrs,
  ids: TensorInfo | undefined,
): TensorInfo {
  const numRows = ids ? ids.shape.reduce((p, d) => p * d, 1) : a.rows;
  const layout: GatherLayout = {
    format: a.wFormat,
    doubleQuant: a.doubleQuant,
    ids: ids !== undefined,
    vec4: a.cols % 4 === 0,
  };
  const program = new GatherRowsProgram(
    numRows,
    a.cols,
    layout,
    backend.device.limits.maxComputeWorkgroupsPerDimension,
  );
  const bound = [
    ...(ids ? [ids] : []),
    inputs["W"]!,
    ...scaleInputs<TensorInfo>(inputs, a),
  ];
  return runProgram(backend, program, bound, [
    { type: "int32", data: [a.rows] },
    { type: "int32", data: [a.cols] },
    { type: "int32", data: [numRows] },
    { type: "int32", data: [a.rowOffset] },
    { type: "float32", data: [a.wOffset] },
  ]);
}

const gatherRows: KernelFunc = ({ inputs, backend, attrs }) => {
  const named = inputs as NamedTensorInfoMap;
  return runGather(
    webgpuBackendOf(backend),
    named,
    readGatherAttrs(attrs!),
    named["ids"],
  );
};

const dequantize: KernelFunc = ({ inputs, backend, attrs }) =>
  runGather(
    webgpuBackendOf(backend),
    inputs as NamedTensorInfoMap,
    readGatherAttrs(attrs!),
    undefined,
  );

export function registerGatherWebGPUKernels(): void {
  registerKernel({
    kernelName: GATHER_KERNELS.gatherRows,
    backendName: "webgpu",
    kernelFunc: gatherRows,
  });
  registerKernel({
    kernelName: GATHER_KERNELS.dequantize,
    backendName: "webgpu",
    kernelFunc: dequantize,
  });
}
