/**
 * The CPU reference registered as the fused AdamW kernel for tfjs's 'cpu' backend, under the same name as the
 * WGSL kernel.
 */
import {
  registerKernel,
  type NamedTensorInfoMap,
  type TensorInfo,
} from "@tensorflow/tfjs";
import { cpuOutput, cpuValues } from "../cpu_backend.js";
import { ADAMW_KERNEL, readScalars } from "./attrs.js";
import { adamwReference } from "./reference.js";

/** Registers the fused AdamW kernel with tfjs for the 'cpu' backend. */
export function registerCpuKernel(): void {
  registerKernel({
    kernelName: ADAMW_KERNEL,
    backendName: "cpu",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { param, grad, expAvg, expAvgSq } = inputs as NamedTensorInfoMap;
      const read = (t: TensorInfo | undefined) => cpuValues(backend, t);
      const out = adamwReference(
        {
          param: read(param),
          expAvg: read(expAvg),
          expAvgSq: read(expAvgSq),
        },
        read(grad),
        readScalars(attrs!),
      );
      const shape = param!.shape;
      return [out.param, out.expAvg, out.expAvgSq].map((values) =>
        cpuOutput(backend, shape, values),
      );
    },
  });
}
