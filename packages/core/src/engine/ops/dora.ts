/**
 * DoRA layers in a compiled step (kernels/dora/program.ts): LoRA's matmuls, then each output column scaled by
 * magnitude / ‖W + s·B·A‖, the norm taken per output row of the merged weight and detached (DoRA §4.3, as PEFT):
 *
 *   WAt = A·Wᵀ  [R, OUT],  AAt = A·Aᵀ  [R, R]
 *   norm_o = √(‖W_o‖² + 2s·⟨B_o, WAt_·o⟩ + s²·⟨B_o, (B·AAt)_o⟩),  ratio = m / norm
 *   z = x·W + s·drop(x)·Aᵀ·Bᵀ,  y = ratio ∘ z + b (+ residual)
 *   dz = dy ∘ ratio,  dm = Σ_rows dy ∘ z / norm,  then LoRA's backward from dz
 *
 * Letters: N rows, IN and OUT features, R rank.
 */
import {
  doraBackward as doraBackwardCall,
  doraGram,
  doraNorm,
  doraScaleForward,
} from "../../kernels/dora/program.js";
import { matmulCall } from "../../kernels/lora_linear/program.js";
import type { BoundMatrix, BoundParam, StepBuilder } from "../builder.js";
import type { GraphTensor } from "../graph.js";
import {
  features,
  loraBackward,
  loraForward,
  type LinearOptions,
  type LoraBinding,
  type LoraSaved,
  type WeightLayout,
} from "./linear.js";

/** DoRA's own parts of a layer: the magnitude (trained) and ‖W_o‖² of the frozen weight (a constant). */
export interface DoraBinding {
  magnitude: BoundParam;
  rowNormSq: GraphTensor;
}

export interface DoraSaved {
  lora: LoraSaved;
  z: GraphTensor;
  ratio: GraphTensor;
  norm: GraphTensor;
}

/** ratio [OUT] = m / ‖W + s·B·A‖ per output row, and the norm [OUT]. */
function columnScale(
  s: StepBuilder,
  label: string,
  w: BoundMatrix,
  layout: WeightLayout,
  lora: LoraBinding,
  dora: DoraBinding,
): { ratio: GraphTensor; norm: GraphTensor } {
  const [IN, OUT] = features(w, layout);
  const R = lora.r;
  const WAt = s.g.activation(`${label}.dora_WAt`, [R, OUT]);
  s.g.dispatch(
    `${label} dora A·Wᵀ`,
    matmulCall(
      { M: R, N: OUT, K: IN },
      {
        xLayout: "mk",
        wLayout: layout === "in_out" ? "kn" : "nk",
        dropout: "none",
        lowRank: "none",
        lowRankMask: false,
        bias: false,
        wFormat: w.attrs.wFormat,
        doubleQuant: w.attrs.doubleQuant,
      },
      s.software,
      { wOffset: w.attrs.wOffset },
    ),
    [WAt, lora.A.value, w.data, ...w.scales],
  );
  const AAt = s.g.activation(`${label}.dora_AAt`, [R, R]);
  s.g.dispatch(`${label} dora A·Aᵀ`, doraGram(R, IN), [AAt, lora.A.value]);
  const norm = s.g.activation(`${label}.dora_norm`, [OUT]);
  const ratio = s.g.activation(`${label}.dora_ratio`, [OUT]);
  s.g.dispatch(`${label} dora norm`, doraNorm(OUT, R, lora.scale), [
    norm,
    ratio,
    dora.rowNormSq,
    lora.B.value,
    WAt,
    AAt,
    dora.magnitude.value,
  ]);
  return { ratio, norm };
}

/** y [N, OUT] = ratio ∘ (x·W + s·drop(x)·Aᵀ·Bᵀ) + b (+ residual). */
export function doraForward(
  s: StepBuilder,
  label: string,
  x: GraphTensor,
  w: BoundMatrix,
  layout: WeightLayout,
  lora: LoraBinding,
  dora: DoraBinding,
  options: LinearOptions = {},
): { y: GraphTensor; saved: DoraSaved } {
  const { ratio, norm } = columnScale(s, label, w, layout, lora, dora);
  // The bias and the skip connection are added after the scaling, so the LoRA matmul carries neither.
  const { y: z, saved } = loraForward(s, `${label}.dora_z`, x, w, layout, lora);
  const [N, OUT] = z.shape as [number, number];
  const y = s.g.activation(`${label}.out`, [N, OUT]);
  const { bias, residual } = options;
  s.g.dispatch(
    `${label} dora scale`,
    doraScaleForward(N, OUT, bias !== undefined, residual !== undefined),
    [
      y,
      z,
      ratio,
      ...(bias ? [bias.value] : []),
      ...(residual ? [residual] : []),
    ],
  );
  return { y, saved: { lora: saved, z, ratio, norm } };
}

/** dm into the gradient buffer, then LoRA's backward from dz = dy ∘ ratio. */
export function doraBackward(
  s: StepBuilder,
  label: string,
  dy: GraphTensor,
  saved: DoraSaved,
  w: BoundMatrix,
  layout: WeightLayout,
  lora: LoraBinding,
  dora: DoraBinding,
  options: { into?: GraphTensor; inputGrad?: boolean } = {},
): GraphTensor | undefined {
  const [N, OUT] = saved.z.shape as [number, number];
  const dz = s.g.activation(`${label}.dora_dz`, [N, OUT]);
  // A frozen magnitude still scales dz; its gradient then goes to scratch.
  const dm = dora.magnitude.grad ?? s.g.activation(`${label}.dora_dm`, [OUT]);
  s.g.dispatch(`${label} dora backward`, doraBackwardCall(N, OUT), [
    dz,
    dm,
    dy,
    saved.z,
    saved.ratio,
    saved.norm,
  ]);
  return loraBackward(s, label, dz, saved.lora, w, layout, lora, options);
}
