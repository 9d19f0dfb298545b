/**
 * Projections in a compiled step: the frozen linear and the LoRA linear, forward and backward, each a few
 * configurations of the tiled matmul (kernels/lora_linear). W is read in its stored layout, packed or not.
 *
 *   linear    y  = x·W (+ b) (+ residual)                     dx = dy·Wᵀ
 *   LoRA      h  = keep · drop(x)·Aᵀ                          y  = x·W (+ b) + s · h·Bᵀ (+ residual)
 *             g  = dy·B                                       dx = dy·Wᵀ + s·keep · mask ∘ (g·A)
 *             dA = s·keep · gᵀ·drop(x)                        dB = s · dyᵀ·h
 *
 * Letters: N rows (tokens), IN and OUT features, R rank. x [N, IN], W [IN, OUT] ('in_out', GPT-2's Conv1D) or
 * [OUT, IN] ('out_in', nn.Linear), A [R, IN], B [OUT, R], h and g [N, R].
 */
import { addInto } from "../../kernels/elementwise/program.js";
import { keepScale } from "../../kernels/lora_linear/dropout.js";
import {
  matmulCalls,
  recordMatmul,
  type MatmulScalars,
} from "../../kernels/lora_linear/program.js";
import type { ProblemShape } from "../../kernels/lora_linear/variant.js";
import {
  PLAIN_MATMUL,
  type MatmulLayout,
} from "../../kernels/lora_linear/shader.wgsl.js";
import { biasGrad } from "../../kernels/grads/column_grads.js";
import type {
  BoundMatrix,
  BoundParam,
  BoundVector,
  StepBuilder,
} from "../builder.js";
import type { GraphTensor, TensorRange } from "../graph.js";
import { recordParamGrads } from "./norm.js";
import type { DoraBinding } from "./dora.js";

export type WeightLayout = "in_out" | "out_in";

/**
 * Records one matmul of the step: one dispatch, or split-K's two where the variant chosen for this shape splits K
 * (its partials [S, M, N] are an activation of their own). `bindings` are the one-pass program's.
 */
function dispatchMatmul(
  s: StepBuilder,
  label: string,
  shape: ProblemShape & { R?: number },
  layout: MatmulLayout,
  bindings: (GraphTensor | TensorRange)[],
  scalars: MatmulScalars = {},
): void {
  recordMatmul(
    matmulCalls(shape, layout, s.software, scalars),
    bindings,
    (elements) => s.g.activation(`${label}.splitk`, [elements]),
    (call, b, pass) =>
      s.g.dispatch(pass === 0 ? label : `${label} (split-K sum)`, call, b),
  );
}

/** The layout fields that bind a frozen W as stored. */
function weightFields(w: BoundMatrix) {
  return { wFormat: w.attrs.wFormat, doubleQuant: w.attrs.doubleQuant };
}

/** [IN, OUT] of a weight stored in `layout`. */
export function features(
  w: BoundMatrix,
  layout: WeightLayout,
): [number, number] {
  return layout === "in_out" ? w.shape : [w.shape[1], w.shape[0]];
}

/**
 * Whether a matmul binding `bindings` arrays can also bind the residual in its epilogue on this device; if not,
 * the residual is added by a dispatch of its own after it.
 */
function residualFits(s: StepBuilder, bindings: number): boolean {
  return bindings + 1 <= s.g.limits.maxStorageBuffersPerShaderStage;
}

/** y += residual, when the matmul could not add it. */
function addResidual(
  s: StepBuilder,
  label: string,
  y: GraphTensor,
  residual: GraphTensor,
): void {
  s.g.dispatch(`${label} residual`, addInto(y.size), [y, residual]);
}

export interface LinearOptions {
  bias?: BoundVector;
  /** Added to the output: the block's skip connection. */
  residual?: GraphTensor;
}

/** y [N, OUT] = x·W (+ b) (+ residual). */
export function linearForward(
  s: StepBuilder,
  label: string,
  x: GraphTensor,
  w: BoundMatrix,
  layout: WeightLayout,
  options: LinearOptions = {},
): GraphTensor {
  const [IN, OUT] = features(w, layout);
  const N = x.size / IN;
  const y = s.g.activation(`${label}.out`, [N, OUT]);
  const bias = options.bias ? [options.bias.value] : [];
  const fused =
    options.residual !== undefined &&
    residualFits(s, 3 + bias.length + w.scales.length);
  dispatchMatmul(
    s,
    label,
    { M: N, N: OUT, K: IN },
    {
      ...PLAIN_MATMUL,
      xLayout: "mk",
      wLayout: layout === "in_out" ? "kn" : "nk",
      bias: options.bias !== undefined,
      residual: fused,
      ...weightFields(w),
    },
    [y, x, w.data, ...bias, ...(fused ? [options.residual!] : []), ...w.scales],
    { wOffset: w.attrs.wOffset },
  );
  if (options.residual && !fused) addResidual(s, label, y, options.residual);
  return y;
}

/**
 * The backward of `linearForward`: dx [N, IN] = dy·Wᵀ (a new tensor, added into `into`, or none without
 * `inputGrad`), and when the layer itself trains (full fine-tuning) dW from its input x and db from dy.
 */
export function linearBackward(
  s: StepBuilder,
  label: string,
  dy: GraphTensor,
  w: BoundMatrix,
  layout: WeightLayout,
  options: {
    into?: GraphTensor;
    inputGrad?: boolean;
    /** The forward's input: needed when W trains. */
    x?: GraphTensor;
    bias?: BoundVector;
  } = {},
): GraphTensor | undefined {
  const [IN, OUT] = features(w, layout);
  const N = dy.size / OUT;
  if (w.grad) weightGrad(s, label, dy, options.x!, w.grad, layout, IN, OUT);
  if (options.bias?.grad)
    recordParamGrads(
      s,
      `${label} dbias`,
      biasGrad(N, OUT),
      [options.bias.grad],
      [dy],
    );
  if (options.inputGrad === false) return undefined;
  const { into } = options;
  const dx = into ?? s.g.activation(`${label}.dx`, [N, IN]);
  dispatchMatmul(
    s,
    `${label} dx`,
    { M: N, N: IN, K: OUT },
    {
      ...PLAIN_MATMUL,
      xLayout: "mk",
      // x·W read W as [IN, OUT] = [K, N] for 'in_out'; dy·Wᵀ reads the same buffer as [N, K].
      wLayout: layout === "in_out" ? "nk" : "kn",
      accumulate: into ? "always" : "none",
      ...weightFields(w),
    },
    [dx, dy, w.data, ...w.scales],
    { wOffset: w.attrs.wOffset },
  );
  return dx;
}

/** dW in W's stored layout: xᵀ·dy [IN, OUT] ('in_out') or dyᵀ·x [OUT, IN] ('out_in'), summed over the rows. */
function weightGrad(
  s: StepBuilder,
  label: string,
  dy: GraphTensor,
  x: GraphTensor,
  grad: TensorRange,
  layout: WeightLayout,
  IN: number,
  OUT: number,
): void {
  const N = dy.size / OUT;
  const [a, b, M, cols] =
    layout === "in_out" ? [x, dy, IN, OUT] : [dy, x, OUT, IN];
  dispatchMatmul(
    s,
    `${label} dW`,
    { M, N: cols, K: N },
    { ...PLAIN_MATMUL, xLayout: "km", wLayout: "kn", accumulate: "step" },
    [grad, a, b],
  );
}

/** One adapter on one layer, as a compiled step binds it. */
export interface LoraBinding {
  A: BoundParam;
  B: BoundParam;
  r: number;
  /** alpha / r, or alpha / √r with rsLoRA. */
  scale: number;
  /** Dropout probability on LoRA's input (0 in forward-only graphs). */
  dropout: number;
  /** The layer's salt, hashed with each micro-batch's dropout seed (`layerSalt`). */
  salt: number;
  /** DoRA's magnitude and the frozen weight's row norms; absent for plain LoRA. */
  dora?: DoraBinding;
}

/** What the LoRA backward needs of its forward: the input and the down-projection. */
export interface LoraSaved {
  x: GraphTensor;
  h: GraphTensor;
}

/** h [N, R] = keep · drop(x)·Aᵀ, then y [N, OUT] = x·W (+ b) + s · h·Bᵀ (+ residual). */
export function loraForward(
  s: StepBuilder,
  label: string,
  x: GraphTensor,
  w: BoundMatrix,
  layout: WeightLayout,
  lora: LoraBinding,
  options: LinearOptions = {},
): { y: GraphTensor; saved: LoraSaved } {
  const [IN, OUT] = features(w, layout);
  const { r: R, dropout } = lora;
  const N = x.size / IN;
  const h = s.g.activation(`${label}.lora_h`, [N, R]);
  dispatchMatmul(
    s,
    `${label} lora_A`,
    { M: N, N: R, K: IN },
    {
      ...PLAIN_MATMUL,
      xLayout: "mk",
      wLayout: "nk",
      dropout: dropout > 0 ? "x" : "none",
    },
    [h, x, lora.A.value],
    { outScale: keepScale(dropout), seedSalt: lora.salt, dropout },
  );
  const y = s.g.activation(`${label}.out`, [N, OUT]);
  const bias = options.bias ? [options.bias.value] : [];
  const fused =
    options.residual !== undefined &&
    residualFits(s, 5 + bias.length + w.scales.length);
  dispatchMatmul(
    s,
    label,
    { M: N, N: OUT, K: IN, R },
    {
      ...PLAIN_MATMUL,
      xLayout: "mk",
      wLayout: layout === "in_out" ? "kn" : "nk",
      lowRank: "nr",
      bias: options.bias !== undefined,
      residual: fused,
      ...weightFields(w),
    },
    [
      y,
      x,
      w.data,
      h,
      lora.B.value,
      ...bias,
      ...(fused ? [options.residual!] : []),
      ...w.scales,
    ],
    { loraScale: lora.scale, wOffset: w.attrs.wOffset },
  );
  if (options.residual && !fused) addResidual(s, label, y, options.residual);
  return { y, saved: { x, h } };
}

/**
 * The LoRA backward: dA and dB into the gradient buffer (added to it after a step's first micro-batch), and
 * dx [N, IN] (a new tensor, added into `into`, or none when `inputGrad` is false: nothing upstream trains).
 */
export function loraBackward(
  s: StepBuilder,
  label: string,
  dy: GraphTensor,
  saved: LoraSaved,
  w: BoundMatrix,
  layout: WeightLayout,
  lora: LoraBinding,
  options: { into?: GraphTensor; inputGrad?: boolean } = {},
): GraphTensor | undefined {
  const [IN, OUT] = features(w, layout);
  const { r: R, dropout, scale } = lora;
  const N = dy.size / OUT;
  const keep = keepScale(dropout);
  const mask = { seedSalt: lora.salt, dropout };
  const g = s.g.activation(`${label}.lora_g`, [N, R]);
  dispatchMatmul(
    s,
    `${label} lora g`,
    { M: N, N: R, K: OUT },
    { ...PLAIN_MATMUL, xLayout: "mk", wLayout: "kn" },
    [g, dy, lora.B.value],
  );
  if (lora.A.grad)
    dispatchMatmul(
      s,
      `${label} lora dA`,
      { M: R, N: IN, K: N },
      {
        ...PLAIN_MATMUL,
        xLayout: "km",
        wLayout: "kn",
        dropout: dropout > 0 ? "w" : "none",
        accumulate: "step",
      },
      [lora.A.grad, g, saved.x],
      { outScale: scale * keep, ...mask },
    );
  if (lora.B.grad)
    dispatchMatmul(
      s,
      `${label} lora dB`,
      { M: OUT, N: R, K: N },
      { ...PLAIN_MATMUL, xLayout: "km", wLayout: "kn", accumulate: "step" },
      [lora.B.grad, dy, saved.h],
      { outScale: scale },
    );
  if (options.inputGrad === false) return undefined;
  const dx = options.into ?? s.g.activation(`${label}.dx`, [N, IN]);
  dispatchMatmul(
    s,
    `${label} dx`,
    { M: N, N: IN, K: OUT, R },
    {
      ...PLAIN_MATMUL,
      xLayout: "mk",
      wLayout: layout === "in_out" ? "nk" : "kn",
      lowRank: "rn",
      lowRankMask: dropout > 0,
      accumulate: options.into ? "always" : "none",
      ...weightFields(w),
    },
    [dx, dy, w.data, g, lora.A.value, ...w.scales],
    { loraScale: scale * keep, wOffset: w.attrs.wOffset, ...mask },
  );
  return dx;
}
