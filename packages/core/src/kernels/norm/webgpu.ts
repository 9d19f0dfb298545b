/**
 * The fused norms on tfjs's WebGPU backend: one workgroup per row, rows along x. Plain pipelines recorded into
 * tfjs's command encoder (backend/programs.ts), not tfjs programs, because tfjs puts its own declarations where
 * `enable subgroups;` must stand: so the forward reduces as the compiled step's norms do on the same device
 * (kernels/subgroups.ts), and the two paths give the same bits.
 */
import { registerKernel, type NamedTensorInfoMap } from "@tensorflow/tfjs";
import {
  computePipeline,
  recordDispatch,
  webgpuBackendOf,
  type TensorInfo,
} from "../../backend/programs.js";
import { programSource, type Program } from "../program.js";
import {
  programFor,
  reductionSuffix,
  withSubgroupVariant,
} from "../subgroups.js";
import { NORM_KERNELS } from "./attrs.js";
import { layerNormWGSL, NORM_WORKGROUP, rmsNormWGSL } from "./shader.wgsl.js";

type Kind = "rms" | "layer";

/** Bindings: the inputs (X [rows, C], then scale, or weight and bias, [C]), then result [rows, C]. */
function rowNormProgram(kind: Kind, subgroups: boolean): Program {
  const inputs = kind === "rms" ? ["X", "scale"] : ["X", "weight", "bias"];
  return {
    key: `webtuneNorm_${kind}${reductionSuffix(subgroups)}`,
    storage: [
      ...inputs.map((name) => ({
        name,
        element: "f32" as const,
        access: "read" as const,
      })),
      { name: "result", element: "f32", access: "read_write" },
    ],
    uniforms: [
      { name: "C", type: "i32" },
      { name: "eps", type: "f32" },
    ],
    stepParams: false,
    workgroupSize: [NORM_WORKGROUP, 1, 1],
    body: kind === "rms" ? rmsNormWGSL(subgroups) : layerNormWGSL(subgroups),
    flat: false,
    subgroups,
  };
}

const PROGRAMS: Record<Kind, Program> = {
  rms: withSubgroupVariant((subgroups) => rowNormProgram("rms", subgroups)),
  layer: withSubgroupVariant((subgroups) => rowNormProgram("layer", subgroups)),
};

function rowNorm(
  backend: unknown,
  kind: Kind,
  inputs: TensorInfo[],
  eps: number,
): TensorInfo {
  const gpu = webgpuBackendOf(backend);
  const [rows, C] = inputs[0]!.shape as [number, number];
  const program = programFor(gpu.device, PROGRAMS[kind]);
  const result = gpu.makeTensorInfo([rows, C], "float32");
  recordDispatch(gpu, {
    pipeline: computePipeline(
      gpu,
      program.key,
      () => programSource(program),
      "_start",
    ),
    inputs,
    outputs: [result],
    uniforms: [
      { type: "int32", data: [C] },
      { type: "float32", data: [eps] },
    ],
    workgroups: [rows, 1, 1],
  });
  return result;
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
