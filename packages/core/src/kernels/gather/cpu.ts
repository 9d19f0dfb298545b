/**
 * The gather kernels on tfjs's CPU backend: the codec's decode (`quant/codec.ts`), the same f32 arithmetic as
 * the WGSL readers. Only the gathered rows are decoded.
 */
import {
  registerKernel,
  type KernelFunc,
  type NamedTensorInfoMap,
  type TensorInfo,
} from "@tensorflow/tfjs";
import { cpuOutput } from "../cpu_backend.js";
import { decodeRange, type PackedHost } from "../quant/codec.js";
import { scaleInputs } from "../quant/inputs.js";
import { GATHER_KERNELS, readGatherAttrs, type GatherAttrs } from "./attrs.js";

interface ReadableBackend {
  readSync(dataId: object): unknown;
}

function read<T>(backend: unknown, t: TensorInfo): T {
  return (backend as ReadableBackend).readSync(t.dataId) as T;
}

/** Copies `count` elements of the table from flat index `start` into `out` at `at`. */
type RowReader = (
  start: number,
  count: number,
  out: Float32Array,
  at: number,
) => void;

/** A reader over the table as the kernel received it: f32 values, or a packed host view of its words. */
function tableReader(
  backend: unknown,
  inputs: NamedTensorInfoMap,
  a: GatherAttrs,
): RowReader {
  if (a.wFormat === "float32") {
    const values = read<Float32Array>(backend, inputs["W"]!);
    return (start, count, out, at) =>
      out.set(values.subarray(start, start + count), at);
  }
  const [s0, s1] = scaleInputs<TensorInfo>(inputs, a).map((t) =>
    read<Float32Array | Int32Array>(backend, t),
  );
  const host: PackedHost = {
    format: a.wFormat,
    shape: [a.rows, a.cols],
    data: read<Int32Array>(backend, inputs["W"]!),
    scales:
      a.wFormat === "float16"
        ? null
        : a.doubleQuant
          ? {
              kind: "double",
              codes: s0 as Int32Array,
              superScale: s1 as Float32Array,
              offset: a.wOffset,
            }
          : { kind: "absmax", absmax: s0 as Float32Array },
  };
  return (start, count, out, at) => decodeRange(host, start, count, out, at);
}

const gatherRows: KernelFunc = ({ inputs, backend, attrs }) => {
  const named = inputs as NamedTensorInfoMap;
  const a = readGatherAttrs(attrs!);
  const ids = read<Int32Array>(backend, named["ids"]!);
  const readRows = tableReader(backend, named, a);
  const out = new Float32Array(ids.length * a.cols);
  ids.forEach((id, r) => {
    const s = id - a.rowOffset;
    if (s >= 0 && s < a.rows) readRows(s * a.cols, a.cols, out, r * a.cols);
  });
  return cpuOutput(backend, [ids.length, a.cols], out);
};

const dequantize: KernelFunc = ({ inputs, backend, attrs }) => {
  const a = readGatherAttrs(attrs!);
  const out = new Float32Array(a.rows * a.cols);
  tableReader(backend, inputs as NamedTensorInfoMap, a)(0, out.length, out, 0);
  return cpuOutput(backend, [a.rows, a.cols], out);
};

export function registerGatherCpuKernels(): void {
  registerKernel({
    kernelName: GATHER_KERNELS.gatherRows,
    backendName: "cpu",
    kernelFunc: gatherRows,
  });
  registerKernel({
    kernelName: GATHER_KERNELS.dequantize,
    backendName: "cpu",
    kernelFunc: dequantize,
  });
}
