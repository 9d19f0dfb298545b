/**
 * A compiled step graph: its activations placed in shared arenas, its constants uploaded, a pipeline per program,
 * one uniform buffer holding every dispatch's uniforms, and a bind group per dispatch, all made once. Running it
 * is then setPipeline / setBindGroup / dispatchWorkgroups per dispatch into a pass the caller owns: no buffer,
 * bind group or uniform is created or written per step.
 *
 * Tensors the host reads back live in a small buffer of the graph's own, not in the shared arenas.
 *
 * A bind group refers to buffers by identity, so it is remade (only) when one of them changes: an arena grew for
 * a larger graph, or an external tensor (a frozen weight) was replaced, as merging an adapter does.
 */
import { flushTfjs } from "../backend/interop.js";
import { DeviceError, ShapeError } from "../errors.js";
import { uniformBytes, writeUniforms } from "../kernels/program.js";
import {
  trackEngineBuffer,
  untrackEngineBuffer,
  type MemoryCategory,
} from "../runtime/memory.js";
import type { GraphTensor, StepGraph } from "./graph.js";
import { compileProgram, type CompiledProgram } from "./pipelines.js";
import {
  alignUp,
  planBuffers,
  type BufferPlan,
  type PlanOptions,
} from "./plan.js";

/** Read when used: in Node the GPU* globals exist only once the runtime has started. */
const storageUsage = () =>
  GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** Allocates a buffer the engine owns and counts it in `gpuMemory()` (untagged: activations and other). */
export function engineBuffer(
  device: GPUDevice,
  label: string,
  size: number,
  usage = storageUsage(),
  category?: MemoryCategory,
): GPUBuffer {
  const buffer = device.createBuffer({
    label,
    size: alignUp(Math.max(size, 4), 4),
    usage,
  });
  trackEngineBuffer(buffer, category);
  return buffer;
}

export function destroyEngineBuffer(buffer: GPUBuffer): void {
  untrackEngineBuffer(buffer);
  buffer.destroy();
}

/**
 * The arenas activations live in, shared by every graph of one training session: only one graph runs at a time,
 * and activations do not outlive a run, so a graph for a shorter batch reuses the longest one's bytes.
 */
export class ArenaPool {
  readonly buffers: GPUBuffer[] = [];
  /** Bumped whenever a buffer is replaced: graphs bound to the old ones rebind. */
  generation = 0;

  constructor(readonly device: GPUDevice) {}

  /** Makes arena i at least sizes[i] bytes. */
  ensure(sizes: number[]): void {
    sizes.forEach((size, i) => {
      const old = this.buffers[i];
      if (old && old.size >= size) return;
      if (old) destroyEngineBuffer(old);
      this.buffers[i] = engineBuffer(this.device, `webtune arena ${i}`, size);
      this.generation++;
    });
  }

  get bytes(): number {
    return this.buffers.reduce((n, b) => n + b.size, 0);
  }

  dispose(): void {
    for (const b of this.buffers) destroyEngineBuffer(b);
    this.buffers.length = 0;
    this.generation++;
  }
}

interface Location {
  buffer: () => GPUBuffer;
  byteOffset: number;
}

/** How a graph's activations are packed on `device`: its binding alignment, arenas no larger than a buffer. */
export function planOptions(device: GPUDevice): PlanOptions {
  return {
    alignment: Math.max(
      256,
      device.limits.minStorageBufferOffsetAlignment ?? 256,
    ),
    maxArenaBytes: Math.min(device.limits.maxBufferSize, 2 ** 31),
  };
}

export class CompiledGraph {
  readonly plan: BufferPlan;
  private readonly programs: CompiledProgram[];
  private readonly uniforms: GPUBuffer;
  private readonly uniformOffsets: number[];
  private readonly owned: GPUBuffer[] = [];
  private readonly locations = new Map<GraphTensor, Location>();
  private readonly inputs = new Map<GraphTensor, Location>();
  private readonly externals: { tensor: GraphTensor; bound: GPUBuffer }[] = [];
  private bindGroups: GPUBindGroup[] = [];
  private boundGeneration = -1;
  /** Rejects with a DeviceError if the device refused a program or a bind group of this graph. */
  checked: Promise<void> = Promise.resolve();

  constructor(
    readonly device: GPUDevice,
    readonly graph: StepGraph,
    private readonly arenas: ArenaPool,
    /** The step parameters every program with `stepParams` reads. */
    private readonly stepParams: GPUBuffer,
  ) {
    if (graph.dispatches.length === 0)
      throw new ShapeError("A step graph with no dispatches was compiled.");
    this.plan = planBuffers(graph, planOptions(device));
    arenas.ensure(this.plan.arenas);
    this.programs = graph.dispatches.map((d) =>
      compileProgram(device, d.call.program),
    );
    ({ buffer: this.uniforms, offsets: this.uniformOffsets } =
      this.writeUniformArena());
    this.placeTensors();
    this.bind();
  }

  /** Every dispatch's uniforms in one buffer, each at an offset the device can bind. */
  private writeUniformArena(): { buffer: GPUBuffer; offsets: number[] } {
    const align = this.device.limits.minUniformBufferOffsetAlignment ?? 256;
    const offsets: number[] = [];
    let size = 0;
    for (const d of this.graph.dispatches) {
      offsets.push(size);
      size = alignUp(size + uniformBytes(d.call.program), align);
    }
    const buffer = engineBuffer(
      this.device,
      "webtune uniforms",
      size,
      GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    );
    this.owned.push(buffer);
    const bytes = new ArrayBuffer(size);
    const view = new DataView(bytes);
    this.graph.dispatches.forEach((d, i) =>
      writeUniforms(d.call, view, offsets[i]!),
    );
    this.device.queue.writeBuffer(buffer, 0, bytes);
    return { buffer, offsets };
  }

  /**
   * Where every tensor lives: arenas, one buffer for the constants, one for the concatenations, one for the
   * inputs, or its owner's.
   */
  private placeTensors(): void {
    for (const [t, p] of this.plan.place)
      this.locations.set(t, {
        buffer: () => this.arenas.buffers[p.arena]!,
        byteOffset: p.offset,
      });
    const used = new Set(
      this.graph.dispatches.flatMap((d) => d.bindings.map((b) => b.tensor)),
    );
    const of = (kind: string) =>
      this.graph.tensors.filter((t) => t.source.kind === kind && used.has(t));
    const pack = (tensors: GraphTensor[], label: string, usage?: number) => {
      if (tensors.length === 0) return undefined;
      const offsets: number[] = [];
      let size = 0;
      for (const t of tensors) {
        offsets.push(size);
        size = alignUp(size + t.bytes, 256);
      }
      const buffer = engineBuffer(this.device, label, size, usage);
      this.owned.push(buffer);
      tensors.forEach((t, i) =>
        this.locations.set(t, {
          buffer: () => buffer,
          byteOffset: offsets[i]!,
        }),
      );
      return buffer;
    };
    const constants = of("constant");
    const constantBuffer = pack(constants, "webtune constants");
    for (const t of constants) {
      const { data } = t.source as { data: ArrayBufferView };
      this.device.queue.writeBuffer(
        constantBuffer!,
        this.locations.get(t)!.byteOffset,
        data.buffer,
        data.byteOffset,
        data.byteLength,
      );
    }
    pack(this.graph.readbacks, "webtune results");
    const inputs = of("input");
    pack(inputs, "webtune inputs");
    for (const t of inputs) this.inputs.set(t, this.locations.get(t)!);
    const concats = of("concat");
    const concatBuffer = pack(concats, "webtune concatenated weights");
    if (concats.length > 0) {
      // The parts may be tfjs tensors whose upload is still recorded, not submitted.
      flushTfjs();
      const encoder = this.device.createCommandEncoder({
        label: "webtune concat",
      });
      for (const t of concats) {
        let at = this.locations.get(t)!.byteOffset;
        for (const part of (
          t.source as { parts: { resolve: () => GPUBuffer; bytes: number }[] }
        ).parts) {
          encoder.copyBufferToBuffer(
            part.resolve(),
            0,
            concatBuffer!,
            at,
            part.bytes,
          );
          at += part.bytes;
        }
      }
      this.device.queue.submit([encoder.finish()]);
    }
    for (const t of of("external")) {
      const { resolve } = t.source as { resolve: () => GPUBuffer };
      this.locations.set(t, { buffer: resolve, byteOffset: 0 });
      this.externals.push({ tensor: t, bound: resolve() });
    }
  }

  /** The buffer and byte offset of a tensor's elements (for readback copies and tests). */
  locate(t: GraphTensor): { buffer: GPUBuffer; byteOffset: number } {
    const at = this.locations.get(t);
    if (!at) throw new ShapeError(`${t.name} is not bound by this graph.`);
    return { buffer: at.buffer(), byteOffset: at.byteOffset };
  }

  /** Queues the host's values of an input tensor for the next run: one writeBuffer. */
  writeInput(t: GraphTensor, data: Int32Array | Float32Array): void {
    const at = this.inputs.get(t);
    if (!at) throw new ShapeError(`${t.name} is not an input of this graph.`);
    if (data.length !== t.size)
      throw new ShapeError(
        `${t.name}: ${data.length} values for [${t.shape.join(", ")}].`,
      );
    this.device.queue.writeBuffer(
      at.buffer(),
      at.byteOffset,
      data.buffer,
      data.byteOffset,
      data.byteLength,
    );
  }

  /** True when a buffer a bind group refers to has changed since they were made. */
  private stale(): boolean {
    if (this.boundGeneration !== this.arenas.generation) return true;
    for (const e of this.externals)
      if (
        e.tensor.source.kind === "external" &&
        e.tensor.source.resolve() !== e.bound
      )
        return true;
    return false;
  }

  private bind(): void {
    this.device.pushErrorScope("validation");
    for (const e of this.externals)
      e.bound = (e.tensor.source as { resolve: () => GPUBuffer }).resolve();
    this.bindGroups = this.graph.dispatches.map((d, i) => {
      const entries: GPUBindGroupEntry[] = d.bindings.map((r, binding) => {
        const at = this.locations.get(r.tensor)!;
        return {
          binding,
          resource: {
            buffer: at.buffer(),
            offset: at.byteOffset + r.offset * 4,
            size: r.length * 4,
          },
        };
      });
      entries.push({
        binding: d.bindings.length,
        resource: {
          buffer: this.uniforms,
          offset: this.uniformOffsets[i]!,
          size: uniformBytes(d.call.program),
        },
      });
      if (d.call.program.stepParams)
        entries.push({
          binding: d.bindings.length + 1,
          resource: { buffer: this.stepParams },
        });
      return this.device.createBindGroup({
        label: d.label,
        layout: this.programs[i]!.layout,
        entries,
      });
    });
    this.boundGeneration = this.arenas.generation;
    const bound = this.device.popErrorScope().then((error) => {
      if (error)
        throw new DeviceError(
          `A bind group of the step graph was refused (${error.message}); the graph's buffers and programs disagree.`,
        );
    });
    this.checked = Promise.all([
      this.checked,
      bound,
      ...this.programs.map((p) => p.checked),
    ]).then(() => undefined);
    this.checked.catch(() => undefined);
  }

  /** Records every dispatch, in order, into `pass`. */
  encode(pass: GPUComputePassEncoder): void {
    if (this.stale()) this.bind();
    let current: GPUComputePipeline | undefined;
    this.graph.dispatches.forEach((d, i) => {
      const { pipeline } = this.programs[i]!;
      if (pipeline !== current) pass.setPipeline((current = pipeline));
      pass.setBindGroup(0, this.bindGroups[i]!);
      pass.dispatchWorkgroups(...d.call.workgroups);
    });
  }

  dispose(): void {
    for (const b of this.owned) destroyEngineBuffer(b);
    this.owned.length = 0;
    this.bindGroups = [];
  }
}
