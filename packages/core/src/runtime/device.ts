/**
 * Acquiring a GPUDevice: `navigator.gpu` in pages and workers, the npm `webgpu` package (Dawn) in Node.
 * Knows nothing about tfjs.
 */
import { DeviceError } from "../errors.js";

/** Features webtune asks for whenever the adapter offers them. */
export const OPTIONAL_FEATURES = [
  "shader-f16",
  "subgroups",
  "timestamp-query",
] as const;

/** Limits raised to the adapter's maximum, so large weights and workgroup tiles fit. */
const LIMITS_TO_RAISE = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
] as const;

export const NO_ADAPTER_HELP =
  "On Linux without a GPU, install Mesa's Vulkan driver (lavapipe, Mesa >= 24) with `sudo bash scripts/setup-system.sh`; " +
  "in Chromium, serve the page from http://localhost (WebGPU needs a secure context) and pass --enable-unsafe-webgpu when headless. " +
  'See README, "WebGPU without a GPU". Or opt in to the slow CPU fallback with initRuntime({ fallback: "cpu" }).';

export interface DeviceRequest {
  /** Features that must be granted; a missing one raises DeviceError. */
  requiredFeatures?: GPUFeatureName[];
  powerPreference?: GPUPowerPreference;
}

export interface AcquiredDevice {
  adapter: GPUAdapter;
  device: GPUDevice;
  /** Features granted on the device (requested optional ones the adapter had, plus required ones). */
  features: string[];
  /** Resolves when the device is lost, with Dawn's or the browser's reason. */
  lost: Promise<GPUDeviceLostInfo>;
}

/** Finds the platform's GPU entry point without ever bundling the Node package into browser code. */
export async function getGpu(): Promise<GPU> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  if (!isNode()) {
    throw new DeviceError(
      `WebGPU is not available in this browser context (navigator.gpu is undefined). ${NO_ADAPTER_HELP}`,
    );
  }
  // A computed specifier keeps bundlers from resolving the Node-only addon.
  const specifier = "webgpu";
  let mod: {
    create: (flags: string[]) => GPU;
    globals: Record<string, unknown>;
  };
  try {
    mod = (await import(/* @vite-ignore */ specifier)) as typeof mod;
  } catch (cause) {
    throw new DeviceError(
      `WebGPU for Node needs the npm package "webgpu" (Dawn): run \`npm install webgpu\`. Import failed: ${String(cause)}`,
      { cause },
    );
  }
  // Dawn's enums (GPUBufferUsage, GPUMapMode, ...) are globals in browsers; tfjs expects them there.
  for (const [name, value] of Object.entries(mod.globals)) {
    if (!(name in globalThis))
      (globalThis as Record<string, unknown>)[name] = value;
  }
  const gpu = mod.create([]);
  // tfjs-backend-webgpu checks navigator.gpu to decide that WebGPU is supported.
  const g = globalThis as { navigator?: { gpu?: GPU } };
  if (g.navigator === undefined) g.navigator = { gpu };
  else if (g.navigator.gpu === undefined)
    Object.defineProperty(g.navigator, "gpu", {
      value: gpu,
      configurable: true,
    });
  return gpu;
}

export function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } })
    .process;
  return typeof p?.versions?.node === "string";
}

/** Requests an adapter and a device with optional features and raised limits. */
export async function acquireDevice(
  request: DeviceRequest = {},
): Promise<AcquiredDevice> {
  const gpu = await getGpu();
  // In Node, Dawn's first adapter query prints "maxDynamic{Uniform,Storage}BuffersPerPipelineLayout artificially
  // reduced from 1000000 to 16" on stderr for Vulkan drivers (lavapipe, NVIDIA): a native fprintf in Dawn's
  // Limits.cpp, before any limit is requested, that no option, toggle or logging callback of the webgpu package
  // reaches. Harmless: neither webtune nor tfjs uses dynamic offsets.
  const adapter = await gpu.requestAdapter({
    powerPreference: request.powerPreference ?? "high-performance",
  });
  if (!adapter)
    throw new DeviceError(`No WebGPU adapter was found. ${NO_ADAPTER_HELP}`);

  const required = request.requiredFeatures ?? [];
  const missing = required.filter((f) => !adapter.features.has(f));
  if (missing.length > 0) {
    throw new DeviceError(
      `The WebGPU adapter (${describeAdapter(adapter.info)}) lacks required feature(s) ${missing.join(", ")}; ` +
        `it offers: ${[...adapter.features].sort().join(", ") || "none"}. Drop them from requiredFeatures or use another GPU.`,
    );
  }
  const wanted = new Set<GPUFeatureName>([
    ...required,
    ...OPTIONAL_FEATURES.filter((f) => adapter.features.has(f)),
  ]);
  const requiredLimits: Record<string, number> = {};
  for (const name of LIMITS_TO_RAISE) {
    const value = (
      adapter.limits as unknown as Record<string, number | undefined>
    )[name];
    if (typeof value === "number") requiredLimits[name] = value;
  }

  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({
      requiredFeatures: [...wanted],
      requiredLimits,
    });
  } catch (cause) {
    throw new DeviceError(
      `The WebGPU adapter (${describeAdapter(adapter.info)}) refused a device with features [${[...wanted].join(", ")}]: ` +
        `${String(cause)}. Retry without optional features, or update the GPU driver.`,
      { cause },
    );
  }
  return {
    adapter,
    device,
    features: [...device.features].map(String).sort(),
    lost: device.lost,
  };
}

export function describeAdapter(info: GPUAdapterInfo | undefined): string {
  if (!info) return "unknown adapter";
  const parts = [info.vendor, info.architecture, info.description].filter(
    (s) => s && s.length > 0,
  );
  return parts.length > 0 ? parts.join(" / ") : "unnamed adapter";
}

/** True for adapters that run shaders on the CPU (Mesa lavapipe, SwiftShader), whose best kernels differ. */
export function isSoftwareAdapter(info: GPUAdapterInfo | undefined): boolean {
  const text =
    `${info?.vendor ?? ""} ${info?.architecture ?? ""} ${info?.description ?? ""} ${info?.device ?? ""}`.toLowerCase();
  return /llvmpipe|lavapipe|swiftshader|software|warp/.test(text);
}
