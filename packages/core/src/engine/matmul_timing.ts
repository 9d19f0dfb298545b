/**
 * Timing one matmul variant on the device, for the autotuner. Its programs are compiled as the engine compiles
 * them (`compileProgram`), bound to zero-filled buffers of the shape's sizes, and their dispatches repeated in one
 * compute pass until the pass lasts about `minMs`: a short kernel is not lost in the submit's own cost, nor in Dawn's
 * timestamp rounding (65536 ns by default). The pass is timed by timestamp queries where the device has
 * 'timestamp-query', else by the wall time from submit to onSubmittedWorkDone; the median of `repetitions` passes,
 * over the repeats, is the time of one matmul.
 */
import {
  uniformBytes,
  writeUniforms,
  type ProgramCall,
} from "../kernels/program.js";
import { STEP_PARAMS_BYTES } from "../kernels/step_params.js";
import {
  matmulBindingNames,
  recordMatmul,
  type MatmulDispatches,
} from "../kernels/lora_linear/program.js";
import type { MatmulUse } from "../kernels/lora_linear/variant.js";
import { compileProgram } from "./pipelines.js";

export interface TimingOptions {
  /** Timed passes; their median is taken. */
  repetitions: number;
  /** The length a timed pass is stretched to by repeating the dispatches. Default 2 ms. */
  minMs?: number;
}

/** Elements of each binding of the one-pass program (an upper bound for a packed W's words and scales). */
function bindingElements(use: MatmulUse, name: string): number {
  const { M, N, K } = use.shape;
  const R = use.shape.R ?? 0;
  const sizes: Record<string, number> = {
    result: M * N,
    X: M * K,
    W: K * N,
    H: M * R,
    U: R * N,
    bias: N,
    residual: M * N,
  };
  return sizes[name] ?? Math.ceil((K * N) / 16) + 64;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Milliseconds of one matmul of `use` run as `m`; throws the DeviceError of a program the device refuses. */
export async function timeMatmul(
  device: GPUDevice,
  use: MatmulUse,
  m: MatmulDispatches,
  options: TimingOptions,
): Promise<number> {
  const created: { destroy(): void }[] = [];
  const buffer = (bytes: number, usage: number) => {
    const b = device.createBuffer({
      size: Math.max(16, Math.ceil(bytes / 16) * 16),
      usage,
    });
    created.push(b);
    return b;
  };
  try {
    const storage = (elements: number) =>
      buffer(4 * elements, GPUBufferUsage.STORAGE);
    const steps = buffer(STEP_PARAMS_BYTES, GPUBufferUsage.UNIFORM);
    const dispatches: {
      call: ProgramCall;
      group: GPUBindGroup;
      pipeline: GPUComputePipeline;
    }[] = [];
    const compiled: Promise<void>[] = [];
    recordMatmul(
      m,
      matmulBindingNames(m.layout).map((name) =>
        storage(bindingElements(use, name)),
      ),
      storage,
      (call, bound) => {
        const program = compileProgram(device, call.program);
        compiled.push(program.checked);
        const uniforms = buffer(
          uniformBytes(call.program),
          GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
        );
        const bytes = new ArrayBuffer(uniformBytes(call.program));
        writeUniforms(call, new DataView(bytes), 0);
        device.queue.writeBuffer(uniforms, 0, bytes);
        const entries = [
          ...bound,
          uniforms,
          ...(call.program.stepParams ? [steps] : []),
        ];
        const group = device.createBindGroup({
          layout: program.layout,
          entries: entries.map((b, binding) => ({
            binding,
            resource: { buffer: b },
          })),
        });
        dispatches.push({ call, group, pipeline: program.pipeline });
      },
    );
    await Promise.all(compiled);
    const timer = device.features.has("timestamp-query")
      ? queryTimer(device, created)
      : undefined;
    // Resolves with the pass's wall time (submit to done) and, where timed by queries, its GPU time.
    const pass = async (repeats: number) => {
      const encoder = device.createCommandEncoder({
        label: "webtune autotune",
      });
      const compute = encoder.beginComputePass(
        timer ? { timestampWrites: timer.writes } : {},
      );
      for (let r = 0; r < repeats; r++)
        for (const { call, group, pipeline } of dispatches) {
          compute.setPipeline(pipeline);
          compute.setBindGroup(0, group);
          compute.dispatchWorkgroups(...call.workgroups);
        }
      compute.end();
      timer?.resolve(encoder);
      const start = performance.now();
      device.queue.submit([encoder.finish()]);
      await device.queue.onSubmittedWorkDone();
      const wall = performance.now() - start;
      // A pass shorter than the timestamps' rounding reads 0: its wall time is the better bound then.
      return { wall, gpu: (timer && (await timer.read())) || wall };
    };
    await pass(1); // warm-up: first use of the pipelines and buffers
    // The repeat count from wall time: rounded timestamps can read 0 for one short pass.
    const once = (await pass(1)).wall;
    const repeats = Math.min(
      256,
      Math.max(1, Math.ceil((options.minMs ?? 2) / Math.max(once, 1e-3))),
    );
    const samples: number[] = [];
    for (let i = 0; i < options.repetitions; i++)
      samples.push((await pass(repeats)).gpu / repeats);
    return median(samples);
  } finally {
    for (const b of created) b.destroy();
  }
}

/** A compute pass's start and end timestamps, resolved and read back in milliseconds. */
function queryTimer(device: GPUDevice, created: { destroy(): void }[]) {
  const querySet = device.createQuerySet({ type: "timestamp", count: 2 });
  const resolved = device.createBuffer({
    size: 16,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  const staging = device.createBuffer({
    size: 16,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  created.push(querySet, resolved, staging);
  return {
    writes: { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 },
    resolve(encoder: GPUCommandEncoder) {
      encoder.resolveQuerySet(querySet, 0, 2, resolved, 0);
      encoder.copyBufferToBuffer(resolved, 0, staging, 0, 16);
    },
    async read(): Promise<number> {
      await staging.mapAsync(GPUMapMode.READ);
      const [begin, end] = new BigInt64Array(staging.getMappedRange().slice(0));
      staging.unmap();
      return Number(end! - begin!) / 1e6;
    },
  };
}
