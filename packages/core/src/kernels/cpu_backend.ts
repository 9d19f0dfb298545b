/**
 * What webtune's CPU reference kernels use of tfjs's CPU backend: reading an input's values and making an output.
 */
import type { TensorInfo } from "@tensorflow/tfjs";

interface CpuBackend {
  readSync(dataId: object): unknown;
  makeTensorInfo(
    shape: number[],
    dtype: "float32",
    values: Float32Array,
  ): TensorInfo;
}

/** The f32 values of a kernel input on the CPU backend. */
export function cpuValues(
  backend: unknown,
  t: TensorInfo | undefined,
): Float32Array {
  return (backend as CpuBackend).readSync(t!.dataId) as Float32Array;
}

/** A kernel output on the CPU backend holding `data`. */
export function cpuOutput(
  backend: unknown,
  shape: number[],
  data: Float32Array,
): TensorInfo {
  return (backend as CpuBackend).makeTensorInfo(shape, "float32", data);
}
