/**
 * LoraLinear: the adapters of one Linear layer, keyed by adapter name (PEFT's per-adapter dicts), with the
 * forward pass, DoRA, and merge/unmerge. It sees only a Linear: its name, frozen weight, bias and layout.
 *
 * Letters: IN, OUT features, R rank. A: [R, IN], B: [OUT, R], magnitude: [OUT].
 */
import * as tf from "@tensorflow/tfjs";
import type { StepBuilder } from "../engine/builder.js";
import type { LoraBinding } from "../engine/ops/linear.js";
import { layerSalt, layerSeed } from "../kernels/lora_linear/dropout.js";
import { linear } from "../kernels/linear/op.js";
import { loraLinear } from "../kernels/lora_linear/op.js";
import { dequantizeMatrix } from "../kernels/gather/op.js";
import { isPacked, type Matrix } from "../kernels/quant/packed.js";
import type { Linear, LinearAdapter } from "../models/layers.js";

/** One adapter's weights on one layer. */
export interface LoraWeights {
  A: tf.Variable<tf.Rank.R2>;
  B: tf.Variable<tf.Rank.R2>;
  r: number;
  alpha: number;
  /** alpha / r, or alpha / √r with rsLoRA. */
  scale: number;
  dropout: number;
  /** DoRA's per-output magnitude; undefined for plain LoRA. */
  magnitude?: tf.Variable<tf.Rank.R1>;
}

/** What every LoraLinear of a model shares with the adapter manager. */
export interface AdapterState {
  active: string | undefined;
  disabled: boolean;
  /** Dropout applies only while training. */
  training: boolean;
  /** Advanced once per training step, so each step draws new dropout masks. */
  dropoutSeed: number;
}

/** Identity forward, zero gradient: DoRA treats ‖W + s·B·A‖ as a constant (DoRA paper §4.3, as PEFT does). */
const stopGradient = tf.customGrad(((x: tf.Tensor) => ({
  value: x.clone(),
  gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
})) as unknown as Parameters<typeof tf.customGrad>[0]) as (
  x: tf.Tensor,
) => tf.Tensor;

/** The f32 values of a frozen weight: itself, or a dequantized copy made inside the caller's tidy. */
function f32(W: Matrix): tf.Tensor2D {
  return isPacked(W) ? dequantizeMatrix(W) : W;
}

export class LoraLinear implements LinearAdapter {
  readonly adapters = new Map<string, LoraWeights>();
  /** Adapters folded into the weight, in merge order, and the weight before the first merge. */
  private merged: string[] = [];
  private original: Matrix | undefined;
  /** ‖W_o‖² of the current frozen weight, for DoRA's norm; recomputed when the weight changes. */
  private rowNormSq: { weight: Matrix; value: tf.Tensor1D } | undefined;

  constructor(
    readonly layer: Linear,
    /** Position among the model's adapted layers, so each layer draws its own dropout mask. */
    readonly index: number,
    private readonly state: AdapterState,
  ) {}

  get mergedAdapters(): readonly string[] {
    return this.merged;
  }

  /** The adapter `forward` applies now: the active one, unless adapters are disabled or one is merged. */
  private applied(): LoraWeights | undefined {
    const name = this.state.active;
    const w = name === undefined ? undefined : this.adapters.get(name);
    return !w || this.state.disabled || this.merged.length > 0 ? undefined : w;
  }

  /** A, B and DoRA's magnitude of the adapter `forward` applies now, if they train; none when it applies none. */
  trainableVariables(): tf.Variable[] {
    const w = this.applied();
    if (!w) return [];
    return [w.A, w.B, ...(w.magnitude ? [w.magnitude] : [])].filter(
      (v) => v.trainable,
    );
  }

  stepBinding(s: StepBuilder): LoraBinding | undefined {
    const w = this.applied();
    if (!w) return undefined;
    return {
      A: s.param(w.A),
      B: s.param(w.B),
      r: w.r,
      scale: w.scale,
      dropout: s.training ? w.dropout : 0,
      salt: layerSalt(this.index),
      dora: w.magnitude && {
        magnitude: s.param(w.magnitude),
        rowNormSq: s.tensor(
          this.rowNormSquared(),
          `${this.layer.name}.weight row norms`,
        ),
      },
    };
  }

  forward(layer: Linear, x: tf.Tensor): tf.Tensor {
    const w = this.applied();
    if (!w) return layer.forwardBase(x);
    const options = {
      scale: w.scale,
      weightLayout: layer.layout,
      dropout: this.state.training ? w.dropout : 0,
      seed: layerSeed(this.state.dropoutSeed, this.index),
    };
    if (!w.magnitude)
      return loraLinear(x, layer.weight, layer.bias, w.A, w.B, options);
    // DoRA: y = m / ‖W + s·B·A‖ ∘ (x·W + s·drop(x)·Aᵀ·Bᵀ) + b, the norm per output row, detached.
    return tf.tidy(() => {
      const ratio = w.magnitude!.div(stopGradient(this.weightNorm(w)));
      const y = loraLinear(x, layer.weight, null, w.A, w.B, options).mul(ratio);
      return layer.bias ? y.add(layer.bias) : y;
    });
  }

  /** ‖W_o‖² of the current frozen weight, per output row (cached until the weight changes). */
  rowNormSquared(): tf.Tensor1D {
    const W = this.layer.weight;
    if (this.rowNormSq?.weight !== W) {
      this.rowNormSq?.value.dispose();
      const inOut = this.layer.layout === "in_out";
      this.rowNormSq = {
        weight: W,
        // Kept: it outlives whatever scope asks for it first.
        value: tf.keep(
          tf.tidy(() =>
            f32(W)
              .square()
              .sum(inOut ? 0 : 1),
          ) as tf.Tensor1D,
        ),
      };
    }
    return this.rowNormSq.value;
  }

  /**
   * ‖W_o + s·(B·A)_o‖ for every output o, without forming the [OUT, IN] update:
   * ‖W_o‖² + 2s·⟨B_o, (W·Aᵀ)_o⟩ + s²·⟨B_o, (B·A·Aᵀ)_o⟩.
   */
  weightNorm(w: LoraWeights): tf.Tensor1D {
    const rowNormSq = this.rowNormSquared();
    return tf.tidy(() => {
      const W = this.layer.weight;
      // (W·Aᵀ)ᵀ = A·Wᵀ [R, OUT]: the frozen-linear kernel reads W in place, packed or not.
      const WAt = linear(w.A, W, null, this.layer.layout).transpose(); // [OUT, R]
      const cross = w.B.mul(WAt)
        .sum(1)
        .mul(2 * w.scale);
      const BAAt = tf.matMul(w.B, tf.matMul(w.A, w.A, false, true)); // [OUT, R]
      const own = w.B.mul(BAAt)
        .sum(1)
        .mul(w.scale * w.scale);
      return rowNormSq.add(cross).add(own).sqrt() as tf.Tensor1D;
    });
  }

  /** The weight with one adapter folded in, in the stored layout: W + s·(B·A) (transposed for Conv1D), DoRA-scaled. */
  mergedWeight(name: string): tf.Tensor2D {
    const base = this.layer.weight;
    const w = this.adapters.get(name)!;
    return tf.tidy(() => {
      const inOut = this.layer.layout === "in_out";
      const delta = tf.matMul(w.B, w.A).mul(w.scale); // [OUT, IN]
      // A packed base is dequantized to merge into (PEFT does the same for bitsandbytes layers): the merged
      // layer is f32 until unmerge restores the packed original.
      let merged = f32(base).add(
        inOut ? delta.transpose() : delta,
      ) as tf.Tensor2D;
      if (w.magnitude) {
        const ratio = w.magnitude.div(this.weightNorm(w));
        merged = merged.mul(inOut ? ratio : ratio.expandDims(1)) as tf.Tensor2D;
      }
      return merged;
    });
  }

  /** Folds an adapter into the frozen weight; the original is kept so unmerge restores it exactly. */
  merge(name: string): void {
    const merged = this.mergedWeight(name);
    this.original ??= this.layer.weight;
    if (this.layer.weight !== this.original) this.layer.weight.dispose();
    this.layer.weight = merged;
    this.merged.push(name);
  }

  unmerge(): void {
    if (!this.original) return;
    this.layer.weight.dispose();
    this.layer.weight = this.original;
    this.original = undefined;
    this.merged = [];
  }

  /** Keeps the merged weight as the new base: the adapters no longer apply to it. */
  commitMerge(): void {
    if (this.original && this.original !== this.layer.weight)
      this.original.dispose();
    this.original = undefined;
    this.merged = [];
  }

  deleteAdapter(name: string): void {
    const w = this.adapters.get(name);
    if (!w) return;
    tf.dispose([w.A, w.B, ...(w.magnitude ? [w.magnitude] : [])]);
    this.adapters.delete(name);
  }

  dispose(): void {
    for (const name of [...this.adapters.keys()]) this.deleteAdapter(name);
    this.rowNormSq?.value.dispose();
    this.rowNormSq = undefined;
  }
}
