/**
 * The gradient of WebtuneLoraLinear. Each input's gradient is a closure, so tfjs computes only those on the path
 * to what is being differentiated: dA and dB while training LoRA, dx when a layer below needs it.
 *
 *   g  = dy·B                              (once, shared by dx and dA)
 *   dx = dy·Wᵀ + s/(1-p) · mask ∘ (g·A)
 *   dA = s · gᵀ·drop(x)
 *   dB = s · dyᵀ·h,  h = drop(x)·Aᵀ recomputed
 */
import {
  engine,
  registerGradient,
  type NamedAttrMap,
  type Tensor,
} from "@tensorflow/tfjs";
import { ConfigError } from "../../errors.js";
import { KERNELS } from "./attrs.js";

function frozen(name: string): Tensor {
  throw new ConfigError(
    `loraLinear: ${name} is a frozen base tensor and has no gradient. Differentiate with respect to A and B only ` +
      "(keep base weights out of tf.grads/variableGrads, or make them non-trainable), or use tf.matMul for full fine-tuning.",
  );
}

export function registerLoraGradient(): void {
  registerGradient({
    kernelName: KERNELS.forward,
    inputsToSave: ["x", "W", "A", "B"],
    gradFunc: (
      dyOrDys: Tensor | Tensor[],
      saved: Tensor[],
      attrs: NamedAttrMap,
    ) => {
      const dy = dyOrDys as Tensor;
      const [x, W, A, B] = saved as [Tensor, Tensor, Tensor, Tensor];
      const run = (name: string, inputs: Record<string, Tensor>) =>
        engine().runKernel(name, inputs, attrs) as Tensor;
      const g = run(KERNELS.projectGrad, { dy, B });
      return {
        x: () => run(KERNELS.gradX, { dy, W, g, A }),
        A: () => run(KERNELS.gradA, { g, x }),
        B: () => run(KERNELS.gradB, { dy, x, A }),
        W: () => frozen("W"),
        bias: () => frozen("bias"),
      };
    },
  });
}
