/**
 * Starts tfjs on webtune's own GPUDevice (so shader-f16 and subgroups can be granted), or on the CPU backend
 * when the caller opts in. One runtime per JavaScript realm (page, worker or Node process).
 */
import * as tf from "@tensorflow/tfjs";
import { WebGPUBackend } from "@tensorflow/tfjs-backend-webgpu";
import { DeviceError } from "../errors.js";
import {
  acquireDevice,
  describeAdapter,
  isSoftwareAdapter,
  NO_ADAPTER_HELP,
  type DeviceRequest,
} from "./device.js";

export interface RuntimeOptions extends DeviceRequest {
  /**
   * What to do when WebGPU cannot start. `'none'` (default) throws DeviceError; `'cpu'` runs on tfjs's CPU backend
   * with the kernels' CPU references, and logs once that this is slow.
   */
  fallback?: "none" | "cpu";
  /** Start on the CPU backend without trying WebGPU (for tests of the CPU references). */
  backend?: "webgpu" | "cpu";
}

/** What `gpuInfo()` reports about the device webtune runs on. */
export interface GpuInfo {
  backend: "webgpu" | "cpu";
  vendor: string;
  architecture: string;
  description: string;
  device: string;
  /** True when shaders run on the CPU (lavapipe, SwiftShader): correct, but orders of magnitude slower than a GPU. */
  software: boolean;
  /** Features granted on the device. */
  features: string[];
  limits: Record<string, number>;
}

interface RuntimeState {
  info: GpuInfo;
  device?: GPUDevice;
  lostReason?: string;
}

let state: RuntimeState | undefined;
let starting: Promise<GpuInfo> | undefined;

const BACKEND_NAME = "webgpu";

/**
 * Acquires a GPU and makes it tfjs's backend. Idempotent: later calls return the running runtime's info.
 *
 * @example
 * ```ts
 * import { initRuntime } from '@webtune/core';
 * const info = await initRuntime();            // throws DeviceError with instructions if there is no WebGPU
 * console.log(info.description, info.features); // e.g. "llvmpipe ...", ["shader-f16", "subgroups", ...]
 * ```
 */
export function initRuntime(options: RuntimeOptions = {}): Promise<GpuInfo> {
  if (state) return Promise.resolve(state.info);
  starting ??= start(options).finally(() => (starting = undefined));
  return starting;
}

async function start(options: RuntimeOptions): Promise<GpuInfo> {
  if (options.backend === "cpu")
    return startCpu('requested with backend: "cpu"');
  try {
    return await startWebGPU(options);
  } catch (error) {
    if (options.fallback === "cpu" && error instanceof DeviceError)
      return startCpu(error.message);
    throw error;
  }
}

async function startWebGPU(options: RuntimeOptions): Promise<GpuInfo> {
  const { adapter, device, features, lost } = await acquireDevice(options);
  const backend = new WebGPUBackend(device, adapter.info);
  // Replace tfjs's own factory (registered when navigator.gpu existed at import), which would pick its own device.
  if (tf.findBackendFactory(BACKEND_NAME)) tf.removeBackend(BACKEND_NAME);
  tf.registerBackend(BACKEND_NAME, () => backend, 3);
  const ok = await tf.setBackend(BACKEND_NAME);
  if (!ok)
    throw new DeviceError(
      `tfjs could not start its WebGPU backend on ${describeAdapter(adapter.info)}.`,
    );
  // tfjs silently computes ops on tensors under 1000 elements on the CPU; LoRA's small matrices fall into that.
  tf.env().set("WEBGPU_CPU_FORWARD", false);

  const info: GpuInfo = {
    backend: "webgpu",
    vendor: adapter.info.vendor,
    architecture: adapter.info.architecture,
    description: adapter.info.description,
    device: adapter.info.device,
    software: isSoftwareAdapter(adapter.info),
    features,
    limits: readLimits(device.limits),
  };
  const current: RuntimeState = { info, device };
  // WebGPU reports validation and out-of-memory errors as events, and the failed work reads as zeros. Say so.
  device.addEventListener("uncapturederror", (event) => {
    const error = (event as GPUUncapturedErrorEvent).error;
    console.error(
      `webtune: WebGPU error on ${describeAdapter(adapter.info)}: ${error.constructor.name}: ${error.message}`,
    );
  });
  state = current;
  // Any loss not caused by disposeRuntime() (which clears `state` first) leaves the runtime unusable.
  void lost.then((reason) => {
    if (state === current)
      current.lostReason = `${reason.reason}: ${reason.message || "no message"}`;
  });
  return info;
}

function startCpu(why: string): Promise<GpuInfo> {
  console.warn(
    `webtune: running on tfjs's CPU backend (${why}). This is correct but slow, tens of times slower than a GPU. ` +
      NO_ADAPTER_HELP,
  );
  return tf.setBackend("cpu").then((ok) => {
    if (!ok) throw new DeviceError("tfjs's CPU backend failed to start.");
    const info: GpuInfo = {
      backend: "cpu",
      vendor: "cpu",
      architecture: "tfjs-backend-cpu",
      description: `tfjs CPU backend (${why})`,
      device: "",
      software: true,
      features: [],
      limits: {},
    };
    state = { info };
    return info;
  });
}

function readLimits(limits: GPUSupportedLimits): Record<string, number> {
  const out: Record<string, number> = {};
  // GPUSupportedLimits exposes its fields as prototype getters, so Object.keys sees nothing.
  for (
    let proto = limits as object;
    proto && proto !== Object.prototype;
    proto = Object.getPrototypeOf(proto)
  ) {
    for (const key of Object.getOwnPropertyNames(proto)) {
      const value = (limits as unknown as Record<string, unknown>)[key];
      if (typeof value === "number") out[key] = value;
    }
  }
  return out;
}

/**
 * The adapter and device webtune runs on: vendor, architecture, description, granted features and limits.
 * Throws DeviceError if the runtime has not started or the device was lost.
 */
export function gpuInfo(): GpuInfo {
  return requireRuntime().info;
}

/** The running runtime, checked to be alive. Kernels call this before any GPU work. */
export function requireRuntime(): RuntimeState {
  if (!state)
    throw new DeviceError(
      "The webtune runtime is not started: call `await initRuntime()` first.",
    );
  if (state.lostReason !== undefined) {
    throw new DeviceError(
      `The GPU device was lost (${state.lostReason}). Tensors on it are gone: call disposeRuntime(), then initRuntime() ` +
        "and reload the model. A lost device often means the GPU ran out of memory or a driver reset; try a smaller batch.",
    );
  }
  return state;
}

/** True when the runtime runs on a GPU whose shaders execute on the CPU (lavapipe, SwiftShader). */
export function isSoftwareGpu(): boolean {
  return state?.info.software ?? false;
}

/** A limit of the running device (e.g. maxComputeWorkgroupStorageSize); undefined before it starts or on the CPU. */
export function deviceLimit(name: string): number | undefined {
  return state?.info.limits[name];
}

/**
 * Releases every tensor, the tfjs backend and the GPU device. Node exits only once the device is destroyed.
 */
export function disposeRuntime(): void {
  if (!state) return;
  const { device, info } = state;
  state = undefined;
  tf.disposeVariables();
  if (info.backend === "webgpu") {
    if (tf.findBackendFactory(BACKEND_NAME)) tf.removeBackend(BACKEND_NAME);
    device?.destroy();
  }
}

/** The GPUDevice webtune runs on, for callers that add their own WebGPU work. Throws on the CPU backend. */
export function gpuDevice(): GPUDevice {
  const { device } = requireRuntime();
  if (!device)
    throw new DeviceError(
      "gpuDevice(): the runtime runs on the CPU backend, which has no GPUDevice.",
    );
  return device;
}
