/**
 * A frozen matrix stored compactly on the GPU: f16, or blockwise-quantized int8 or NF4 (QLoRA), optionally with
 * double-quantized block scales. tfjs has no f16 or 4-bit dtypes, so every form is int32 words that the WGSL
 * kernels unpack while they load tiles: no f32 copy of the matrix is ever made.
 *
 * Layout, shared by the CPU codec (`codec.ts`) and the WGSL loaders:
 * - Elements are in the matrix's row-major order as stored in the checkpoint (flat index i = row·cols + col),
 *   whatever its layout ([in, out] for GPT-2's Conv1D, [out, in] for nn.Linear).
 * - float16: IEEE half, element i in word i >> 1, the low 16 bits for even i (what WGSL's unpack2x16float reads).
 * - int8: blocks of BLOCK_SIZE consecutive elements with absmax[b] = max |x| over block b;
 *   code = round(127·x / absmax) in [-127, 127], two's complement, element i in byte (i & 3) of word i >> 2
 *   (lowest byte first); x ≈ code / 127 · absmax.
 * - nf4: the same blocks; code = index of the NF4 level nearest to x / absmax, element i in nibble (i & 7) of
 *   word i >> 3 (lowest nibble first); x ≈ NF4_LEVELS[code] · absmax.
 * - double quantization (int8 and nf4): the absmax values themselves are int8-quantized around their mean
 *   `offset`, in groups of SUPER_BLOCK_SIZE blocks: superScale[g] = max |absmax - offset| over group g,
 *   code = round(127·(absmax - offset) / superScale[g]) packed as int8 (4 per word, as above);
 *   absmax ≈ code / 127 · superScale[g] + offset. (QLoRA stores them as 8-bit floats; int8 keeps the shader short.)
 * The last block (and group) may be partial. Padding bits of the last word are zero.
 */
import * as tf from "@tensorflow/tfjs";

export type PackedFormat = "float16" | "int8" | "nf4";

/** Elements per absmax block (QLoRA's 64). */
export const BLOCK_SIZE = 64;
/** Blocks per group of the double-quantized absmax (QLoRA's 256). */
export const SUPER_BLOCK_SIZE = 256;

/**
 * The 16 NormalFloat-4 levels of QLoRA (Dettmers et al. 2023, appendix E), exactly as bitsandbytes tabulates them:
 * quantiles of N(0, 1) normalised to [-1, 1], with an exact zero.
 */
export const NF4_LEVELS: readonly number[] = [
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
  -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
  0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
  0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
  0.7229568362236023, 1.0,
];

/** Per-block scales of an int8 or NF4 matrix. */
export type BlockScales =
  | { kind: "absmax"; absmax: tf.Tensor1D }
  | {
      kind: "double";
      /** int32 words of int8 absmax codes, 4 per word. */
      codes: tf.Tensor1D;
      /** f32, one per group of SUPER_BLOCK_SIZE blocks. */
      superScale: tf.Tensor1D;
      offset: number;
    };

/** A frozen [rows, cols] matrix in f16, int8 or NF4. Owns its tensors. */
export class PackedMatrix {
  constructor(
    readonly format: PackedFormat,
    readonly shape: [number, number],
    /** int32 words. */
    readonly data: tf.Tensor1D,
    /** null for float16. */
    readonly scales: BlockScales | null,
  ) {}

  /** Logical elements. */
  get size(): number {
    return this.shape[0] * this.shape[1];
  }

  get isDisposed(): boolean {
    return this.data.isDisposed;
  }

  /** Every GPU tensor this matrix is made of. */
  tensors(): tf.Tensor[] {
    const s = this.scales;
    if (!s) return [this.data];
    return s.kind === "absmax"
      ? [this.data, s.absmax]
      : [this.data, s.codes, s.superScale];
  }

  /** Bytes on the GPU, scales included. */
  get bytes(): number {
    return this.tensors().reduce((n, t) => n + t.size * 4, 0);
  }

  dispose(): void {
    tf.dispose(this.tensors());
  }
}

/** A frozen weight: a plain f32 tensor, or a packed one. */
export type Matrix = tf.Tensor2D | PackedMatrix;

export function isPacked(m: tf.Tensor | PackedMatrix): m is PackedMatrix {
  return m instanceof PackedMatrix;
}

/** The tensors a weight (or a norm vector) is made of, for disposal and memory accounting. */
export function matrixTensors(m: tf.Tensor | PackedMatrix): tf.Tensor[] {
  return isPacked(m) ? m.tensors() : [m];
}

/** Bytes a weight (or a norm vector) takes on the GPU. */
export function matrixBytes(m: tf.Tensor | PackedMatrix): number {
  return isPacked(m) ? m.bytes : m.size * 4;
}
