/**
 * A step graph: the tensors of one training (or evaluation) step and the dispatches that compute them, recorded
 * in order by model code, as llm.c's gpt2_forward and gpt2_backward call their layer functions. Nothing runs
 * here: `plan.ts` lays the activations out in arenas by lifetime and `executor.ts` binds and replays the list.
 *
 * Where a tensor's bytes live is its kind:
 * - activation: planned, reused once its last reader is done; its contents do not outlive a run;
 * - input: written by the host before each run (token ids, labels);
 * - constant: uploaded once, when the graph is compiled (RoPE tables, index tables);
 * - external: bound where it already lives (frozen weights held by tfjs, the engine's training state);
 * - concat: other buffers' bytes one after another, copied once when the graph is compiled (a decoding graph's
 *   q, k and v weights as one projection); a graph with one must not outlive a change of its parts.
 */
import { ShapeError } from "../errors.js";
import type { Program, ProgramCall } from "../kernels/program.js";

export type Dtype = "f32" | "i32" | "u32";

export type TensorSource =
  | { kind: "activation" }
  | { kind: "input" }
  | { kind: "constant"; data: ArrayBufferView }
  | { kind: "external"; resolve: () => GPUBuffer }
  | { kind: "concat"; parts: { resolve: () => GPUBuffer; bytes: number }[] };

export class GraphTensor {
  constructor(
    readonly id: number,
    readonly name: string,
    readonly shape: readonly number[],
    readonly dtype: Dtype,
    readonly source: TensorSource,
  ) {}

  /** Elements. */
  get size(): number {
    return this.shape.reduce((n, d) => n * d, 1);
  }

  get bytes(): number {
    return this.size * 4;
  }

  /** Elements [offset, offset + length) of this tensor, bound as one array. */
  range(offset: number, length: number): TensorRange {
    if (offset < 0 || length <= 0 || offset + length > this.size)
      throw new ShapeError(
        `${this.name}: range [${offset}, ${offset + length}) is outside its ${this.size} elements.`,
      );
    return { tensor: this, offset, length };
  }
}

/** A contiguous range of a tensor's elements: what one binding of a dispatch sees. */
export interface TensorRange {
  tensor: GraphTensor;
  offset: number;
  length: number;
}

/** Elements [offset, offset + length) of a range. */
export function subRange(
  r: TensorRange,
  offset: number,
  length: number,
): TensorRange {
  if (offset < 0 || length <= 0 || offset + length > r.length)
    throw new ShapeError(
      `${r.tensor.name}: range [${offset}, ${offset + length}) is outside a range of ${r.length} elements.`,
    );
  return { tensor: r.tensor, offset: r.offset + offset, length };
}

export interface Dispatch {
  /** Which layer and op recorded it, for messages and profiles. */
  label: string;
  call: ProgramCall;
  /** One range per storage binding of the program, in its order. */
  bindings: TensorRange[];
}

/** The device limits a graph is checked against while it is recorded. */
export interface GraphLimits {
  maxStorageBufferBindingSize: number;
  maxStorageBuffersPerShaderStage: number;
  maxComputeWorkgroupsPerDimension: number;
}

export class StepGraph {
  readonly tensors: GraphTensor[] = [];
  readonly dispatches: Dispatch[] = [];
  /** Tensors whose values the host reads after a run; they live to the end of it. */
  readonly readbacks: GraphTensor[] = [];

  constructor(readonly limits: GraphLimits) {}

  private add(
    name: string,
    shape: readonly number[],
    dtype: Dtype,
    source: TensorSource,
  ): GraphTensor {
    if (shape.some((d) => !Number.isInteger(d) || d <= 0))
      throw new ShapeError(`${name}: shape [${shape.join(", ")}] is empty.`);
    const t = new GraphTensor(
      this.tensors.length,
      name,
      [...shape],
      dtype,
      source,
    );
    if (t.bytes > this.limits.maxStorageBufferBindingSize)
      throw new ShapeError(
        `${name} [${shape.join(", ")}] takes ${t.bytes} bytes, over this device's maxStorageBufferBindingSize ` +
          `(${this.limits.maxStorageBufferBindingSize}); use a smaller batch or sequence.`,
      );
    this.tensors.push(t);
    return t;
  }

  activation(name: string, shape: readonly number[], dtype: Dtype = "f32") {
    return this.add(name, shape, dtype, { kind: "activation" });
  }

  input(name: string, shape: readonly number[], dtype: Dtype = "i32") {
    return this.add(name, shape, dtype, { kind: "input" });
  }

  constant(
    name: string,
    shape: readonly number[],
    data: Float32Array | Int32Array | Uint32Array,
  ) {
    const dtype: Dtype =
      data instanceof Float32Array
        ? "f32"
        : data instanceof Int32Array
          ? "i32"
          : "u32";
    const t = this.add(name, shape, dtype, { kind: "constant", data });
    if (data.length !== t.size)
      throw new ShapeError(
        `${name}: ${data.length} values for shape [${shape.join(", ")}].`,
      );
    return t;
  }

  external(
    name: string,
    shape: readonly number[],
    resolve: () => GPUBuffer,
    dtype: Dtype = "f32",
  ) {
    return this.add(name, shape, dtype, { kind: "external", resolve });
  }

  /** A tensor made of `parts` one after another, copied when the graph is compiled. */
  concat(
    name: string,
    shape: readonly number[],
    parts: { resolve: () => GPUBuffer; bytes: number }[],
  ) {
    const t = this.add(name, shape, "f32", { kind: "concat", parts });
    const bytes = parts.reduce((n, p) => n + p.bytes, 0);
    if (bytes !== t.bytes)
      throw new ShapeError(
        `${name}: parts of ${bytes} bytes for shape [${shape.join(", ")}].`,
      );
    return t;
  }

  /** Keeps `t` to the end of the run, for the host to read. */
  readback(t: GraphTensor): void {
    if (t.source.kind !== "activation")
      throw new ShapeError(`${t.name}: only activations are read back.`);
    if (!this.readbacks.includes(t)) this.readbacks.push(t);
  }

  /** Appends one dispatch; `bindings` follow the program's storage bindings. */
  dispatch(
    label: string,
    call: ProgramCall,
    bindings: (GraphTensor | TensorRange)[],
  ): void {
    const p: Program = call.program;
    if (bindings.length !== p.storage.length)
      throw new ShapeError(
        `${label}: ${p.key} binds ${p.storage.length} arrays, got ${bindings.length}.`,
      );
    if (p.storage.length > this.limits.maxStorageBuffersPerShaderStage)
      throw new ShapeError(
        `${label}: ${p.key} binds ${p.storage.length} storage buffers; this device allows ` +
          `${this.limits.maxStorageBuffersPerShaderStage}.`,
      );
    const limit = this.limits.maxComputeWorkgroupsPerDimension;
    if (call.workgroups.some((d) => d > limit || d < 1))
      throw new ShapeError(
        `${label}: ${p.key} dispatches [${call.workgroups.join(", ")}] workgroups; this device allows 1 to ${limit} per dimension.`,
      );
    const ranges = bindings.map((b) =>
      b instanceof GraphTensor ? { tensor: b, offset: 0, length: b.size } : b,
    );
    ranges.forEach((r, i) => {
      const want = p.storage[i]!.element;
      const scalar = want === "vec4<f32>" ? "f32" : want;
      if (r.tensor.dtype !== scalar)
        throw new ShapeError(
          `${label}: ${p.key} binds ${p.storage[i]!.name} as ${want}, got ${r.tensor.name} (${r.tensor.dtype}).`,
        );
      if (want === "vec4<f32>" && (r.offset % 4 !== 0 || r.length % 4 !== 0))
        throw new ShapeError(
          `${label}: ${p.storage[i]!.name} is read as vec4, but ${r.tensor.name}'s range is not a multiple of 4.`,
        );
    });
    this.dispatches.push({ label, call, bindings: ranges });
  }
}

/** The limits a graph is recorded against, read from a device. */
export function graphLimits(device: GPUDevice): GraphLimits {
  const l = device.limits;
  return {
    maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
    maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
    maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
  };
}
