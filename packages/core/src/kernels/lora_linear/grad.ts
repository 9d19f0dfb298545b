/**
 * The gradient of WebtuneLoraLinear (and of its packed-W twin). Each input's gradient is a closure, so tfjs
 * computes only those on the path to what is being differentiated: dA and dB while training LoRA, dx when a layer
 * below needs it.
 *
 *   g  = dy·B                              (once, shared by dx and dA)
 *   dx = dy·Wᵀ + s/(1-p) · mask ∘ (g·A)    (a packed W is read, still packed, the other way round)
 *   dA = s · gᵀ·drop(x)
 *   dB = s · dyᵀ·h,  h = drop(x)·Aᵀ recomputed
 */
import {
  engine,
  registerGradient,
  type NamedAttrMap,
  type Tensor,
} from "@tensorflow/tfjs";
import { ConfigError, ShapeError } from "../../errors.js";
import { KERNELS } from "./attrs.js";

function frozen(name: string): Tensor {
  throw new ConfigError(
    `loraLinear: ${name} is a frozen base tensor and has no gradient. Differentiate with respect to A and B only ` +
      "(keep base weights out of tf.grads/variableGrads, or make them non-trainable), or use tf.matMul for full fine-tuning.",
  );
}

function frozenPacked(name: string): Tensor {
  throw new ShapeError(
    `loraLinear: ${name} belongs to a packed (f16/int8/NF4) base weight, which is frozen and has no gradient. ` +
      "Differentiate with respect to A and B (or x) only; to train the weight itself, load it as float32.",
  );
}

/** Registers the gradient of the f32-W kernel and of the packed-W kernel, which also saves W's scales. */
export function registerLoraGradient(): void {
  for (const packed of [false, true]) {
    registerGradient({
      kernelName: packed ? KERNELS.forwardPacked : KERNELS.forward,
      inputsToSave: packed
        ? ["x", "W", "A", "B", "WScales", "WSuper"]
        : ["x", "W", "A", "B"],
      gradFunc: (
        dyOrDys: Tensor | Tensor[],
        saved: Tensor[],
        attrs: NamedAttrMap,
      ) => {
        const dy = dyOrDys as Tensor;
        const [x, W, A, B, WScales, WSuper] = saved as Tensor[];
        const run = (name: string, inputs: Record<string, Tensor>) =>
          engine().runKernel(name, inputs, attrs) as Tensor;
        const g = run(KERNELS.projectGrad, { dy, B: B! });
        const wParts: Record<string, Tensor> = packed
          ? { WScales: WScales!, WSuper: WSuper! }
          : {};
        const noGrad = packed ? frozenPacked : frozen;
        return {
          x: () => run(KERNELS.gradX, { dy, W: W!, g, A: A!, ...wParts }),
          A: () => run(KERNELS.gradA, { g, x: x! }),
          B: () => run(KERNELS.gradB, { dy, x: x!, A: A! }),
          W: () => noGrad("W"),
          WScales: () => noGrad("WScales"),
          WSuper: () => noGrad("WSuper"),
          bias: () => frozen("bias"),
        };
      },
    });
  }
}
