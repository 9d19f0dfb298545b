/**
 * The CPU references registered as tfjs kernels for the 'cpu' backend: the slow but exact fallback when a
 * machine has no WebGPU, with the same kernel names (and so the same gradients) as the WGSL kernels.
 */
import {
  registerKernel,
  type KernelConfig,
  type NamedTensorInfoMap,
  type TensorInfo,
} from "@tensorflow/tfjs";
import { dimsOf, KERNELS, readAttrs } from "./attrs.js";
import {
  loraForwardReference,
  loraGradAReference,
  loraGradBReference,
  loraGradXReference,
  projectGradReference,
} from "./reference.js";

/** The part of tfjs's CPU backend the references need. */
interface CpuBackend {
  readSync(dataId: object): unknown;
  makeTensorInfo(
    shape: number[],
    dtype: "float32",
    values: Float32Array,
  ): TensorInfo;
}

function values(backend: unknown, t: TensorInfo | undefined): Float32Array {
  return (backend as CpuBackend).readSync(t!.dataId) as Float32Array;
}

function output(
  backend: unknown,
  shape: number[],
  data: Float32Array,
): TensorInfo {
  return (backend as CpuBackend).makeTensorInfo(shape, "float32", data);
}

export function registerCpuKernels(): void {
  const configs: Omit<KernelConfig, "backendName">[] = [
    {
      kernelName: KERNELS.forward,
      kernelFunc: ({ inputs, backend, attrs }) => {
        const { x, W, A, B, bias } = inputs as NamedTensorInfoMap;
        const d = dimsOf(inputs);
        const bv = bias ? values(backend, bias) : undefined;
        const y = loraForwardReference(
          values(backend, x),
          values(backend, W),
          bv,
          values(backend, A),
          values(backend, B),
          d,
          readAttrs(attrs!),
        );
        return output(backend, [d.T, d.OUT], y);
      },
    },
    {
      kernelName: KERNELS.projectGrad,
      kernelFunc: ({ inputs, backend }) => {
        const { dy, B } = inputs as NamedTensorInfoMap;
        const d = dimsOf(inputs);
        return output(
          backend,
          [d.T, d.R],
          projectGradReference(values(backend, dy), values(backend, B), d),
        );
      },
    },
    {
      kernelName: KERNELS.gradX,
      kernelFunc: ({ inputs, backend, attrs }) => {
        const { dy, W, g, A } = inputs as NamedTensorInfoMap;
        const d = dimsOf(inputs);
        const dx = loraGradXReference(
          values(backend, dy),
          values(backend, W),
          values(backend, g),
          values(backend, A),
          d,
          readAttrs(attrs!),
        );
        return output(backend, [d.T, d.IN], dx);
      },
    },
    {
      kernelName: KERNELS.gradA,
      kernelFunc: ({ inputs, backend, attrs }) => {
        const { g, x } = inputs as NamedTensorInfoMap;
        const d = dimsOf(inputs);
        return output(
          backend,
          [d.R, d.IN],
          loraGradAReference(
            values(backend, g),
            values(backend, x),
            d,
            readAttrs(attrs!),
          ),
        );
      },
    },
    {
      kernelName: KERNELS.gradB,
      kernelFunc: ({ inputs, backend, attrs }) => {
        const { dy, x, A } = inputs as NamedTensorInfoMap;
        const d = dimsOf(inputs);
        const dB = loraGradBReference(
          values(backend, dy),
          values(backend, x),
          values(backend, A),
          d,
          readAttrs(attrs!),
        );
        return output(backend, [d.OUT, d.R], dB);
      },
    },
  ];
  for (const config of configs)
    registerKernel({ ...config, backendName: "cpu" });
}
