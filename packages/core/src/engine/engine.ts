/**
 * The engine: compiled step graphs on one device, the arenas they share, the step-parameter buffer they read, and
 * the loop of a run: write the inputs and step parameters, encode every graph into one compute pass, copy what
 * the host reads into a staging buffer, submit once, and map the staging buffer later (so that step N's readback
 * overlaps step N+1).
 */
import { flushTfjs } from "../backend/interop.js";
import { DeviceError, ShapeError } from "../errors.js";
import {
  encodeStepParams,
  STEP_PARAMS_BYTES,
  type StepParams,
} from "../kernels/step_params.js";
import {
  ArenaPool,
  CompiledGraph,
  destroyEngineBuffer,
  engineBuffer,
} from "./executor.js";
import type { GraphTensor, StepGraph } from "./graph.js";

/** What one run reads back: values of the requested tensors, once the GPU is done. */
export type Readback = Promise<Float32Array[]>;

export interface RunRequest {
  /** The graphs to run, in order, in one pass. */
  graphs: CompiledGraph[];
  /** Host values of input tensors (of any of the graphs). */
  inputs?: [CompiledGraph, GraphTensor, Int32Array | Float32Array][];
  /** The step parameters for this run; omitted: those of the previous run stay. */
  params?: StepParams;
  /** Tensors to copy back (each graph's readbacks), as [graph, tensor]. */
  readback?: [CompiledGraph, GraphTensor][];
  /** Buffer copies to make before the pass (a KV cache's rows replicated for continuations). */
  copies?: BufferCopy[];
}

/** `size` bytes from `from` at `fromOffset` to `to` at `toOffset` (two different buffers). */
export interface BufferCopy {
  from: GPUBuffer;
  fromOffset: number;
  to: GPUBuffer;
  toOffset: number;
  size: number;
}

export class Engine {
  readonly arenas: ArenaPool;
  readonly stepParams: GPUBuffer;
  private readonly staging: GPUBuffer[] = [];
  private readonly graphs = new Set<CompiledGraph>();
  private disposed = false;

  constructor(readonly device: GPUDevice) {
    this.arenas = new ArenaPool(device);
    this.stepParams = engineBuffer(
      device,
      "webtune step parameters",
      STEP_PARAMS_BYTES,
      GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    );
  }

  /** Plans and binds a graph once; run it any number of times. */
  compile(graph: StepGraph): CompiledGraph {
    this.checkLive();
    const compiled = new CompiledGraph(
      this.device,
      graph,
      this.arenas,
      this.stepParams,
    );
    this.graphs.add(compiled);
    return compiled;
  }

  /** Frees a graph's own buffers (the arenas stay, for the others). */
  release(graph: CompiledGraph): void {
    graph.dispose();
    this.graphs.delete(graph);
  }

  /**
   * One run: at most one writeBuffer per input and one for the step parameters, one command encoder (the copies
   * asked for, then one compute pass), one submit. Resolves with the read-back values when the GPU has finished them; the host does not wait.
   */
  run(request: RunRequest): Readback {
    this.checkLive();
    // tfjs may hold recorded work (a weight's first upload, an assign) that this run must see.
    flushTfjs();
    for (const [graph, tensor, data] of request.inputs ?? [])
      graph.writeInput(tensor, data);
    if (request.params)
      this.device.queue.writeBuffer(
        this.stepParams,
        0,
        encodeStepParams(request.params),
      );
    this.device.pushErrorScope("validation");
    const encoder = this.device.createCommandEncoder({ label: "webtune step" });
    for (const c of request.copies ?? [])
      encoder.copyBufferToBuffer(
        c.from,
        c.fromOffset,
        c.to,
        c.toOffset,
        c.size,
      );
    const pass = encoder.beginComputePass();
    for (const g of request.graphs) g.encode(pass);
    pass.end();
    const reads = request.readback ?? [];
    const offsets: number[] = [];
    let bytes = 0;
    for (const [, tensor] of reads) {
      offsets.push(bytes);
      bytes += tensor.bytes;
    }
    const staging = reads.length > 0 ? this.takeStaging(bytes) : null;
    reads.forEach(([graph, tensor], i) => {
      const at = graph.locate(tensor);
      encoder.copyBufferToBuffer(
        at.buffer,
        at.byteOffset,
        staging!,
        offsets[i]!,
        tensor.bytes,
      );
    });
    this.device.queue.submit([encoder.finish()]);
    const submitted = this.device.popErrorScope().then((error) => {
      if (error)
        throw new DeviceError(
          `A step was refused by the device (${error.message}); nothing it computed is valid.`,
        );
    });
    const checks = Promise.all([
      submitted,
      ...request.graphs.map((g) => g.checked),
    ]);
    if (!staging) return checks.then(() => []);
    const mapped = staging.mapAsync(GPUMapMode.READ, 0, bytes).then(() => {
      const values = new Float32Array(
        staging.getMappedRange(0, bytes).slice(0),
      );
      staging.unmap();
      this.staging.push(staging);
      return reads.map(([, t], i) =>
        values.subarray(offsets[i]! / 4, offsets[i]! / 4 + t.size),
      );
    });
    return Promise.all([checks, mapped]).then(([, values]) => values);
  }

  /** A free staging buffer of at least `bytes`: reused, so a steady loop creates none. */
  private takeStaging(bytes: number): GPUBuffer {
    const i = this.staging.findIndex((b) => b.size >= bytes);
    if (i >= 0) return this.staging.splice(i, 1)[0]!;
    return engineBuffer(
      this.device,
      "webtune readback",
      Math.max(bytes, 64),
      GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    );
  }

  private checkLive(): void {
    if (this.disposed)
      throw new ShapeError("This engine was disposed; create a new one.");
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const g of this.graphs) g.dispose();
    this.graphs.clear();
    this.arenas.dispose();
    destroyEngineBuffer(this.stepParams);
    for (const b of this.staging) destroyEngineBuffer(b);
    this.staging.length = 0;
  }
}
