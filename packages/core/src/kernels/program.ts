/**
 * A WGSL program as the compiled training step runs it: a plain compute pipeline with explicit bindings, not a
 * tfjs program. Kernels describe their programs this way (`Program`); the engine builds one pipeline per `key`
 * with an explicit bind-group layout, binds planned buffers once, and replays the dispatches.
 *
 * `programSource` wraps a kernel's body in the same names tfjs declares, so one body serves both paths:
 * `uniforms.<field>`, the storage arrays by name, and the builtins `localId`, `globalId`, `workgroupId`,
 * `numWorkgroups`, `localIndex` as private variables. A flat program's `main(index)` gets the workgroup's flat
 * position, counting workgroups that wrapped into y (as tfjs's `getGlobalIndex` does).
 *
 * Bindings, in order: the storage arrays of `storage`, then the program's uniforms, then (if it reads them) the
 * step parameters, a second uniform buffer written once per micro-batch (see `step_params.ts`).
 *
 * Every storage array is declared read_write, inputs too. WebGPU validates usage per buffer, not per range: a
 * dispatch may not bind one buffer both read-only and writable, and the engine keeps many tensors in one arena,
 * so a dispatch's input and output often share a buffer. `access` still says which arrays a program writes.
 */
import { STEP_PARAMS_WGSL } from "./step_params.js";

export type StorageElement = "f32" | "vec4<f32>" | "i32" | "u32";

export interface StorageBinding {
  name: string;
  element: StorageElement;
  /** "read_write" for outputs (and buffers a kernel updates in place). */
  access: "read" | "read_write";
}

export interface UniformField {
  name: string;
  type: "i32" | "u32" | "f32";
}

export interface Program {
  /** Names every choice spliced into the source: one pipeline per key and device. */
  key: string;
  storage: StorageBinding[];
  /** Per-dispatch constants, written once when a step is planned. Shapes live here, not in the source. */
  uniforms: UniformField[];
  /** Reads `step.<field>` (the step parameters). */
  stepParams: boolean;
  workgroupSize: [number, number, number];
  /** Defines `fn main()`, or `fn main(index : i32)` when `flat`. */
  body: string;
  flat: boolean;
  /** Private variables, declared before the body and set by `init` before `main` runs. */
  privates?: string;
  init?: string;
  /**
   * Uses subgroup operations: the module enables `subgroups`, and the builtins `subgroupSize` and `subgroupLane`
   * (the invocation's index within its subgroup) join the others. Only devices with the feature compile it.
   */
  subgroups?: boolean;
  /**
   * The same dispatch (bindings, uniforms, workgroup size and grid) reducing with subgroups, which devices that
   * have them compile instead of this program (`programFor` in subgroups.ts).
   */
  subgroupVariant?: Program;
}

/** One dispatch of a program: its uniform values (in `program.uniforms` order) and its grid. */
export interface ProgramCall {
  program: Program;
  uniforms: number[];
  workgroups: [number, number, number];
}

/** The WGSL module of a program: bindings, uniforms, builtins, the body and the entry point `_start`. */
export function programSource(p: Program): string {
  const n = p.storage.length;
  const storage = p.storage.map(
    (b: StorageBinding, i) =>
      `@group(0) @binding(${i}) var<storage, read_write> ${b.name} : array<${b.element}>;`,
  );
  const fields = p.uniforms.map((u) => `${u.name} : ${u.type},`).join(" ");
  // An empty struct is not WGSL; a padding field keeps the binding layout the same for every program.
  const uniforms = `struct Uniforms { ${fields || "unused : u32,"} }
@group(0) @binding(${n}) var<uniform> uniforms : Uniforms;`;
  const step = p.stepParams
    ? `${STEP_PARAMS_WGSL}
@group(0) @binding(${n + 1}) var<uniform> step : StepParams;`
    : "";
  const [x, y, z] = p.workgroupSize;
  const sg = p.subgroups ?? false;
  return `${sg ? "enable subgroups;\n" : ""}${storage.join("\n")}
${uniforms}
${step}
var<private> localId : vec3<u32>;
var<private> localIndex : u32;
var<private> globalId : vec3<u32>;
var<private> numWorkgroups : vec3<u32>;
var<private> workgroupId : vec3<u32>;
${sg ? "var<private> subgroupSize : u32;\nvar<private> subgroupLane : u32;" : ""}
${p.privates ?? ""}
${p.body}

@compute @workgroup_size(${x}, ${y}, ${z})
fn _start(@builtin(local_invocation_id) LocalId : vec3<u32>,
          @builtin(global_invocation_id) GlobalId : vec3<u32>,
          @builtin(local_invocation_index) LocalIndex : u32,
          @builtin(workgroup_id) WorkgroupId : vec3<u32>,
          @builtin(num_workgroups) NumWorkgroups : vec3<u32>${
            sg
              ? `,
          @builtin(subgroup_size) SubgroupSize : u32,
          @builtin(subgroup_invocation_id) SubgroupLane : u32`
              : ""
          }) {
  localId = LocalId;
  localIndex = LocalIndex;
  globalId = GlobalId;
  numWorkgroups = NumWorkgroups;
  workgroupId = WorkgroupId;
  ${sg ? "subgroupSize = SubgroupSize;\n  subgroupLane = SubgroupLane;" : ""}
  ${p.init ?? ""}
  ${p.flat ? `main(i32((WorkgroupId.z * NumWorkgroups.x * NumWorkgroups.y + WorkgroupId.y * NumWorkgroups.x + WorkgroupId.x) * ${x * y * z}u + LocalIndex));` : "main();"}
}
`;
}

/** Bytes of a program's uniform struct, rounded up to WGSL's 16-byte struct alignment. */
export function uniformBytes(p: Program): number {
  return Math.max(16, Math.ceil((p.uniforms.length * 4) / 16) * 16);
}

/** Writes a call's uniforms into `view` at byte `offset`, each field as its declared type. */
export function writeUniforms(
  call: ProgramCall,
  view: DataView,
  offset: number,
): void {
  const { program, uniforms } = call;
  if (uniforms.length !== program.uniforms.length)
    throw new Error(
      `${program.key}: ${uniforms.length} uniform values for ${program.uniforms.length} fields.`,
    );
  program.uniforms.forEach((field, i) => {
    const v = uniforms[i]!;
    const at = offset + 4 * i;
    if (field.type === "f32") view.setFloat32(at, v, true);
    else if (field.type === "i32") view.setInt32(at, v, true);
    else view.setUint32(at, v >>> 0, true);
  });
}

/**
 * A 1-D grid of `groups` workgroups within the per-dimension limit, wrapping into y (flat programs recover the
 * position with their `index`, and must ignore invocations past the end).
 */
export function flatGrid(
  groups: number,
  maxPerDimension = 65535,
): [number, number, number] {
  const x = Math.max(1, Math.min(groups, maxPerDimension));
  return [x, Math.max(1, Math.ceil(groups / x)), 1];
}
