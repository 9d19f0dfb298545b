/**
 * The compiled step's LayerNorm and RMSNorm programs (forward with saved statistics, backward to x, written or
 * added into the output) against their float64 CPU references, on rows shorter and longer than the 64-invocation
 * workgroup and not multiples of it; the backward references against central finite differences; a grid of more
 * than 65535 rows, wrapped into y.
 *
 * Tolerance: 1e-5 relative (`expectClose`'s floor is the output's rms). The statistics are f32 sums of at most
 * 576 terms (about 1e-6 of error), and the backward's cancelling terms are measured against that floor.
 *
 * Letters: N rows, C features.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { disposeRuntime } from "@webtune/core";
import {
  layerNormBackward,
  layerNormForward,
  rmsNormBackward,
  rmsNormForward,
} from "../../../packages/core/src/kernels/norm/program.js";
import {
  layerNormBackwardReference,
  layerNormForwardReference,
  rmsNormBackwardReference,
  rmsNormForwardReference,
} from "../../../packages/core/src/kernels/norm/reference.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { expectClose, seededValues } from "../../helpers/tensors.js";
import { f32, finiteDifferenceGradient, ProgramCase } from "./program_case.js";

const RTOL = 1e-5;
const EPS = 1e-5;
const N = 37;

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

/** x [N, C] with a non-zero mean per row, a weight around 1, a bias, dy, and a prior gradient to add to. */
function data(N: number, C: number) {
  return {
    x: seededValues(N * C, 11).map((v, i) => 2 * v + 0.3 * ((i / C) % 5)),
    weight: seededValues(C, 12).map((v) => 1 + 0.5 * v),
    bias: seededValues(C, 13),
    dy: seededValues(N * C, 14),
    prior: seededValues(N * C, 15),
  };
}

const plus = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  Float64Array.from(a, (v, i) => v + b[i]!);

describe("norm programs", () => {
  for (const C of [50, 576]) {
    const shape = { N, C, eps: EPS };

    it(`LayerNorm forward [${N}, ${C}] gives y, mean and rstd of the reference`, async (ctx) => {
      await needGpu(ctx);
      const d = data(N, C);
      const pc = new ProgramCase();
      const y = pc.output("y", N * C);
      const mean = pc.output("mean", N);
      const rstd = pc.output("rstd", N);
      pc.dispatch("ln", layerNormForward(N, C, EPS), [
        y,
        mean,
        rstd,
        pc.input("x", d.x),
        pc.input("weight", d.weight),
        pc.input("bias", d.bias),
      ]);
      const [gy, gmean, grstd] = await pc.run();
      const want = layerNormForwardReference(d.x, d.weight, d.bias, shape);
      expectClose(gy!, want.y, RTOL, "y");
      expectClose(gmean!, want.mean, RTOL, "mean");
      expectClose(grstd!, want.rstd, RTOL, "rstd");
    });

    it(`RMSNorm forward [${N}, ${C}] gives y and rstd of the reference`, async (ctx) => {
      await needGpu(ctx);
      const d = data(N, C);
      const pc = new ProgramCase();
      const y = pc.output("y", N * C);
      const rstd = pc.output("rstd", N);
      pc.dispatch("rms", rmsNormForward(N, C, EPS), [
        y,
        rstd,
        pc.input("x", d.x),
        pc.input("scale", d.weight),
      ]);
      const [gy, grstd] = await pc.run();
      const want = rmsNormForwardReference(d.x, d.weight, shape);
      expectClose(gy!, want.y, RTOL, "y");
      expectClose(grstd!, want.rstd, RTOL, "rstd");
    });

    for (const accumulate of [false, true]) {
      const how = accumulate ? "added into" : "written over";
      it(`LayerNorm backward [${N}, ${C}], dx ${how} the output, matches the reference`, async (ctx) => {
        await needGpu(ctx);
        const d = data(N, C);
        const { mean, rstd } = layerNormForwardReference(
          d.x,
          d.weight,
          d.bias,
          shape,
        );
        const pc = new ProgramCase();
        const dx = pc.output("dx", N * C, d.prior);
        pc.dispatch("ln backward", layerNormBackward(N, C, accumulate), [
          dx,
          pc.input("dy", d.dy),
          pc.input("x", d.x),
          pc.input("mean", f32(mean)),
          pc.input("rstd", f32(rstd)),
          pc.input("weight", d.weight),
        ]);
        const [got] = await pc.run();
        const want = layerNormBackwardReference(d.dy, d.x, d.weight, shape);
        expectClose(got!, accumulate ? plus(d.prior, want) : want, RTOL, "dx");
      });

      it(`RMSNorm backward [${N}, ${C}], dx ${how} the output, matches the reference`, async (ctx) => {
        await needGpu(ctx);
        const d = data(N, C);
        const { rstd } = rmsNormForwardReference(d.x, d.weight, shape);
        const pc = new ProgramCase();
        const dx = pc.output("dx", N * C, d.prior);
        pc.dispatch("rms backward", rmsNormBackward(N, C, accumulate), [
          dx,
          pc.input("dy", d.dy),
          pc.input("x", d.x),
          pc.input("rstd", f32(rstd)),
          pc.input("scale", d.weight),
        ]);
        const [got] = await pc.run();
        const want = rmsNormBackwardReference(d.dy, d.x, d.weight, shape);
        expectClose(got!, accumulate ? plus(d.prior, want) : want, RTOL, "dx");
      });
    }
  }

  it("the backward references are the finite-difference gradients of the forward references", () => {
    const shape = { N: 3, C: 7, eps: 1e-3 };
    const d = data(shape.N, shape.C);
    const ln = finiteDifferenceGradient(
      (x) => layerNormForwardReference(x, d.weight, d.bias, shape).y,
      d.x,
      d.dy,
    );
    expectClose(
      layerNormBackwardReference(d.dy, d.x, d.weight, shape),
      ln,
      1e-7,
      "LayerNorm dx",
    );
    const rms = finiteDifferenceGradient(
      (x) => rmsNormForwardReference(x, d.weight, shape).y,
      d.x,
      d.dy,
    );
    expectClose(
      rmsNormBackwardReference(d.dy, d.x, d.weight, shape),
      rms,
      1e-7,
      "RMSNorm dx",
    );
  });

  it("more than 65535 rows wrap into y; the groups past the last row write nothing", async (ctx) => {
    await needGpu(ctx);
    const [rows, C] = [65535 + 70, 3];
    const call = rmsNormForward(rows, C, EPS);
    expect(call.workgroups).toEqual([65535, 2, 1]);
    const d = data(rows, C);
    const pc = new ProgramCase();
    // One spare row past the end of y, which no workgroup may touch.
    const y = pc.output("y", (rows + 1) * C, new Float32Array((rows + 1) * C));
    const rstd = pc.output("rstd", rows + 1, new Float32Array(rows + 1));
    pc.dispatch("rms", call, [
      y,
      rstd,
      pc.input("x", d.x),
      pc.input("scale", d.weight),
    ]);
    const [gy, grstd] = await pc.run();
    const want = rmsNormForwardReference(d.x, d.weight, {
      N: rows,
      C,
      eps: EPS,
    });
    expectClose(gy!.subarray(0, rows * C), want.y, RTOL, "y");
    expectClose(grstd!.subarray(0, rows), want.rstd, RTOL, "rstd");
    expect([...gy!.subarray(rows * C), grstd![rows]]).toEqual([0, 0, 0, 0]);
  });
});
