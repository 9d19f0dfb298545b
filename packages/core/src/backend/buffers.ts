/**
 * tfjs-backend-webgpu's buffers, from outside: bytes in use and at peak, and trimming the pool of released
 * buffers (for the tfjs forward passes of evaluation and generation, whose shapes vary).
 */
import * as tf from "@tensorflow/tfjs";

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
