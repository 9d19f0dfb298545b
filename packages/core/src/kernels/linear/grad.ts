/**
 * The gradient of WebtuneLinear. Each input's gradient is a closure, so tfjs computes only what is on the path:
 * dx alone for a frozen base under LoRA, dW and db too for a full fine-tune.
 *
 *   dx = dy·Wᵀ: the same kernel with the weight read the other way round
 *   dW = xᵀ·dy for [in, out] weights, dyᵀ·x for [out, in]
 *   db = Σ_t dy
 */
import {
  engine,
  registerGradient,
  sum,
  type NamedAttrMap,
  type Tensor,
} from "@tensorflow/tfjs";
import { LINEAR_KERNELS, type WeightRead } from "./attrs.js";

export function registerLinearGradient(): void {
  registerGradient({
    kernelName: LINEAR_KERNELS.forward,
    inputsToSave: ["x", "W"],
    gradFunc: (dyOrDys: Tensor | Tensor[], saved: Tensor[], attrs) => {
      const dy = dyOrDys as Tensor;
      const [x, W] = saved as [Tensor, Tensor];
      const wLayout = (attrs as NamedAttrMap)["wLayout"] as WeightRead;
      const flipped: WeightRead = wLayout === "kn" ? "nk" : "kn";
      const product = (a: Tensor, b: Tensor) =>
        engine().runKernel(LINEAR_KERNELS.transposedProduct, {
          a,
          b,
        }) as Tensor;
      return {
        x: () =>
          engine().runKernel(
            LINEAR_KERNELS.forward,
            { x: dy, W },
            { wLayout: flipped },
          ) as Tensor,
        W: () => (wLayout === "kn" ? product(x, dy) : product(dy, x)),
        bias: () => sum(dy, 0),
      };
    },
  });
}
