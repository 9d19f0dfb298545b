/**
 * The training state of a compiled step: every trainable tensor's value, gradient and AdamW moments, each in one
 * flat f32 buffer, so that clipping and the optimizer are one dispatch each over all of them, laid out as
 * kernels/adamw's `flatLayout`: each tensor's range starts on a block of 256 elements (zero padding between), so a
 * block belongs to one tensor and one parameter group, which `groupOfBlock` gives.
 *
 * The tfjs variables stay the model's public values. `pull` copies them in when a session starts (or after they
 * were changed from outside); `push` copies the trained values back, before anything outside the engine reads
 * them (saving, checkpoints, the end of training).
 */
import type * as tf from "@tensorflow/tfjs";
import {
  flushTfjs,
  tensorBuffer,
  tensorFromBuffer,
} from "../backend/interop.js";
import { FormatError, ShapeError } from "../errors.js";
import { flatLayout } from "../kernels/adamw/program.js";
import { destroyEngineBuffer, engineBuffer } from "./executor.js";

export interface StateEntry {
  variable: tf.Variable;
  /** Index of its parameter group (learning-rate scale and weight decay). */
  group: number;
}

/** One tensor's place in the flat buffers, in elements. */
export interface Slot {
  offset: number;
  length: number;
}

export class TrainState {
  /** Elements of each flat buffer. */
  readonly size: number;
  readonly params: GPUBuffer;
  readonly grads: GPUBuffer;
  readonly m: GPUBuffer;
  readonly v: GPUBuffer;
  /** The parameter group of each block of BLOCK elements (padding blocks: their tensor's group). */
  readonly groupOfBlock: Uint32Array;
  private readonly slots = new Map<tf.Variable, Slot>();
  private disposed = false;

  constructor(
    readonly device: GPUDevice,
    readonly entries: StateEntry[],
  ) {
    if (entries.length === 0)
      throw new ShapeError("A training state needs trainable tensors.");
    for (const { variable } of entries) {
      if (variable.dtype !== "float32")
        throw new ShapeError(
          `${variable.name}: only float32 tensors train, got ${variable.dtype}.`,
        );
      if (this.slots.has(variable))
        throw new ShapeError(`${variable.name} is listed twice.`);
      this.slots.set(variable, { offset: 0, length: variable.size });
    }
    const layout = flatLayout(
      entries.map((e) => e.variable.size),
      entries.map((e) => e.group),
    );
    entries.forEach(({ variable }, i) => {
      this.slots.get(variable)!.offset = layout.offsets[i]!;
    });
    this.size = layout.P;
    this.groupOfBlock = layout.groupOf;
    const bytes = this.size * 4;
    this.params = engineBuffer(
      device,
      "webtune params",
      bytes,
      undefined,
      "adapters",
    );
    this.grads = engineBuffer(device, "webtune grads", bytes);
    this.m = engineBuffer(
      device,
      "webtune exp_avg",
      bytes,
      undefined,
      "optimizer",
    );
    this.v = engineBuffer(
      device,
      "webtune exp_avg_sq",
      bytes,
      undefined,
      "optimizer",
    );
  }

  has(v: tf.Variable): boolean {
    return this.slots.has(v);
  }

  /** Where a trainable tensor lives in the flat buffers. */
  slot(v: tf.Variable): Slot {
    const s = this.slots.get(v);
    if (!s)
      throw new ShapeError(
        `${v.name} [${v.shape.join(", ")}] is not part of this training state.`,
      );
    return s;
  }

  /** Copies every variable's current value into `params` (on the GPU), and zeroes the padding. */
  pull(): void {
    this.checkLive();
    flushTfjs();
    const encoder = this.device.createCommandEncoder({ label: "webtune pull" });
    encoder.clearBuffer(this.params);
    for (const { variable } of this.entries) {
      const { offset, length } = this.slot(variable);
      encoder.copyBufferToBuffer(
        tensorBuffer(variable),
        0,
        this.params,
        offset * 4,
        length * 4,
      );
    }
    this.device.queue.submit([encoder.finish()]);
  }

  /** Assigns the trained values to the variables (GPU copies, ordered after every submitted step). */
  push(): void {
    this.checkLive();
    for (const { variable } of this.entries) {
      const { offset } = this.slot(variable);
      const value = tensorFromBuffer(this.params, offset * 4, variable.shape);
      variable.assign(value);
      value.dispose();
    }
    // The copies are recorded in tfjs's encoder: submit them while `params` is alive.
    flushTfjs();
  }

  /** Zeroes both moments: a fresh optimizer. */
  resetMoments(): void {
    this.checkLive();
    const encoder = this.device.createCommandEncoder();
    encoder.clearBuffer(this.m);
    encoder.clearBuffer(this.v);
    this.device.queue.submit([encoder.finish()]);
  }

  /** Each tensor's moments, in entry order, read back to the CPU. */
  async exportMoments(): Promise<{ m: Float32Array; v: Float32Array }[]> {
    this.checkLive();
    const [m, v] = await Promise.all([
      readBuffer(this.device, this.m),
      readBuffer(this.device, this.v),
    ]);
    return this.entries.map(({ variable }) => {
      const { offset, length } = this.slot(variable);
      return {
        m: m.slice(offset, offset + length),
        v: v.slice(offset, offset + length),
      };
    });
  }

  /** Writes moments given in entry order (as `exportMoments` returns them). */
  importMoments(moments: { m: Float32Array; v: Float32Array }[]): void {
    this.checkLive();
    if (moments.length !== this.entries.length)
      throw new FormatError(
        `optimizer state has moments for ${moments.length} tensors; this training state has ${this.entries.length}.`,
      );
    const m = new Float32Array(this.size);
    const v = new Float32Array(this.size);
    this.entries.forEach(({ variable }, i) => {
      const { offset, length } = this.slot(variable);
      const saved = moments[i]!;
      if (saved.m.length !== length || saved.v.length !== length)
        throw new FormatError(
          `optimizer state, tensor ${i} (${variable.name} [${variable.shape.join(", ")}]): ` +
            `${saved.m.length} and ${saved.v.length} values for ${length} elements.`,
        );
      m.set(saved.m, offset);
      v.set(saved.v, offset);
    });
    this.device.queue.writeBuffer(this.m, 0, m);
    this.device.queue.writeBuffer(this.v, 0, v);
  }

  /** A copy of the current values, on the GPU (early stopping's best adapter). */
  snapshot(into?: GPUBuffer): GPUBuffer {
    this.checkLive();
    const copy =
      into ?? engineBuffer(this.device, "webtune best params", this.size * 4);
    const encoder = this.device.createCommandEncoder();
    encoder.copyBufferToBuffer(this.params, 0, copy, 0, this.size * 4);
    this.device.queue.submit([encoder.finish()]);
    return copy;
  }

  /** Puts a snapshot's values back into `params`. */
  restore(snapshot: GPUBuffer): void {
    this.checkLive();
    const encoder = this.device.createCommandEncoder();
    encoder.copyBufferToBuffer(snapshot, 0, this.params, 0, this.size * 4);
    this.device.queue.submit([encoder.finish()]);
  }

  private checkLive(): void {
    if (this.disposed)
      throw new ShapeError("This training state was disposed.");
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const b of [this.params, this.grads, this.m, this.v])
      destroyEngineBuffer(b);
  }
}

/** The f32 contents of a whole buffer, through a staging copy. */
export async function readBuffer(
  device: GPUDevice,
  buffer: GPUBuffer,
): Promise<Float32Array> {
  const staging = device.createBuffer({
    size: buffer.size,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  try {
    const encoder = device.createCommandEncoder();
    encoder.copyBufferToBuffer(buffer, 0, staging, 0, buffer.size);
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    return new Float32Array(staging.getMappedRange().slice(0));
  } finally {
    staging.destroy();
  }
}
