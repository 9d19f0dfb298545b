/**
 * Workgroup-wide sums and maxima in WGSL, two ways: a tree in workgroup memory (log2(W) barriers), or subgroup
 * operations (`subgroupAdd`, `subgroupMax`) whose per-subgroup results meet in workgroup memory (one barrier).
 * Programs that reduce (softmax and log-sum-exp, the norms, the gradient norm) carry both variants; the one place
 * that picks between them per device is `reductionKind`, and `setReductionKind` overrides it so that tests cover
 * both on any machine whose device has `subgroups`.
 *
 * A subgroup's size is what the device runs, read from the `subgroup_size` builtin, never assumed: any power of two
 * from 4 to 128 (WebGPU's range; 8 on lavapipe, 32 on NVIDIA, 32 or 64 on AMD), including subgroups wider than the
 * workgroup. Subgroup s of a 1-D workgroup is taken to be invocations s·size .. (s + 1)·size − 1, as Vulkan, Metal
 * and D3D12 drivers lay them out (checked on lavapipe); WGSL's `subgroup_id` builtin would say so outright, but not
 * every browser has it yet.
 */
import { DeviceError } from "../errors.js";
import type { Program } from "./program.js";

/** "subgroup": subgroup operations; "workgroup": a tree in workgroup memory, which every device runs. */
export type ReductionKind = "subgroup" | "workgroup";

let forcedKind: ReductionKind | undefined;

/** Forces one kind of reduction (tests, benchmarks); `undefined` restores the choice by device. */
export function setReductionKind(kind: ReductionKind | undefined): void {
  forcedKind = kind;
}

/** Subgroups wherever the device has the feature (runtime/device.ts asks for it whenever the adapter offers it). */
export function reductionKind(device: GPUDevice): ReductionKind {
  const has = device.features.has("subgroups");
  if (forcedKind === "subgroup" && !has)
    throw new DeviceError(
      `Subgroup reductions were forced with setReductionKind("subgroup"), but this device lacks the "subgroups" ` +
        `feature (it has: ${[...device.features].sort().join(", ") || "none"}). Call setReductionKind(undefined).`,
    );
  return forcedKind ?? (has ? "subgroup" : "workgroup");
}

/** The program `device` runs: its subgroup variant where reductions use subgroups there, else itself. */
export function programFor(device: GPUDevice, program: Program): Program {
  const variant = program.subgroupVariant;
  return variant && reductionKind(device) === "subgroup" ? variant : program;
}

/**
 * A program that reduces, with its subgroup variant attached: `make(false)` reduces in workgroup memory,
 * `make(true)` with subgroups (and must set `subgroups` and name the choice in its key).
 */
export function withSubgroupVariant(
  make: (subgroups: boolean) => Program,
): Program {
  const variant = make(true);
  if (!variant.subgroups)
    throw new Error(`${variant.key}: a subgroup variant must set subgroups.`);
  return { ...make(false), subgroupVariant: variant };
}

/** The suffix that names a reduction variant in program keys. */
export const reductionSuffix = (subgroups: boolean) =>
  subgroups ? "_sg" : "_wg";

/**
 * `fn workgroupSum(value : f32) -> f32` and `fn workgroupMax(value : f32) -> f32` over the `workgroup`
 * invocations (a power of two), returned to every invocation. Call them from uniform control flow (they have
 * barriers), any number of times, in the same order on every invocation.
 *
 * With subgroups, each subgroup reduces its own values, one of its invocations stores the result in a slot, and
 * after one barrier every subgroup reduces the slots (one subgroup's worth per pass). The slots alternate between
 * two banks, so that a call does not overwrite what the previous call's slowest invocation still reads: the
 * barrier of the call in between orders them. Every invocation adds the slots in the same order, so all get the
 * same result.
 */
export function workgroupReduceWGSL(
  workgroup: number,
  subgroups: boolean,
): string {
  if (!(workgroup >= 1 && (workgroup & (workgroup - 1)) === 0))
    throw new Error(
      `workgroupReduceWGSL: the workgroup must be a power of two, got ${workgroup}.`,
    );
  const W = workgroup;
  if (!subgroups) {
    const tree = (name: string, op: (a: string, b: string) => string) => `
fn ${name}(value : f32) -> f32 {
  reduceSlots[localIndex] = value;
  workgroupBarrier();
  for (var stride = ${W >> 1}u; stride > 0u; stride = stride >> 1u) {
    if (localIndex < stride) {
      reduceSlots[localIndex] = ${op("reduceSlots[localIndex]", "reduceSlots[localIndex + stride]")};
    }
    workgroupBarrier();
  }
  let total = reduceSlots[0];
  // Everyone has read the total before the next call overwrites it.
  workgroupBarrier();
  return total;
}`;
    return `
var<workgroup> reduceSlots : array<f32, ${W}>;
${tree("workgroupSum", (a, b) => `${a} + ${b}`)}
${tree("workgroupMax", (a, b) => `max(${a}, ${b})`)}
`;
  }
  // At most W / 4 subgroups (the smallest subgroup has 4 invocations), in each of two banks.
  const bank = Math.max(1, W / 4);
  const viaSubgroups = (
    name: string,
    subgroupOp: string,
    op: (a: string, b: string) => string,
    identity: string,
  ) => `
fn ${name}(value : f32) -> f32 {
  let base = reduceBank * ${bank}u;
  reduceBank = 1u - reduceBank;
  let own = ${subgroupOp}(value);
  if (subgroupElect()) {
    reduceSlots[base + localIndex / subgroupSize] = own;
  }
  workgroupBarrier();
  let count = (${W}u + subgroupSize - 1u) / subgroupSize;
  var mine = ${identity};
  for (var s = subgroupLane; s < count; s = s + subgroupSize) {
    mine = ${op("mine", "reduceSlots[base + s]")};
  }
  return ${subgroupOp}(mine);
}`;
  return `
var<workgroup> reduceSlots : array<f32, ${2 * bank}>;
var<private> reduceBank : u32 = 0u;
${viaSubgroups("workgroupSum", "subgroupAdd", (a, b) => `${a} + ${b}`, "0.0")}
${viaSubgroups("workgroupMax", "subgroupMax", (a, b) => `max(${a}, ${b})`, "-3.0e38")}
`;
}
