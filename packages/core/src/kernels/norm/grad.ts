/**
 * Gradients of the fused norms, composed from stock tfjs ops (their cost is in the backward pass's matmuls, not
 * here). With r = rsqrt(mean(x²) + eps) and g = dy·scale for RMSNorm:
 *   dx = r·g − x·r³·mean(g·x),   dscale = Σ_rows dy·x·r
 * With x̂ = (x − mean)·r, r = rsqrt(var + eps) and g = dy·weight for LayerNorm:
 *   dx = r·(g − mean(g) − x̂·mean(g·x̂)),   dweight = Σ_rows dy·x̂,   dbias = Σ_rows dy
 */
import * as tf from "@tensorflow/tfjs";
import { NORM_KERNELS } from "./attrs.js";

export function registerNormGradients(): void {
  tf.registerGradient({
    kernelName: NORM_KERNELS.rms,
    inputsToSave: ["x", "scale"],
    gradFunc: (dyOrDys, saved, attrs) => {
      const dy = dyOrDys as tf.Tensor;
      const [x, scale] = saved as [tf.Tensor, tf.Tensor];
      const eps = (attrs as tf.NamedAttrMap)["eps"] as number;
      const r = () => tf.rsqrt(x.square().mean(-1, true).add(eps));
      return {
        x: () =>
          tf.tidy(() => {
            const inv = r();
            const g = dy.mul(scale);
            const proj = g.mul(x).mean(-1, true);
            return g.mul(inv).sub(x.mul(inv.pow(3)).mul(proj));
          }),
        scale: () => tf.tidy(() => dy.mul(x).mul(r()).sum(0)),
      };
    },
  });
  tf.registerGradient({
    kernelName: NORM_KERNELS.layer,
    inputsToSave: ["x", "weight"],
    gradFunc: (dyOrDys, saved, attrs) => {
      const dy = dyOrDys as tf.Tensor;
      const [x, weight] = saved as [tf.Tensor, tf.Tensor];
      const eps = (attrs as tf.NamedAttrMap)["eps"] as number;
      const normalised = () => {
        const { mean, variance } = tf.moments(x, -1, true);
        const inv = tf.rsqrt(variance.add(eps));
        return { xhat: x.sub(mean).mul(inv), inv };
      };
      return {
        x: () =>
          tf.tidy(() => {
            const { xhat, inv } = normalised();
            const g = dy.mul(weight);
            return g
              .sub(g.mean(-1, true))
              .sub(xhat.mul(g.mul(xhat).mean(-1, true)))
              .mul(inv);
          }),
        weight: () => tf.tidy(() => dy.mul(normalised().xhat).sum(0)),
        bias: () => dy.sum(0),
      };
    },
  });
}
