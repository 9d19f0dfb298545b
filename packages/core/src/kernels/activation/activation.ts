/**
 * MLP activations as one elementwise WGSL dispatch on WebGPU: act(x), or act(gate)·up for gated MLPs (Llama's
 * SwiGLU, Gemma's GeGLU). tfjs composed them from two ops (SiLU) to eight (GELU-tanh), plus the product with up,
 * each reading and writing the whole [tokens, intermediate] activation.
 *   silu(x)      = x·σ(x)
 *   gelu_tanh(x) = ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))   (GPT-2's gelu_new, Gemma's gelu_pytorch_tanh)
 * Gradients come from stock ops: d/dx = dy·up·act'(x), d/dup = dy·act(x).
 */
import * as tf from "@tensorflow/tfjs";
import { ShapeError } from "../../errors.js";
import {
  runProgram,
  webgpuBackendOf,
  type WebGPUProgram,
} from "../../backend/programs.js";

export type Activation = "silu" | "gelu_tanh";

/** Two kernel names, because tfjs saves the same named inputs for every call of one kernel's gradient. */
const KERNELS = { plain: "WebtuneActivation", gated: "WebtuneGatedActivation" };
const WORKGROUP = 64;
/** √(2/π), GELU-tanh's inner factor. */
export const GELU_K = Math.sqrt(2 / Math.PI);

/** `fn act(v : f32) -> f32` of each activation (also spliced into the compiled step's programs). */
export const ACT_WGSL: Record<Activation, string> = {
  silu: "fn act(v : f32) -> f32 { return v / (1.0 + exp(-v)); }",
  // tanh(u) = 1 − 2/(exp(2u) + 1), written so that a large |u| gives ±1 and never inf/inf.
  gelu_tanh: `fn act(v : f32) -> f32 {
  let u = ${GELU_K} * (v + 0.044715 * v * v * v);
  let t = 1.0 - 2.0 / (exp(2.0 * clamp(u, -40.0, 40.0)) + 1.0);
  return 0.5 * v * (1.0 + t);
}`,
};

class ActivationProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [0] };
  dispatch: [number, number, number];
  variableNames: string[];
  workgroupSize: [number, number, number] = [WORKGROUP, 1, 1];
  uniforms = "size : i32,";

  constructor(
    shape: number[],
    private readonly act: Activation,
    private readonly gated: boolean,
    maxPerDimension: number,
  ) {
    this.outputShape = shape;
    this.variableNames = gated ? ["X", "U"] : ["X"];
    this.shaderKey = `webtuneActivation_${act}_${gated}`;
    const groups = Math.ceil(shape.reduce((a, b) => a * b, 1) / WORKGROUP);
    // Past the per-dimension limit, workgroups wrap into y; tfjs's flat index counts them in order.
    this.dispatch = [
      Math.min(groups, maxPerDimension),
      Math.ceil(groups / maxPerDimension),
      1,
    ];
  }

  getUserCode(): string {
    return `${ACT_WGSL[this.act]}
fn main(flat : i32) {
  if (flat >= uniforms.size) { return; }
  result[flat] = act(X[flat])${this.gated ? " * U[flat]" : ""};
}
`;
  }
}

/** act(x) from stock ops: the path on other backends, and the tests' autograd oracle. */
export function activationComposed(x: tf.Tensor, act: Activation): tf.Tensor {
  return tf.tidy(() => {
    if (act === "silu") return x.mul(x.sigmoid());
    const inner = x.add(x.pow(3).mul(0.044715)).mul(GELU_K);
    return x.mul(0.5).mul(inner.tanh().add(1));
  });
}

/** act'(x) from stock ops. */
function activationDerivative(x: tf.Tensor, act: Activation): tf.Tensor {
  return tf.tidy(() => {
    if (act === "silu") {
      const s = x.sigmoid();
      return s.mul(x.mul(tf.scalar(1).sub(s)).add(1));
    }
    const t = x.add(x.pow(3).mul(0.044715)).mul(GELU_K).tanh();
    const dInner = x
      .square()
      .mul(3 * 0.044715)
      .add(1)
      .mul(GELU_K);
    return t
      .add(1)
      .mul(0.5)
      .add(x.mul(0.5).mul(tf.scalar(1).sub(t.square())).mul(dInner));
  });
}

let registered = false;

function ensureRegistered(): void {
  if (registered) return;
  for (const gated of [false, true]) {
    const kernelName = gated ? KERNELS.gated : KERNELS.plain;
    tf.registerKernel({
      kernelName,
      backendName: "webgpu",
      kernelFunc: ({ inputs, backend, attrs }) => {
        const { x, up } = inputs as tf.NamedTensorInfoMap;
        const gpu = webgpuBackendOf(backend);
        const size = x!.shape.reduce((a, b) => a * b, 1);
        const program = new ActivationProgram(
          x!.shape,
          attrs!["act"] as Activation,
          gated,
          gpu.device.limits.maxComputeWorkgroupsPerDimension,
        );
        return runProgram(gpu, program, gated ? [x!, up!] : [x!], [
          { type: "int32", data: [size] },
        ]);
      },
    });
    tf.registerGradient({
      kernelName,
      inputsToSave: gated ? ["x", "up"] : ["x"],
      gradFunc: (dy, saved, attrs) => {
        const [x, up] = saved as [tf.Tensor, tf.Tensor | undefined];
        const act = (attrs as tf.NamedAttrMap)["act"] as Activation;
        const g = dy as tf.Tensor;
        return {
          x: () =>
            tf.tidy(() =>
              (up ? g.mul(up) : g).mul(activationDerivative(x, act)),
            ),
          up: () => tf.tidy(() => g.mul(activationComposed(x, act))),
        };
      },
    });
  }
  registered = true;
}

/**
 * act(x), or act(x)·up when `up` is given (a gated MLP: act(gate_proj(h)) · up_proj(h)).
 *
 * @example
 * ```ts
 * const hidden = activation(gateProj.forward(h), "silu", upProj.forward(h)); // SwiGLU
 * ```
 */
export function activation(
  x: tf.Tensor,
  act: Activation,
  up?: tf.Tensor,
): tf.Tensor {
  if (up && !tf.util.arraysEqual(up.shape, x.shape))
    throw new ShapeError(
      `activation: up [${up.shape.join(", ")}] must have the gate's shape [${x.shape.join(", ")}].`,
    );
  if (tf.getBackend() !== "webgpu" || x.dtype !== "float32" || x.size === 0)
    return tf.tidy(() => {
      const y = activationComposed(x, act);
      return up ? y.mul(up) : y;
    });
  ensureRegistered();
  return tf
    .engine()
    .runKernel(up ? KERNELS.gated : KERNELS.plain, up ? { x, up } : { x }, {
      act,
    }) as tf.Tensor;
}
