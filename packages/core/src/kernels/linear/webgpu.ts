/**
 * The frozen linear's WGSL kernels, as configurations of the LoRA linear's tiled matmul with no low-rank term.
 */
import {
  registerKernel,
  type NamedTensorInfoMap,
  type TensorInfo,
} from "@tensorflow/tfjs";
import { webgpuBackendOf } from "../tfjs_internals.js";
import { runLoraMatmul } from "../lora_linear/webgpu.js";
import { LINEAR_KERNELS, type WeightRead } from "./attrs.js";

const PLAIN = {
  dropout: "none",
  lowRank: "none",
  lowRankMask: false,
} as const;

/** y[T, OUT] = x·W (+ b), W read as [K, N] ('kn') or [N, K] ('nk'). */
function linearForward(
  backend: unknown,
  x: TensorInfo,
  W: TensorInfo,
  bias: TensorInfo | undefined,
  wLayout: WeightRead,
): TensorInfo {
  const [T, K] = x.shape as [number, number];
  const N = wLayout === "kn" ? W.shape[1]! : W.shape[0]!;
  return runLoraMatmul(webgpuBackendOf(backend), {
    shape: { M: T, N, K },
    layout: { xLayout: "mk", wLayout, bias: bias !== undefined, ...PLAIN },
    inputs: bias ? [x, W, bias] : [x, W],
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
    layout: { xLayout: "km", wLayout: "kn", bias: false, ...PLAIN },
    inputs: [a, b],
  });
}

export function registerLinearWebGPUKernels(): void {
  registerKernel({
    kernelName: LINEAR_KERNELS.forward,
    backendName: "webgpu",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, W, bias } = inputs as NamedTensorInfoMap;
      const wLayout = attrs!["wLayout"] as WeightRead;
      return linearForward(backend, x!, W!, bias, wLayout);
    },
  });
  registerKernel({
    kernelName: LINEAR_KERNELS.transposedProduct,
    backendName: "webgpu",
    kernelFunc: ({ inputs, backend }) => {
      const { a, b } = inputs as NamedTensorInfoMap;
      return transposedProduct(backend, a!, b!);
    },
  });
}
