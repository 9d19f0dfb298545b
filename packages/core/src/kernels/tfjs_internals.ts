/**
 * The only file that reaches into tfjs-backend-webgpu beyond its documented surface: running a custom WGSL
 * program, recording a dispatch with several outputs into tfjs's command encoder, releasing an intermediate,
 * trimming the buffer pool, and the shape of the header tfjs writes above every program's WGSL.
 * If a tfjs upgrade moves any of this, `test/unit/kernels/tfjs_internals.test.ts` fails loudly.
 */
import * as tf from "@tensorflow/tfjs";
import type {
  WebGPUBackend,
  WebGPUProgram,
} from "@tensorflow/tfjs-backend-webgpu";
import { ShapeError } from "../errors.js";

export type { WebGPUProgram };
export type TensorInfo = tf.TensorInfo;

/** A uniform value appended after tfjs's own (NaN, Infinity, shapes and strides), in `program.uniforms` order. */
export interface ProgramUniform {
  type: "int32" | "uint32" | "float32";
  data: number[];
}

/** tfjs declares storage bindings in this order: `result` first, then `program.variableNames`. */
export const OUTPUT_BINDING_NAME = "result";

/** The backend a kernel function received, checked to be tfjs-backend-webgpu. */
export function webgpuBackendOf(backend: unknown): WebGPUBackend {
  const b = backend as Partial<WebGPUBackend>;
  if (typeof b.runWebGPUProgram !== "function" || b.device === undefined) {
    throw new ShapeError(
      "A webtune WebGPU kernel was invoked on a backend that is not tfjs-backend-webgpu.",
    );
  }
  return backend as WebGPUBackend;
}

/**
 * Runs one WGSL program. tfjs prepends its header (bindings, a `Uniforms` struct with every input's shape, then
 * `program.uniforms`) and caches the pipeline by `program.shaderKey`, so shapes must live in uniforms.
 */
export function runProgram(
  backend: WebGPUBackend,
  program: WebGPUProgram,
  inputs: TensorInfo[],
  uniforms: ProgramUniform[],
): TensorInfo {
  const limit = backend.device.limits.maxComputeWorkgroupsPerDimension;
  if (program.dispatch.some((d) => d > limit)) {
    throw new ShapeError(
      `${program.constructor.name}: dispatch [${program.dispatch.join(", ")}] exceeds this device's ` +
        `maxComputeWorkgroupsPerDimension (${limit}); split the batch.`,
    );
  }
  return backend.runWebGPUProgram(program, inputs, "float32", uniforms);
}

/** Frees an intermediate a kernel made and will not return. */
export function disposeIntermediate(
  backend: WebGPUBackend,
  info: TensorInfo,
): void {
  backend.disposeData(info.dataId);
}

/** The private part of WebGPUBackend that `recordDispatch` drives, as tfjs's own `recordAndSubmit` does. */
interface CommandRecorder {
  device: GPUDevice;
  commandEncoder: GPUCommandEncoder | null;
  computePassEncoder: GPUComputePassEncoder | null;
  dispatchCountInPass: number;
  /** Data whose release tfjs defers until the commands that use them are submitted. */
  commandQueueOwnedIds: WeakSet<object>;
  /** Set while `tf.time`/`tf.profile` measure kernels: every pass is then ended after one dispatch. */
  activeTimers: unknown;
  uploadToGPU(dataId: object): void;
  tensorToBinding(info: TensorInfo): GPUBindingResource;
  makeUniforms(uniforms: ProgramUniform[]): GPUBufferBinding;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
}

/** One dispatch of a pipeline built by `computePipeline`, with bindings a tfjs program cannot declare. */
export interface StorageDispatch {
  pipeline: GPUComputePipeline;
  /** Bound read-only at bindings 0, 1, ... */
  inputs: TensorInfo[];
  /** Fresh tensors from `backend.makeTensorInfo`, bound read_write after the inputs; the dispatch fills them. */
  outputs: TensorInfo[];
  /** One uniform struct, bound last, laid out as tfjs lays out a program's uniforms. */
  uniforms: ProgramUniform[];
  workgroups: [number, number, number];
}

/**
 * Records one dispatch into tfjs's command encoder, in order with tfjs's own programs, with the same
 * bookkeeping as tfjs's `recordAndSubmit`: inputs uploaded, outputs allocated from the buffer pool, their
 * release deferred until submission, a submit every WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE dispatches. For kernels
 * that write several outputs in one pass (a tfjs program writes one). Outputs must not alias inputs: WebGPU
 * rejects a buffer bound both read-only and writable in one dispatch.
 */
export function recordDispatch(
  backend: WebGPUBackend,
  dispatch: StorageDispatch,
): void {
  const b = backend as unknown as CommandRecorder;
  // tfjs's compile-only warm-up mode records nothing either.
  if (tf.env().getBool("WEBGPU_ENGINE_COMPILE_ONLY")) return;
  const limit = b.device.limits.maxComputeWorkgroupsPerDimension;
  if (dispatch.workgroups.some((d) => d > limit))
    throw new ShapeError(
      `dispatch [${dispatch.workgroups.join(", ")}] exceeds this device's maxComputeWorkgroupsPerDimension (${limit}).`,
    );
  const tensors = [...dispatch.inputs, ...dispatch.outputs];
  for (const t of tensors) b.uploadToGPU(t.dataId);
  const resources = [
    ...tensors.map((t) => b.tensorToBinding(t)),
    b.makeUniforms(dispatch.uniforms),
  ];
  for (const t of tensors) b.commandQueueOwnedIds.add(t.dataId);
  const bindGroup = b.device.createBindGroup({
    layout: dispatch.pipeline.getBindGroupLayout(0),
    entries: resources.map((resource, binding) => ({ binding, resource })),
  });
  b.ensureCommandEncoderReady();
  b.computePassEncoder ??= b.commandEncoder!.beginComputePass({});
  const pass = b.computePassEncoder;
  pass.setPipeline(dispatch.pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(...dispatch.workgroups);
  b.dispatchCountInPass++;
  const timing = b.activeTimers != null;
  const batch = tf.env().getNumber("WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE");
  if (timing || b.dispatchCountInPass >= batch) {
    b.endComputePassEncoder();
    // While timing, tfjs submits when it resolves its next timestamp query.
    if (!timing) b.submitQueue();
  }
}

const pipelines = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();

/**
 * A compute pipeline for complete WGSL (entry point `main`), built once per device and key. Printed under
 * WEBGPU_PRINT_SHADER as tfjs prints its programs ('all', or a comma-separated list of key substrings).
 */
export function computePipeline(
  backend: WebGPUBackend,
  key: string,
  code: () => string,
): GPUComputePipeline {
  const device = backend.device;
  let cache = pipelines.get(device);
  if (!cache) pipelines.set(device, (cache = new Map()));
  let pipeline = cache.get(key);
  if (pipeline) return pipeline;
  const source = code();
  const print = String(tf.env().get("WEBGPU_PRINT_SHADER")).toLowerCase();
  if (
    print !== "" &&
    (print === "all" ||
      print.split(",").some((k) => key.toLowerCase().includes(k)))
  ) {
    console.group(key);
    console.debug(source);
    console.groupEnd();
  }
  pipeline = device.createComputePipeline({
    label: key,
    layout: "auto",
    compute: {
      module: device.createShaderModule({ label: key, code: source }),
      entryPoint: "main",
    },
  });
  cache.set(key, pipeline);
  return pipeline;
}

/** The tfjs kernel-function signature, re-exported so kernel files need not import tfjs internals themselves. */
export type KernelFunc = tf.KernelFunc;
export type NamedAttrMap = tf.NamedAttrMap;

/** What tfjs-backend-webgpu's BufferManager keeps of released buffers: a list per (size, usage), never freed. */
interface BufferPool {
  freeBuffers: Map<string, GPUBuffer[]>;
  numFreeBuffers: number;
  numBytesAllocated: number;
  numBytesUsed: number;
  acquireBuffer(size: number, usage: number, ...rest: unknown[]): GPUBuffer;
}

const MiB = 1 << 20;

/** What webtune records about a pool: the (size, usage) pairs asked for since the last trim, and the peak in use. */
interface PoolRecord {
  requested: Set<string>;
  /** The most bytes of buffers in use at once since `resetPeakBufferBytes`. */
  peakUsed: number;
  /** False until the first trim call: the first call starts the request bookkeeping and frees nothing. */
  trimStarted: boolean;
}

const records = new WeakMap<BufferPool, PoolRecord>();

/** The record of a pool, wrapping its `acquireBuffer` once so that every buffer handed out is seen. */
function recordOf(pool: BufferPool): PoolRecord {
  const seen = records.get(pool);
  if (seen) return seen;
  const record: PoolRecord = {
    requested: new Set(),
    peakUsed: pool.numBytesUsed,
    trimStarted: false,
  };
  records.set(pool, record);
  const acquire = pool.acquireBuffer.bind(pool);
  pool.acquireBuffer = (size, usage, ...rest) => {
    record.requested.add(`${size}:${usage}`);
    const buffer = acquire(size, usage, ...rest);
    if (pool.numBytesUsed > record.peakUsed)
      record.peakUsed = pool.numBytesUsed;
    return buffer;
  };
  return record;
}

function webgpuPool(): BufferPool | undefined {
  if (tf.getBackend() !== "webgpu") return undefined;
  const pool = (tf.backend() as unknown as { bufferManager?: BufferPool })
    .bufferManager;
  return pool?.freeBuffers instanceof Map ? pool : undefined;
}

/** GPU buffer bytes of tfjs-backend-webgpu: in use by live data, allocated (pool included), and peak in use. */
export interface BufferBytes {
  used: number;
  allocated: number;
  peakUsed: number;
}

/**
 * Buffer bytes on the WebGPU backend, read from its buffer manager (tfjs's own `tf.memory()` counts tensors, and
 * counts a reshaped view twice); undefined on other backends. The peak counts from the first call (or
 * `resetPeakBufferBytes`), and includes buffers whose release tfjs defers until their commands are submitted.
 */
export function bufferBytes(): BufferBytes | undefined {
  const pool = webgpuPool();
  if (!pool) return undefined;
  const record = recordOf(pool);
  return {
    used: pool.numBytesUsed,
    allocated: pool.numBytesAllocated,
    peakUsed: Math.max(record.peakUsed, pool.numBytesUsed),
  };
}

/** Starts a new peak: from now on, `bufferBytes().peakUsed` is the most in use since this call. */
export function resetPeakBufferBytes(): void {
  const pool = webgpuPool();
  if (pool) recordOf(pool).peakUsed = pool.numBytesUsed;
}

/**
 * Destroys the GPU buffers tfjs keeps for reuse whose size nothing asked for since the previous call, when the
 * pool holds more than `floorBytes` and more than the buffers in use; returns the bytes freed.
 * tfjs pools every released buffer by its exact size and never frees one, so work whose shapes vary (padded
 * batches of different lengths, evaluation, generation with a growing KV cache) grows the pool without bound: on
 * a CPU adapter, until the process runs out of memory. Work that repeats its shapes between calls (training steps
 * of one batch shape) keeps its pool: destroying it made every step allocate its activations again (142 ms of a
 * 1.4 s gpt2 step on an H200). The first call on a backend starts the bookkeeping and frees nothing. Buffers in
 * use are not touched; WebGPU defers the release of a destroyed buffer until submitted work that reads it is done.
 * A no-op on other backends.
 */
export function trimBufferPool(floorBytes = 256 * MiB): number {
  const pool = webgpuPool();
  if (!pool) return 0;
  const record = recordOf(pool);
  const recent = record.requested;
  if (!record.trimStarted) {
    record.trimStarted = true;
    recent.clear();
    return 0;
  }
  let pooled = 0;
  for (const list of pool.freeBuffers.values())
    for (const buffer of list) pooled += buffer.size;
  let freed = 0;
  if (pooled > Math.max(floorBytes, pool.numBytesUsed)) {
    // The keys stay: tfjs takes an empty map to mean "disposed" and would stop pooling.
    for (const list of pool.freeBuffers.values()) {
      const first = list[0];
      if (!first || recent.has(`${first.size}:${first.usage}`)) continue;
      for (const buffer of list) {
        freed += buffer.size;
        buffer.destroy();
      }
      pool.numFreeBuffers -= list.length;
      list.length = 0;
    }
    pool.numBytesAllocated -= freed;
  }
  recent.clear();
  return freed;
}

/** tfjs-core's record of one kernel call on the gradient tape. */
interface TapeNode {
  id: number;
  kernelName: string;
  inputs: Record<string, tf.Tensor>;
  outputs: tf.Tensor[];
  saved?: tf.Tensor[];
  gradient?: (dys: (tf.Tensor | null)[]) => Record<string, () => tf.Tensor>;
}

/** The part of tfjs-core's Engine that `engine.gradients` drives. */
interface TapeEngine {
  state: { activeTape: TapeNode[] | null; gradientDepth: number };
  startTape(): void;
  endTape(): void;
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  tidy<T extends tf.TensorContainer>(name: string, f: () => T): T;
}

/** The nodes on a path from some x to y, each with only the inputs that depend on an x (tfjs's own filter). */
function nodesFromXToY(
  tape: TapeNode[],
  xs: tf.Tensor[],
  y: tf.Tensor,
): TapeNode[] {
  const fromX = new Set(xs.map((x) => x.id));
  const nodesFromX = new Set<number>();
  for (const node of tape) {
    if (Object.values(node.inputs).some((t) => fromX.has(t.id))) {
      nodesFromX.add(node.id);
      for (const o of node.outputs) fromX.add(o.id);
    }
  }
  const toY = new Set([y.id]);
  const nodesToY = new Set<number>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i]!;
    if (node.outputs.some((o) => toY.has(o.id))) {
      nodesToY.add(node.id);
      for (const t of Object.values(node.inputs)) toY.add(t.id);
    }
  }
  return tape
    .filter((n) => nodesFromX.has(n.id) && nodesToY.has(n.id))
    .map((n) => ({
      ...n,
      inputs: Object.fromEntries(
        Object.entries(n.inputs).filter(([, t]) => fromX.has(t.id)),
      ),
    }));
}

function disposeSaved(node: TapeNode): void {
  for (const t of node.saved ?? []) t.dispose();
}

/**
 * `tf.engine().gradients` with the same results, but a backward pass that frees memory as it goes. tfjs keeps
 * every tensor the forward pass saved, and every intermediate gradient, until the whole backward pass ends: for a
 * 32-layer model that doubles the peak. Here a node's saved tensors and its outputs' gradients are disposed as
 * soon as the node's input gradients exist (no other node reads them), and the saved tensors of nodes that lie
 * on no path from xs to y are disposed before the backward pass starts. Nested inside another backward pass (as a
 * checkpointed block's recomputation is), the outer tape is kept and restored.
 */
export function gradientsFreeingAsTheyGo(
  f: () => tf.Tensor,
  xs: tf.Tensor[],
  dy?: tf.Tensor,
): { value: tf.Tensor; grads: (tf.Tensor | null)[] } {
  const engine = tf.engine() as unknown as TapeEngine;
  const outerTape = engine.state.activeTape;
  // Higher-order gradients (an enclosing tape still recording) need every saved tensor until the end.
  const eager = engine.state.gradientDepth === 0;
  try {
    const y = engine.scopedRun(
      () => engine.startTape(),
      () => engine.endTape(),
      () => engine.tidy("forward", f),
    );
    const tape = engine.state.activeTape ?? [];
    const path = nodesFromXToY(tape, xs, y);
    const onPath = new Set(path.map((n) => n.id));
    if (eager) for (const n of tape) if (!onPath.has(n.id)) disposeSaved(n);
    return engine.tidy("backward", () => {
      const seed = dy ?? tf.onesLike(y);
      const grads = new Map<number, tf.Tensor>([[y.id, seed]]);
      const keep = new Set([seed, ...xs].map((t) => t.id));
      for (let i = path.length - 1; i >= 0; i--) {
        const node = path[i]!;
        backpropNode(node, grads, engine);
        if (!eager) continue;
        disposeSaved(node);
        for (const o of node.outputs) {
          const g = grads.get(o.id);
          if (g && !keep.has(o.id) && g !== seed) {
            g.dispose();
            grads.delete(o.id);
          }
        }
      }
      const out = xs.map((x) => grads.get(x.id) ?? null);
      if (eager) for (const n of tape) disposeSaved(n);
      return { value: y, grads: out } as unknown as tf.TensorContainer;
    }) as unknown as { value: tf.Tensor; grads: (tf.Tensor | null)[] };
  } finally {
    if (eager) engine.state.activeTape = outerTape;
  }
}

/** One node of the backward pass, as tfjs's `backpropagateGradients` does it: dys in, input gradients added up. */
function backpropNode(
  node: TapeNode,
  grads: Map<number, tf.Tensor>,
  engine: TapeEngine,
): void {
  if (!node.gradient)
    throw new ShapeError(
      `Cannot compute gradient: gradient function not found for ${node.kernelName}.`,
    );
  const names = Object.keys(node.inputs);
  // One scope for the node: a customGrad computes its gradients eagerly inside `node.gradient`, and those
  // intermediates would otherwise live until the whole backward pass ends.
  const dys = node.outputs.map((o) => grads.get(o.id) ?? null);
  const computed = engine.tidy(`grad ${node.kernelName}`, () => {
    const inputGrads = node.gradient!(dys);
    return names.map((name) => {
      const grad = inputGrads[name];
      if (!grad)
        throw new ShapeError(
          `Cannot backprop through input ${name} of ${node.kernelName}.`,
        );
      return grad();
    });
  });
  // A gradient passed straight through (dx = dy) gets its own handle: the node's dys are disposed after it.
  const dxs = computed.map((dx) => (dys.includes(dx) ? dx.clone() : dx));
  names.forEach((name, i) => {
    const x = node.inputs[name]!;
    const dx = dxs[i]!;
    if (dx.shape.join() !== x.shape.join())
      throw new ShapeError(
        `The gradient of ${node.kernelName}'s input ${name} is [${dx.shape.join(", ")}], but the input is [${x.shape.join(", ")}].`,
      );
    const sum = grads.get(x.id);
    if (!sum) grads.set(x.id, dx);
    else {
      grads.set(x.id, tf.add(sum, dx));
      sum.dispose();
      dx.dispose();
    }
  });
}

/**
 * `tf.variableGrads` on `gradientsFreeingAsTheyGo`: the loss and the gradient of each variable that reaches it,
 * keyed by variable name (variables the loss does not read get none, as in tfjs).
 */
export function variableGradsFreeingAsTheyGo(
  f: () => tf.Scalar,
  variables: tf.Variable[],
): { value: tf.Scalar; grads: tf.NamedTensorMap } {
  const trained = variables.filter((v) => v.trainable);
  const { value, grads } = gradientsFreeingAsTheyGo(f, trained);
  const named: tf.NamedTensorMap = {};
  trained.forEach((v, i) => {
    const g = grads[i];
    if (g) named[v.name] = g;
  });
  if (Object.keys(named).length === 0 && trained.length > 0) {
    tf.dispose(value);
    throw new ShapeError(
      "None of the trainable variables reaches the loss: check that the adapter is active and applies to the model.",
    );
  }
  return { value: value as tf.Scalar, grads: named };
}

/**
 * Kernels whose tfjs gradient reads only the shapes of what it saved (checked against tfjs-core's
 * gradients/*_grad.js): Reshape, ExpandDims, Slice, Concat and Pack need the input shapes, Add and Sub the
 * operand shapes for broadcasting, Sum and Mean the input shape.
 */
const SHAPE_ONLY_GRADIENTS = new Set([
  "Reshape",
  "ExpandDims",
  "Slice",
  "Concat",
  "Pack",
  "Add",
  "Sub",
  "Sum",
  "Mean",
]);

/** What a shape-only gradient reads of a saved tensor: its shape, with no data behind it. */
interface ShapeStub {
  shape: number[];
  rank: number;
  size: number;
  dtype: tf.DataType;
  isDisposed: boolean;
  dispose(): void;
}

function shapeStub(t: tf.Tensor): ShapeStub {
  const stub = {
    shape: t.shape.slice(),
    rank: t.rank,
    size: t.size,
    dtype: t.dtype,
    isDisposed: false,
    dispose: () => undefined,
  };
  t.dispose();
  return stub;
}

let shapeOnlySaves = false;

/**
 * Makes tfjs keep only shapes, not tensors, for the backward pass of the kernels in SHAPE_ONLY_GRADIENTS. tfjs
 * saves a reshape's input, and both operands of an add, only to read their shapes, but the saved tensor keeps
 * its buffer alive until the backward pass ends: a projection's output behind a reshape, or a residual stream
 * behind an add, for every layer. On a 32-layer model that was most of the activation memory. Installed once
 * per realm by initRuntime; gradients are unchanged (tests compare them against tfjs's own).
 */
export function keepOnlyShapesForShapeGradients(): void {
  if (shapeOnlySaves) return;
  const engine = tf.engine() as unknown as {
    addTapeNode(
      kernelName: string,
      inputs: unknown,
      outputs: unknown,
      gradientsFunc: unknown,
      saved: tf.Tensor[] | undefined,
      attrs: unknown,
    ): void;
  };
  const add = engine.addTapeNode.bind(engine);
  engine.addTapeNode = (kernelName, inputs, outputs, grad, saved, attrs) =>
    add(
      kernelName,
      inputs,
      outputs,
      grad,
      SHAPE_ONLY_GRADIENTS.has(kernelName) && saved
        ? (saved.map(shapeStub) as unknown as tf.Tensor[])
        : saved,
      attrs,
    );
  shapeOnlySaves = true;
}

/** The part of WebGPUBackend that defers releasing a disposed tensor's buffer until its commands are submitted. */
interface DeferredReleases {
  tensorDataPendingDisposal: object[];
  tensorMap: { get(dataId: object): { resource?: unknown } | undefined };
  commandQueueOwnedIds: WeakSet<object>;
  commandEncoder: GPUCommandEncoder | null;
  /** Set while tf.time/tf.profile measure kernels, which submit on their own schedule. */
  activeTimers: unknown;
  disposeData(dataId: object, force?: boolean): boolean;
  submitQueue(): void;
  endComputePassEncoder(): void;
}

const boundedBackends = new WeakSet<object>();

/**
 * Caps the bytes of disposed tensors whose buffers tfjs-backend-webgpu holds back until it next submits its
 * commands. tfjs submits every 15 dispatches, so a disposed tensor's buffer stays in use until then: with the
 * [tokens, 16k] logits of a loss chunk, or a layer's gradients in the backward pass, that held 100–230 MB beyond
 * what was alive. When the held bytes pass `maxBytes`, the commands recorded so far are submitted (WebGPU runs
 * them in order, so the buffers can be reused at once). A no-op on other backends; installed once per backend.
 */
export function boundDeferredReleases(maxBytes = 16 * MiB): void {
  if (tf.getBackend() !== "webgpu") return;
  const b = tf.backend() as unknown as DeferredReleases;
  if (boundedBackends.has(b) || !Array.isArray(b.tensorDataPendingDisposal))
    return;
  boundedBackends.add(b);
  let held = 0;
  const submit = b.submitQueue.bind(b);
  b.submitQueue = () => {
    held = 0;
    submit();
  };
  const dispose = b.disposeData.bind(b);
  b.disposeData = (dataId, force) => {
    const before = b.tensorDataPendingDisposal.length;
    const resource = b.tensorMap.get(dataId)?.resource as
      { size?: number } | undefined;
    const done = dispose(dataId, force);
    if (b.tensorDataPendingDisposal.length > before) {
      held += resource?.size ?? 0;
      if (held > maxBytes && b.commandEncoder && b.activeTimers == null) {
        b.endComputePassEncoder();
        b.submitQueue();
      }
    }
    return done;
  };
}
