/**
 * The frozen linear's WGSL kernels, as configurations of the LoRA linear's tiled matmul with no low-rank term.
 * A packed W is bound as its words and scales and dequantized inside the matmul's loads.
 */
import {
  registerKernel,
  type KernelFunc,
  type NamedTensorInfoMap,
  type TensorInfo,
} from "@tensorflow/tfjs";
import { webgpuBackendOf } from "../../backend/programs.js";
import {
  runLoraMatmul,
  weightInput,
  type WeightInput,
} from "../lora_linear/webgpu.js";
import { F32_W } from "../lora_linear/shader.wgsl.js";
import { LINEAR_KERNELS, readLinearAttrs, type WeightRead } from "./attrs.js";

const PLAIN = {
  dropout: "none",
  lowRank: "none",
  lowRankMask: false,
} as const;

/** y[T, OUT] = x·W (+ b), W read as [K, N] ('kn') or [N, K] ('nk'); W is [rows, cols] = wShape. */
function linearForward(
  backend: unknown,
  x: TensorInfo,
  w: WeightInput,
  bias: TensorInfo | undefined,
  wLayout: WeightRead,
  wShape: [number, number],
): TensorInfo {
  const [T, K] = x.shape as [number, number];
  const N = wLayout === "kn" ? wShape[1] : wShape[0];
  return runLoraMatmul(webgpuBackendOf(backend), {
    shape: { M: T, N, K },
    layout: {
      xLayout: "mk",
      wLayout,
      bias: bias !== undefined,
      wFormat: w.attrs.wFormat,
      doubleQuant: w.attrs.doubleQuant,
      ...PLAIN,
    },
    inputs: bias ? [x, w.W, bias] : [x, w.W],
    wScales: w.scales,
    wOffset: w.attrs.wOffset,
  });
}

/** aᵀ·b: [T, M]ᵀ · [T, N] -> [M, N], the reduction over tokens of a weight gradient. */
function transposedProduct(
  backend: unknown,
  a: TensorInfo,
  b: TensorInfo,
): TensorInfo {
  const [T, M] = a.shape as [number, number];
  return runLoraMatmul(webgpuBackendOf(backend), {
    shape: { M, N: b.shape[1]!, K: T },
    layout: { xLayout: "km", wLayout: "kn", bias: false, ...F32_W, ...PLAIN },
    inputs: [a, b],
  });
}

/** The f32 and the packed forward kernels: the same function, registered under two names (see `grad.ts`). */
const forward: KernelFunc = ({ inputs, backend, attrs }) => {
  const named = inputs as NamedTensorInfoMap;
  const a = readLinearAttrs(attrs!);
  const w = weightInput(named, attrs!);
  // An f32 W carries its shape; packed words do not, so the op passes it as an attr.
  const wShape =
    a.wFormat === "float32"
      ? (named["W"]!.shape as [number, number])
      : a.wShape;
  return linearForward(
    backend,
    named["x"]!,
    w,
    named["bias"],
    a.wLayout,
    wShape,
  );
};

export function registerLinearWebGPUKernels(): void {
  for (const kernelName of [
    LINEAR_KERNELS.forward,
    LINEAR_KERNELS.forwardFrozen,
    LINEAR_KERNELS.forwardPacked,
  ])
    registerKernel({ kernelName, backendName: "webgpu", kernelFunc: forward });
  registerKernel({
    kernelName: LINEAR_KERNELS.transposedProduct,
    backendName: "webgpu",
    kernelFunc: ({ inputs, backend }) => {
      const { a, b } = inputs as NamedTensorInfoMap;
      return transposedProduct(backend, a!, b!);
    },
  });
}
