/**
 * The gradient of WebtuneLinear and of its packed-W twin. Each input's gradient is a closure, so tfjs computes
 * only what is on the path: dx alone for a frozen base under LoRA, dW and db too for a full fine-tune.
 *
 *   dx = dy·Wᵀ: the same kernel with the weight read the other way round (a packed W stays packed)
 *   dW = xᵀ·dy for [in, out] weights, dyᵀ·x for [out, in]; a packed W is frozen and has none
 *   db = Σ_t dy
 */
import {
  engine,
  registerGradient,
  sum,
  type NamedAttrMap,
  type Tensor,
} from "@tensorflow/tfjs";
import { ShapeError } from "../../errors.js";
import { LINEAR_KERNELS, type WeightRead } from "./attrs.js";

function frozenPacked(name: string): Tensor {
  throw new ShapeError(
    `linear: ${name} belongs to a packed (f16/int8/NF4) weight, which is frozen and has no gradient. ` +
      "Differentiate with respect to x (and bias) only; to train the weight, load it as float32.",
  );
}

function flip(wLayout: WeightRead): WeightRead {
  return wLayout === "kn" ? "nk" : "kn";
}

function registerF32Gradient(): void {
  registerGradient({
    kernelName: LINEAR_KERNELS.forward,
    inputsToSave: ["x", "W"],
    gradFunc: (dyOrDys: Tensor | Tensor[], saved: Tensor[], attrs) => {
      const dy = dyOrDys as Tensor;
      const [x, W] = saved as [Tensor, Tensor];
      const a = attrs as NamedAttrMap;
      const wLayout = a["wLayout"] as WeightRead;
      const product = (p: Tensor, q: Tensor) =>
        engine().runKernel(LINEAR_KERNELS.transposedProduct, {
          a: p,
          b: q,
        }) as Tensor;
      return {
        x: () =>
          engine().runKernel(
            LINEAR_KERNELS.forward,
            { x: dy, W },
            { ...a, wLayout: flip(wLayout) },
          ) as Tensor,
        W: () => (wLayout === "kn" ? product(x, dy) : product(dy, x)),
        bias: () => sum(dy, 0),
      };
    },
  });
}

function registerPackedGradient(): void {
  registerGradient({
    kernelName: LINEAR_KERNELS.forwardPacked,
    inputsToSave: ["W", "WScales", "WSuper"],
    gradFunc: (dyOrDys: Tensor | Tensor[], saved: Tensor[], attrs) => {
      const dy = dyOrDys as Tensor;
      const [W, WScales, WSuper] = saved as [Tensor, Tensor, Tensor];
      const a = attrs as NamedAttrMap;
      return {
        x: () =>
          engine().runKernel(
            LINEAR_KERNELS.forwardPacked,
            { x: dy, W, WScales, WSuper },
            { ...a, wLayout: flip(a["wLayout"] as WeightRead) },
          ) as Tensor,
        W: () => frozenPacked("W"),
        WScales: () => frozenPacked("WScales"),
        WSuper: () => frozenPacked("WSuper"),
        bias: () => sum(dy, 0),
      };
    },
  });
}

function registerFrozenGradient(): void {
  registerGradient({
    kernelName: LINEAR_KERNELS.forwardFrozen,
    inputsToSave: ["W"],
    gradFunc: (dyOrDys: Tensor | Tensor[], saved: Tensor[], attrs) => {
      const dy = dyOrDys as Tensor;
      const [W] = saved as [Tensor];
      const a = attrs as NamedAttrMap;
      return {
        x: () =>
          engine().runKernel(
            LINEAR_KERNELS.forwardFrozen,
            { x: dy, W },
            { ...a, wLayout: flip(a["wLayout"] as WeightRead) },
          ) as Tensor,
        W: () => {
          throw new ShapeError(
            "linear: W was passed with { frozen: true }, so its input was not kept for a weight gradient. " +
              "Leave `frozen` off to differentiate with respect to W.",
          );
        },
        bias: () => sum(dy, 0),
      };
    },
  });
}

export function registerLinearGradient(): void {
  registerF32Gradient();
  registerFrozenGradient();
  registerPackedGradient();
}
