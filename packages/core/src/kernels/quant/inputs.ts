/**
 * How a frozen weight (`Matrix`) enters a tfjs kernel: its validation, its named inputs and its attrs, shared by
 * the linear, LoRA linear and gather ops.
 *
 * tfjs saves a kernel's inputs for the gradient by a fixed list of names (`inputsToSave`), and every listed name
 * must be present. So every packed format binds the same three names: W (the words), WScales (absmax, or the
 * double-quant codes) and WSuper (the super-scales); a format without a part repeats W's words there. Kernels
 * bind only the parts that `scaleInputs` picks from the attrs.
 */
import type * as tf from "@tensorflow/tfjs";
import { ShapeError } from "../../errors.js";
import { packedSizes } from "./codec.js";
import { isPacked, type Matrix, type PackedMatrix } from "./packed.js";
import type { WeightFormat } from "./shader.wgsl.js";

/** Kernel attrs describing how W is stored. */
export interface WeightAttrs {
  wFormat: WeightFormat;
  /** The block scales are themselves int8-quantized. */
  doubleQuant: boolean;
  /** The double-quant offset (0 otherwise), bound as the `wOffset` uniform. */
  wOffset: number;
}

export const FLOAT32_WEIGHT: WeightAttrs = {
  wFormat: "float32",
  doubleQuant: false,
  wOffset: 0,
};

export function weightAttrs(m: Matrix): WeightAttrs {
  if (!isPacked(m)) return FLOAT32_WEIGHT;
  const s = m.scales;
  return {
    wFormat: m.format,
    doubleQuant: s?.kind === "double",
    wOffset: s?.kind === "double" ? s.offset : 0,
  };
}

/** Reads the weight attrs tfjs hands a kernel; absent ones mean a float32 W. */
export function readWeightAttrs(attrs: Record<string, unknown>): WeightAttrs {
  return {
    wFormat: (attrs["wFormat"] as WeightFormat | undefined) ?? "float32",
    doubleQuant: (attrs["doubleQuant"] as boolean | undefined) ?? false,
    wOffset: (attrs["wOffset"] as number | undefined) ?? 0,
  };
}

/** W, WScales and WSuper of a packed matrix (see the file comment for the repeated words). */
export function packedKernelInputs(m: PackedMatrix): {
  W: tf.Tensor;
  WScales: tf.Tensor;
  WSuper: tf.Tensor;
} {
  const s = m.scales;
  if (s === null) return { W: m.data, WScales: m.data, WSuper: m.data };
  if (s.kind === "absmax")
    return { W: m.data, WScales: s.absmax, WSuper: m.data };
  return { W: m.data, WScales: s.codes, WSuper: s.superScale };
}

/** The scale inputs a kernel binds after W, in the order of `scaleBindingNames`. */
export function scaleInputs<T>(
  inputs: { WScales?: T; WSuper?: T },
  a: WeightAttrs,
): T[] {
  if (a.wFormat === "float32" || a.wFormat === "float16") return [];
  return a.doubleQuant ? [inputs.WScales!, inputs.WSuper!] : [inputs.WScales!];
}

/** The byte size of each buffer a weight binds, for the storage-binding limit. */
export function weightBindings(name: string, m: Matrix): [string, number][] {
  if (!isPacked(m)) return [[`${name} [${m.shape.join(", ")}]`, m.size * 4]];
  const what = `${name} (packed ${m.format} [${m.shape.join(", ")}])`;
  const [W, ...scales] = m.tensors();
  return [
    [`${what} words`, W!.size * 4],
    ...scales.map((t, i): [string, number] => [
      `${what} scales ${i}`,
      t.size * 4,
    ]),
  ];
}

/**
 * The [rows, cols] of a frozen weight, after checking it: a live 2-D float32 tensor, or a live packed matrix
 * whose arrays have the lengths its format and shape call for.
 */
export function checkMatrix(
  op: string,
  name: string,
  m: Matrix,
): [number, number] {
  if (!isPacked(m)) {
    const t = m as tf.Tensor;
    const shape = `[${t.shape.join(", ")}]`;
    if (t.isDisposed)
      throw new ShapeError(`${op}: ${name} ${shape} is already disposed.`);
    if (t.dtype !== "float32")
      throw new ShapeError(
        `${op}: ${name} must be float32, got ${t.dtype} ${shape}.`,
      );
    if (t.rank !== 2)
      throw new ShapeError(`${op}: ${name} must be 2-D, got ${shape}.`);
    return [t.shape[0]!, t.shape[1]!];
  }
  const what = `${op}: ${name} (packed ${m.format} [${m.shape.join(", ")}])`;
  if (m.tensors().some((t) => t.isDisposed))
    throw new ShapeError(`${what} is already disposed.`);
  const s = m.scales;
  const want = packedSizes(m.format, m.shape, s?.kind === "double");
  const ok =
    m.data.dtype === "int32" &&
    m.data.size === want.words &&
    (m.format === "float16"
      ? s === null
      : s !== null &&
        (s.kind === "absmax"
          ? s.absmax.size === want.blocks
          : s.codes.dtype === "int32" &&
            s.codes.size === want.codeWords &&
            s.superScale.size === want.groups));
  if (!ok)
    throw new ShapeError(
      `${what} has arrays of the wrong length or dtype for its format (expected ${JSON.stringify(want)}). ` +
        "Build packed matrices with packMatrix or uploadPacked.",
    );
  return m.shape;
}
