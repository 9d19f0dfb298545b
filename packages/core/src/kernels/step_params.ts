/**
 * The step parameters: the few numbers of a compiled training step that change from one micro-batch to the next.
 * They are one small uniform buffer, written once per micro-batch, that every program of the step may read as
 * `step.<field>`; everything else a program reads is fixed when the step is planned.
 */

/** Parameter groups AdamW can tell apart (LoRA+ uses two). */
export const MAX_PARAM_GROUPS = 4;

export const STEP_PARAMS_WGSL = /* wgsl */ `
struct StepParams {
  // This micro-batch's dropout seed; each adapted layer hashes it with its own salt.
  dropoutSeed : u32,
  // 0 on an optimizer step's first micro-batch (gradients overwrite the gradient buffer), 1 after (they add).
  accumulate : u32,
  // Each loss token's weight: 1 / (loss tokens of the whole optimizer step).
  lossScale : f32,
  // Global-norm clipping threshold; 0 turns clipping off.
  maxGradNorm : f32,
  // AdamW, per parameter group: (lr·lrScale / (1 − β1^t), √(1 − β2^t), 1 − lr·lrScale·weightDecay, unused).
  adam : array<vec4<f32>, ${MAX_PARAM_GROUPS}>,
  // Decoding: the position of this run's first token; the KV cache holds positions before it.
  position : u32,
}`;

/** The struct's bytes: position after the AdamW groups, the whole rounded up to 16 (WGSL uniform layout). */
export const STEP_PARAMS_BYTES = 16 + 16 * MAX_PARAM_GROUPS + 16;
const POSITION_OFFSET = 16 + 16 * MAX_PARAM_GROUPS;

/** What a step's parameters hold, before they are laid out. */
export interface StepParams {
  dropoutSeed: number;
  accumulate: boolean;
  lossScale: number;
  maxGradNorm: number;
  /** One entry per parameter group, in group order. */
  adam: { stepSize: number; bias2Sqrt: number; decay: number }[];
  /** Decoding: the absolute position of the run's first token (0 for training steps). */
  position?: number;
}

/** The step parameters of a forward-only decoding run whose first token is at `position`. */
export function decodeStepParams(position: number): StepParams {
  return {
    dropoutSeed: 0,
    accumulate: false,
    lossScale: 1,
    maxGradNorm: 0,
    adam: [],
    position,
  };
}

/** The bytes of `StepParams` as WGSL lays them out (uniform address space). */
export function encodeStepParams(p: StepParams): ArrayBuffer {
  if (p.adam.length > MAX_PARAM_GROUPS)
    throw new Error(
      `${p.adam.length} parameter groups; the step parameters hold at most ${MAX_PARAM_GROUPS}.`,
    );
  const buffer = new ArrayBuffer(STEP_PARAMS_BYTES);
  const view = new DataView(buffer);
  view.setUint32(0, p.dropoutSeed >>> 0, true);
  view.setUint32(4, p.accumulate ? 1 : 0, true);
  view.setFloat32(8, p.lossScale, true);
  view.setFloat32(12, p.maxGradNorm, true);
  p.adam.forEach((g, i) => {
    view.setFloat32(16 + 16 * i, g.stepSize, true);
    view.setFloat32(20 + 16 * i, g.bias2Sqrt, true);
    view.setFloat32(24 + 16 * i, g.decay, true);
  });
  view.setUint32(POSITION_OFFSET, p.position ?? 0, true);
  return buffer;
}
