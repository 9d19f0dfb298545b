/**
 * y += x, elementwise, as a plain program for the compiled step: the residual add when it cannot ride in a
 * matmul's epilogue (a device with few storage bindings per shader, and a projection that already binds many:
 * LoRA, a bias and a double-quantized base). One invocation per element, workgroups wrapped into y.
 *
 * Letters: S elements.
 */
import { flatGrid, type ProgramCall } from "../program.js";

const WORKGROUP = 64;

/** Y[i] = Y[i] + X[i]. Bindings: Y [S], X [S]. Uniforms: size (S). */
export function addInto(size: number): ProgramCall {
  return {
    program: {
      key: `webtuneEngine_addInto_w${WORKGROUP}`,
      storage: [
        { name: "Y", element: "f32", access: "read_write" },
        { name: "X", element: "f32", access: "read" },
      ],
      uniforms: [{ name: "size", type: "i32" }],
      stepParams: false,
      workgroupSize: [WORKGROUP, 1, 1],
      body: `
fn main(i : i32) {
  if (i >= uniforms.size) { return; }
  Y[i] = Y[i] + X[i];
}`,
      flat: true,
    },
    uniforms: [size],
    workgroups: flatGrid(Math.ceil(size / WORKGROUP)),
  };
}
