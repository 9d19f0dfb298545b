/**
 * The gather kernels on tfjs's CPU backend: the codec's decode (`quant/codec.ts`), the same f32 arithmetic as
 * the WGSL readers. Only the gathered rows are decoded. `gatherRowsInto` is also the CPU reference of the compiled
 * step's embedding lookup (`program.ts`).
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
export type RowReader = (
  start: number,
  count: number,
  out: Float32Array,
  at: number,
) => void;

/** A reader over a table in host memory: f32 values, or packed words decoded as the WGSL readers do. */
export function hostRowReader(table: Float32Array | PackedHost): RowReader {
  if (table instanceof Float32Array)
    return (start, count, out, at) =>
      out.set(table.subarray(start, start + count), at);
  return (start, count, out, at) => decodeRange(table, start, count, out, at);
}

/** A reader over the table as the kernel received it: f32 values, or a packed host view of its words. */
function tableReader(
  backend: unknown,
  inputs: NamedTensorInfoMap,
  a: GatherAttrs,
): RowReader {
  if (a.wFormat === "float32")
    return hostRowReader(read<Float32Array>(backend, inputs["W"]!));
  const [s0, s1] = scaleInputs<TensorInfo>(inputs, a).map((t) =>
    read<Float32Array | Int32Array>(backend, t),
  );
  return hostRowReader({
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
  });
}

/** The embedding lookup's extras: a factor on the table's values, then a positional row added. */
export interface GatherExtras {
  /** Multiplies each value read, in f32 (Gemma's √C). Default 1. */
  scale?: number;
  /** [≥ T, cols] f32: row n % T is added to output row n (GPT-2's wpe for a [B, T] batch). */
  pos?: Float32Array;
  T?: number;
}

/**
 * out[n, :] = table(ids[n] − rowOffset, :)·scale + pos[n % T, :] for the ids inside [0, rows); the other rows of
 * `out` [N, cols] are left as they are. In f32, as the WGSL programs compute it: the CPU kernel's body and the
 * reference of the compiled step's embedding lookup (`program.ts`).
 */
export function gatherRowsInto(
  readRows: RowReader,
  ids: ArrayLike<number>,
  a: { rows: number; cols: number; rowOffset: number },
  out: Float32Array,
  extras: GatherExtras = {},
): void {
  const { cols } = a;
  const scale = Math.fround(extras.scale ?? 1);
  for (let n = 0; n < ids.length; n++) {
    const s = ids[n]! - a.rowOffset;
    if (s < 0 || s >= a.rows) continue;
    readRows(s * cols, cols, out, n * cols);
    if (scale === 1 && !extras.pos) continue;
    const p = (n % (extras.T ?? 1)) * cols;
    for (let c = 0; c < cols; c++) {
      const v = Math.fround(out[n * cols + c]! * scale);
      out[n * cols + c] = extras.pos ? v + extras.pos[p + c]! : v;
    }
  }
}

const gatherRows: KernelFunc = ({ inputs, backend, attrs }) => {
  const named = inputs as NamedTensorInfoMap;
  const a = readGatherAttrs(attrs!);
  const ids = read<Int32Array>(backend, named["ids"]!);
  // Zeros where an id falls outside the table.
  const out = new Float32Array(ids.length * a.cols);
  gatherRowsInto(tableReader(backend, named, a), ids, a, out);
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
