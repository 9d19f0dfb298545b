/**
 * Gradients of the gather kernels. WebtuneGatherRows registers none: its tables are frozen and its ids are
 * integers, so nothing on a differentiated path flows through it; tfjs records it and skips it, and only a
 * request for the gradient of the table itself fails (with tfjs's "gradient function not found").
 * WebtuneDequantize feeds merges and DoRA norms that may sit inside tf.grads, so it says clearly why a packed
 * matrix has no gradient.
 */
import { registerGradient, type Tensor } from "@tensorflow/tfjs";
import { ShapeError } from "../../errors.js";
import { GATHER_KERNELS } from "./attrs.js";

function frozen(name: string): Tensor {
  throw new ShapeError(
    `dequantizeMatrix: ${name} belongs to a packed (f16/int8/NF4) matrix, which is frozen and has no gradient. ` +
      "To train a weight, load it as float32.",
  );
}

export function registerGatherGradients(): void {
  registerGradient({
    kernelName: GATHER_KERNELS.dequantize,
    inputsToSave: [],
    gradFunc: () => ({
      W: () => frozen("W"),
      WScales: () => frozen("WScales"),
      WSuper: () => frozen("WSuper"),
    }),
  });
}
