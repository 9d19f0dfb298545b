/**
 * The CPU references registered as tfjs kernels for the 'cpu' backend: the slow but exact fallback when a
 * machine has no WebGPU, with the same kernel names (and so the same gradients) as the WGSL kernels.
 */
import {
  registerKernel,
  type KernelConfig,
  type NamedTensorInfoMap,
} from "@tensorflow/tfjs";
import { cpuOutput, cpuValues } from "../cpu_backend.js";
import { dimsOf, KERNELS, readAttrs } from "./attrs.js";
import {
  loraForwardReference,
  loraGradAReference,
  loraGradBReference,
  loraGradXReference,
  projectGradReference,
} from "./reference.js";

export function registerCpuKernels(): void {
  const configs: Omit<KernelConfig, "backendName">[] = [
    {
      kernelName: KERNELS.forward,
      kernelFunc: ({ inputs, backend, attrs }) => {
        const { x, W, A, B, bias } = inputs as NamedTensorInfoMap;
        const d = dimsOf(inputs);
        const bv = bias ? cpuValues(backend, bias) : undefined;
        const y = loraForwardReference(
          cpuValues(backend, x),
          cpuValues(backend, W),
          bv,
          cpuValues(backend, A),
          cpuValues(backend, B),
          d,
          readAttrs(attrs!),
        );
        return cpuOutput(backend, [d.T, d.OUT], y);
      },
    },
    {
      kernelName: KERNELS.projectGrad,
      kernelFunc: ({ inputs, backend }) => {
        const { dy, B } = inputs as NamedTensorInfoMap;
        const d = dimsOf(inputs);
        return cpuOutput(
          backend,
          [d.T, d.R],
          projectGradReference(
            cpuValues(backend, dy),
            cpuValues(backend, B),
            d,
          ),
        );
      },
    },
    {
      kernelName: KERNELS.gradX,
      kernelFunc: ({ inputs, backend, attrs }) => {
        const { dy, W, g, A } = inputs as NamedTensorInfoMap;
        const d = dimsOf(inputs);
        const dx = loraGradXReference(
          cpuValues(backend, dy),
          cpuValues(backend, W),
          cpuValues(backend, g),
          cpuValues(backend, A),
          d,
          readAttrs(attrs!),
        );
        return cpuOutput(backend, [d.T, d.IN], dx);
      },
    },
    {
      kernelName: KERNELS.gradA,
      kernelFunc: ({ inputs, backend, attrs }) => {
        const { g, x } = inputs as NamedTensorInfoMap;
        const d = dimsOf(inputs);
        return cpuOutput(
          backend,
          [d.R, d.IN],
          loraGradAReference(
            cpuValues(backend, g),
            cpuValues(backend, x),
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
          cpuValues(backend, dy),
          cpuValues(backend, x),
          cpuValues(backend, A),
          d,
          readAttrs(attrs!),
        );
        return cpuOutput(backend, [d.OUT, d.R], dB);
      },
    },
  ];
  for (const config of configs)
    registerKernel({ ...config, backendName: "cpu" });
}
