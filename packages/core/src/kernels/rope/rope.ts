/**
 * Rotary position embedding, rotate_half style, as one elementwise WGSL dispatch on WebGPU (tfjs's split, neg,
 * concat, two muls and an add were six, each over the whole q or k):
 *   y[d] = x[d]·cos[t, d] + s·r[d]·sin[t, d],  r = [−x₂, x₁] (the halves of the head dim swapped, the first negated)
 * with s = +1. The rotation is orthogonal and cos/sin repeat over the halves, so the gradient is the same kernel
 * with s = −1: dx[d] = dy[d]·cos − r(dy)[d]·sin.
 */
import * as tf from "@tensorflow/tfjs";
import {
  runProgram,
  webgpuBackendOf,
  type WebGPUProgram,
} from "../../backend/programs.js";

const KERNEL = "WebtuneRope";
const WORKGROUP = 64;

/** Bindings (tfjs order): result, X [B·H·T·D], cosT [T, D], sinT [T, D]. One invocation per element (tfjs's flat index). */
const ROPE_WGSL = `
fn main(flat : i32) {
  if (flat >= uniforms.size) { return; }
  let D = uniforms.D;
  let half = D / 2;
  let d = flat % D;
  let t = (flat / D) % uniforms.T;
  var rotated : f32;
  if (d < half) { rotated = -X[flat + half]; } else { rotated = X[flat - half]; }
  result[flat] = X[flat] * cosT[t * D + d] + uniforms.sinSign * rotated * sinT[t * D + d];
}
`;

class RopeProgram implements WebGPUProgram {
  outputShape: number[];
  shaderKey = "webtuneRope";
  dispatchLayout = { x: [0] };
  dispatch: [number, number, number];
  variableNames = ["X", "cosT", "sinT"];
  workgroupSize: [number, number, number] = [WORKGROUP, 1, 1];
  uniforms = "size : i32, T : i32, D : i32, sinSign : f32,";

  constructor(
    shape: number[],
    readonly groupsPerRow: number,
  ) {
    this.outputShape = shape;
    const groups = Math.ceil(shape.reduce((a, b) => a * b, 1) / WORKGROUP);
    // Past the per-dimension limit, workgroups wrap into y; tfjs's flat index counts them in order.
    this.dispatch = [
      Math.min(groups, groupsPerRow),
      Math.ceil(groups / groupsPerRow),
      1,
    ];
  }

  getUserCode(): string {
    return ROPE_WGSL;
  }
}

let registered = false;

function ensureRegistered(): void {
  if (registered) return;
  tf.registerKernel({
    kernelName: KERNEL,
    backendName: "webgpu",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, cos, sin } = inputs as tf.NamedTensorInfoMap;
      const gpu = webgpuBackendOf(backend);
      const groupsPerRow = Math.min(
        65535,
        gpu.device.limits.maxComputeWorkgroupsPerDimension,
      );
      const [T, D] = cos!.shape as [number, number];
      const size = x!.shape.reduce((a, b) => a * b, 1);
      return runProgram(
        gpu,
        new RopeProgram(x!.shape, groupsPerRow),
        [x!, cos!, sin!],
        [
          { type: "int32", data: [size] },
          { type: "int32", data: [T] },
          { type: "int32", data: [D] },
          { type: "float32", data: [attrs!["sinSign"] as number] },
        ],
      );
    },
  });
  tf.registerGradient({
    kernelName: KERNEL,
    inputsToSave: ["cos", "sin"],
    gradFunc: (dy, saved, attrs) => {
      const [cos, sin] = saved as [tf.Tensor, tf.Tensor];
      const sinSign = (attrs as tf.NamedAttrMap)["sinSign"] as number;
      return {
        x: () =>
          tf
            .engine()
            .runKernel(
              KERNEL,
              { x: dy as tf.Tensor, cos, sin },
              { sinSign: -sinSign },
            ) as tf.Tensor,
        cos: () => tf.zerosLike(cos),
        sin: () => tf.zerosLike(sin),
      };
    },
  });
  registered = true;
}

/**
 * x·cos + rotate_half(x)·sin, with rotate_half(x) = [−x₂, x₁]. x: [B, heads, T, D]; cos/sin: [T, D], each row's two
 * halves equal, as `ropeTables` makes them (the fused gradient relies on it).
 *
 * @example
 * ```ts
 * const { cos, sin } = ropeTables(invFreq, past, T);
 * const q = applyRope(splitHeads(qProj, H), cos, sin);
 * ```
 */
export function applyRope(
  x: tf.Tensor4D,
  cos: tf.Tensor2D,
  sin: tf.Tensor2D,
): tf.Tensor4D {
  if (tf.getBackend() !== "webgpu" || x.dtype !== "float32")
    return applyRopeComposed(x, cos, sin);
  ensureRegistered();
  return tf
    .engine()
    .runKernel(KERNEL, { x, cos, sin }, { sinSign: 1 }) as tf.Tensor4D;
}

/** RoPE from stock ops: the path on other backends, and the tests' autograd oracle. */
export function applyRopeComposed(
  x: tf.Tensor4D,
  cos: tf.Tensor2D,
  sin: tf.Tensor2D,
): tf.Tensor4D {
  return tf.tidy(() => {
    const half = x.shape[3] / 2;
    const [x1, x2] = tf.split(x, [half, half], 3);
    const rotated = tf.concat([x2!.neg(), x1!], 3);
    return x.mul(cos).add(rotated.mul(sin)) as tf.Tensor4D;
  });
}
