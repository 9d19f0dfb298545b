/**
 * tfjs tensors and webtune's own GPU work on one device: the buffer behind a tensor (bound in place, no copy),
 * a new tensor copied from a buffer range, and flushing tfjs's recorded commands so that work submitted after it
 * sees their results. The compiled training step (engine/) reaches tfjs only through these.
 */
import * as tf from "@tensorflow/tfjs";
import { ShapeError } from "../errors.js";

/** The part of WebGPUBackend these functions use. */
interface TensorStore {
  device: GPUDevice;
  tensorMap: {
    get(dataId: object): { resource?: unknown; shape: number[] } | undefined;
  };
  commandEncoder: GPUCommandEncoder | null;
  uploadToGPU(dataId: object): void;
  makeTensorInfo(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  endComputePassEncoder(): void;
  submitQueue(): void;
  ensureCommandEncoderReady(): void;
}

function store(): TensorStore {
  if (tf.getBackend() !== "webgpu")
    throw new ShapeError(
      `The compiled step needs tfjs's WebGPU backend; the current backend is "${tf.getBackend()}".`,
    );
  return tf.backend() as unknown as TensorStore;
}

/**
 * The GPUBuffer that holds a tensor's values, uploading them first if they are still on the CPU. The buffer may
 * be larger than the tensor (tfjs pools buffers by size); its first `tensor.size · 4` bytes are the values. Valid
 * until the tensor is disposed or (for a variable) assigned. An upload into a reused buffer is a copy recorded in
 * tfjs's encoder: it is submitted here, so that work submitted next reads the values.
 */
export function tensorBuffer(t: tf.Tensor): GPUBuffer {
  if (t.isDisposed)
    throw new ShapeError(
      `A disposed tensor of shape [${t.shape.join(", ")}] was bound.`,
    );
  const b = store();
  const resident = b.tensorMap.get(t.dataId)?.resource;
  if (resident instanceof GPUBuffer) return resident;
  b.uploadToGPU(t.dataId);
  flushTfjs();
  const resource = b.tensorMap.get(t.dataId)?.resource;
  if (!(resource instanceof GPUBuffer))
    throw new ShapeError(
      `A tensor of shape [${t.shape.join(", ")}] is not held in a GPUBuffer (a texture or external resource).`,
    );
  return resource;
}

/** Submits the commands tfjs has recorded but not yet submitted, so that later submissions run after them. */
export function flushTfjs(): void {
  const b = store();
  if (!b.commandEncoder) return;
  b.endComputePassEncoder();
  b.submitQueue();
}

/** The GPUDevice of tfjs's WebGPU backend. */
export function tfjsDevice(): GPUDevice {
  return store().device;
}

/**
 * A new f32 tensor of `shape` whose values are copied on the GPU from `buffer` at `byteOffset`. The copy is
 * recorded in tfjs's command encoder, so it is ordered after every earlier submission and before tfjs's later work.
 */
export function tensorFromBuffer(
  buffer: GPUBuffer,
  byteOffset: number,
  shape: number[],
): tf.Tensor {
  const b = store();
  const info = b.makeTensorInfo(shape, "float32");
  b.uploadToGPU(info.dataId);
  const target = b.tensorMap.get(info.dataId)!.resource as GPUBuffer;
  const bytes = shape.reduce((n, d) => n * d, 1) * 4;
  b.ensureCommandEncoderReady();
  b.endComputePassEncoder();
  b.commandEncoder!.copyBufferToBuffer(buffer, byteOffset, target, 0, bytes);
  return tf.engine().makeTensorFromTensorInfo(info);
}
