/**
 * The compiled step's query/key preparation (optional per-head RMSNorm, then RoPE) against its float64 CPU
 * reference: heads read from a strided view (H of the heads of a fused [B, T, width] projection, at a non-zero
 * column), head dims shorter and longer than the 64 lanes (D = 12, 64, 256), with and without the norm. The
 * backward writes only the view (the rest of dX is pre-filled and must keep its values). Without the norm the
 * forward is the tfjs path's RoPE (`applyRope`); the backward reference is checked against central finite
 * differences of the forward reference, on tables whose halves differ.
 *
 * Tolerance: 1e-5 relative (`expectClose`, floored at the output's rms): RoPE is two products and a sum per
 * element; the norm's sums run over at most 256 terms.
 *
 * Letters: B batch, H heads, T tokens, D head dim.
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { disposeRuntime } from "@webtune/core";
import {
  projectionHeads,
  qkRopeBackward,
  qkRopeForward,
  type HeadView,
} from "../../../packages/core/src/kernels/rope/program.js";
import {
  qkRopeBackwardReference,
  qkRopeForwardReference,
  type HeadNorm,
} from "../../../packages/core/src/kernels/rope/reference.js";
import { applyRope } from "../../../packages/core/src/kernels/rope/rope.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { expectClose, seededValues } from "../../helpers/tensors.js";
import { f32, finiteDifferenceGradient, ProgramCase } from "./program_case.js";

const RTOL = 1e-5;
const EPS = 1e-6;
const [B, T, H] = [2, 37, 3];

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

/** cos/sin [T, D] as `ropeTables` makes them: angle t·θ^(−2i/D), both halves equal. */
function tables(T: number, D: number) {
  const half = D / 2;
  const cos = new Float32Array(T * D);
  const sin = new Float32Array(T * D);
  for (let t = 0; t < T; t++)
    for (let i = 0; i < half; i++) {
      const angle = t * 10000 ** (-(2 * i) / D);
      cos[t * D + i] = cos[t * D + i + half] = Math.cos(angle);
      sin[t * D + i] = sin[t * D + i + half] = Math.sin(angle);
    }
  return { cos, sin };
}

/** H heads at column 2·D of a [B, T, (2 + H + 1)·D] fused projection output, and its values. */
function fused(D: number) {
  const width = (2 + H + 1) * D;
  const view = projectionHeads(B, T, H, D, 2 * D, width);
  const x = seededValues(B * T * width, 31).map((v, i) => 2 * v + (i % 3));
  return { view, x };
}

const normOf = (D: number): HeadNorm => ({
  weight: seededValues(D, 32).map((v) => 1 + 0.5 * v),
  eps: EPS,
});

describe("query/key RoPE programs", () => {
  for (const D of [12, 64, 256])
    for (const withNorm of [false, true]) {
      const what = `D = ${D}, ${withNorm ? "RMSNorm then RoPE" : "RoPE only"}`;

      it(`forward from a strided view matches the reference (${what})`, async (ctx) => {
        await needGpu(ctx);
        const { view, x } = fused(D);
        const { cos, sin } = tables(T, D);
        const norm = withNorm ? normOf(D) : undefined;
        const pc = new ProgramCase();
        const y = pc.output("y", B * H * T * D);
        const rstd = withNorm ? pc.output("rstd", B * H * T) : undefined;
        pc.dispatch("q rope", qkRopeForward(view, norm), [
          y,
          ...(rstd ? [rstd] : []),
          pc.input("x", x),
          pc.input("cos", cos),
          pc.input("sin", sin),
          ...(norm ? [pc.input("weight", f32(norm.weight))] : []),
        ]);
        const [gy, grstd] = await pc.run();
        const want = qkRopeForwardReference(x, view, cos, sin, norm);
        expectClose(gy!, want.out, RTOL, "y");
        if (withNorm) expectClose(grstd!, want.rstd, RTOL, "rstd");
      });

      it(`backward into the strided view matches the reference, leaving the rest (${what})`, async (ctx) => {
        await needGpu(ctx);
        const { view, x } = fused(D);
        const { cos, sin } = tables(T, D);
        const norm = withNorm ? normOf(D) : undefined;
        const dy = seededValues(B * H * T * D, 33);
        const prior = seededValues(x.length, 34);
        const pc = new ProgramCase();
        const dx = pc.output("dx", x.length, prior);
        const saved = norm
          ? [
              pc.input("x", x),
              pc.input(
                "rstd",
                f32(qkRopeForwardReference(x, view, cos, sin, norm).rstd),
              ),
            ]
          : [];
        pc.dispatch("q rope backward", qkRopeBackward(view, withNorm), [
          dx,
          pc.input("dy", dy),
          ...saved,
          pc.input("cos", cos),
          pc.input("sin", sin),
          ...(norm ? [pc.input("weight", f32(norm.weight))] : []),
        ]);
        const [got] = await pc.run();
        const want = qkRopeBackwardReference(
          dy,
          x,
          view,
          cos,
          sin,
          norm,
          prior,
        );
        expectClose(got!, want, RTOL, "dx");
      });
    }

  it("without the norm the forward is the tfjs path's applyRope", async (ctx) => {
    await needGpu(ctx);
    const D = 64;
    const x = seededValues(B * H * T * D, 35);
    const { cos, sin } = tables(T, D);
    // A contiguous [B, H, T, D] input is the view with strides (H·T·D, T·D, D).
    const view: HeadView = {
      B,
      H,
      T,
      D,
      offset: 0,
      sB: H * T * D,
      sH: T * D,
      sT: D,
    };
    const pc = new ProgramCase();
    const y = pc.output("y", x.length);
    pc.dispatch("rope", qkRopeForward(view), [
      y,
      pc.input("x", x),
      pc.input("cos", cos),
      pc.input("sin", sin),
    ]);
    const [got] = await pc.run();
    const rotated = tf.tidy(() =>
      applyRope(
        tf.tensor4d(x, [B, H, T, D]),
        tf.tensor2d(cos, [T, D]),
        tf.tensor2d(sin, [T, D]),
      ),
    );
    const want = await rotated.data();
    rotated.dispose();
    expectClose(got!, want, 1e-6, "y");
  });

  it("the backward reference is the finite-difference gradient of the forward reference", () => {
    // B 1, H 2, T 3, D 4: two heads at column 1 of a [1, 3, 10] array; tables with unequal halves.
    const [D, width] = [4, 10];
    const view = projectionHeads(1, 3, 2, D, 1, width);
    const x = seededValues(3 * width, 36).map((v) => 2 * v);
    const cos = seededValues(3 * D, 37);
    const sin = seededValues(3 * D, 38);
    const dy = seededValues(2 * 3 * D, 39);
    const zeros = new Float64Array(x.length);
    for (const norm of [undefined, { ...normOf(D), eps: 1e-3 }]) {
      const numeric = finiteDifferenceGradient(
        (p) => qkRopeForwardReference(p, view, cos, sin, norm).out,
        x,
        dy,
      );
      const analytic = qkRopeBackwardReference(
        dy,
        x,
        view,
        cos,
        sin,
        norm,
        zeros,
      );
      expectClose(analytic, numeric, 1e-7, norm ? "with norm" : "RoPE only");
    }
  });

  it("refuses an odd head dim", () => {
    expect(() => qkRopeForward(projectionHeads(1, 2, 1, 5))).toThrow(/even D/);
  });
});
