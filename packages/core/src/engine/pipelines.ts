/**
 * Compute pipelines of the compiled step, one per program key and device, each with an explicit bind-group
 * layout (no 'auto' layouts: a layout is what a bind group made once is checked against).
 */
import * as tf from "@tensorflow/tfjs";
import { DeviceError } from "../errors.js";
import { programSource, type Program } from "../kernels/program.js";
import { programFor } from "../kernels/subgroups.js";

export interface CompiledProgram {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  /** Resolves once the device has checked the program: a DeviceError naming it if the WGSL or layout was refused. */
  checked: Promise<void>;
}

const cache = new WeakMap<GPUDevice, Map<string, CompiledProgram>>();

/** Pipelines compiled so far on `device` (for the host-cost benchmark: none should be added after warm-up). */
export function compiledPrograms(device: GPUDevice): number {
  return cache.get(device)?.size ?? 0;
}

/** Compiles `program`, or its subgroup variant where this device reduces with subgroups (kernels/subgroups.ts). */
export function compileProgram(
  device: GPUDevice,
  asked: Program,
): CompiledProgram {
  const program = programFor(device, asked);
  let programs = cache.get(device);
  if (!programs) cache.set(device, (programs = new Map()));
  const hit = programs.get(program.key);
  if (hit) return hit;
  const code = programSource(program);
  printIfAsked(program.key, code);
  // Every array is bound writable: see `programSource` for why inputs are too.
  const entries: GPUBindGroupLayoutEntry[] = program.storage.map((_, i) => ({
    binding: i,
    visibility: GPUShaderStage.COMPUTE,
    buffer: { type: "storage" },
  }));
  entries.push({
    binding: program.storage.length,
    visibility: GPUShaderStage.COMPUTE,
    buffer: { type: "uniform" },
  });
  if (program.stepParams)
    entries.push({
      binding: program.storage.length + 1,
      visibility: GPUShaderStage.COMPUTE,
      buffer: { type: "uniform" },
    });
  device.pushErrorScope("validation");
  const layout = device.createBindGroupLayout({ label: program.key, entries });
  const pipeline = device.createComputePipeline({
    label: program.key,
    layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
    compute: {
      module: device.createShaderModule({ label: program.key, code }),
      entryPoint: "_start",
    },
  });
  const checked = device.popErrorScope().then((error) => {
    if (error)
      throw new DeviceError(
        `The WebGPU program ${program.key} was refused by this device: ${error.message}`,
      );
  });
  // Checked once, whoever asks; an unobserved refusal must not end the process.
  checked.catch(() => undefined);
  const compiled = { pipeline, layout, checked };
  programs.set(program.key, compiled);
  return compiled;
}

/** WEBGPU_PRINT_SHADER, as tfjs reads it: 'all', or a comma-separated list of key substrings. */
function printIfAsked(key: string, code: string): void {
  const print = String(tf.env().get("WEBGPU_PRINT_SHADER")).toLowerCase();
  if (
    print === "" ||
    !(
      print === "all" ||
      print.split(",").some((k) => key.toLowerCase().includes(k))
    )
  )
    return;
  console.group(key);
  console.debug(code);
  console.groupEnd();
}
