/**
 * The compiled step's activation programs (plain and gated, SiLU and GELU-tanh, forward and backward; the gated
 * backward's two outputs from one dispatch) against their float64 CPU references on an odd size; saturation
 * without inf or NaN for huge |x|; a grid of more than 65535 workgroups, wrapped into y; and the references'
 * derivatives against central finite differences.
 *
 * Tolerance: 1e-5 relative (`expectClose`, floored at the output's rms): one exp, a division and a few products
 * per element, in f32.
 *
 * Letters: S elements.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { disposeRuntime } from "@webtune/core";
import type { Activation } from "../../../packages/core/src/kernels/activation/activation.js";
import {
  activationBackward,
  activationForward,
  gatedActivationBackward,
  gatedActivationForward,
  packedGatedActivationForward,
} from "../../../packages/core/src/kernels/activation/program.js";
import {
  act,
  activationBackwardReference,
  activationForwardReference,
  actGrad,
  gatedActivationBackwardReference,
  gatedActivationForwardReference,
} from "../../../packages/core/src/kernels/activation/reference.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { expectClose, seededValues } from "../../helpers/tensors.js";
import { ProgramCase } from "./program_case.js";

const RTOL = 1e-5;
/** 37 tokens × 50 features: not a multiple of the 64-invocation workgroup. */
const S = 37 * 50;
const KINDS: Activation[] = ["silu", "gelu_tanh"];

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

const values = (n: number, seed: number, scale: number) =>
  seededValues(n, seed).map((v) => scale * v);

describe("activation programs", () => {
  for (const kind of KINDS) {
    it(`${kind}: y = act(x) and dx = dy·act'(x) match the reference`, async (ctx) => {
      await needGpu(ctx);
      const [x, dy] = [values(S, 41, 8), values(S, 42, 1)];
      const pc = new ProgramCase();
      const y = pc.output("y", S);
      const dx = pc.output("dx", S);
      const xs = pc.input("x", x);
      pc.dispatch("act", activationForward(S, kind), [y, xs]);
      pc.dispatch("act backward", activationBackward(S, kind), [
        dx,
        pc.input("dy", dy),
        xs,
      ]);
      const [gy, gdx] = await pc.run();
      expectClose(gy!, activationForwardReference(x, kind), RTOL, "y");
      expectClose(gdx!, activationBackwardReference(dy, x, kind), RTOL, "dx");
    });

    it(`${kind}: gated y = act(g)·u from one [R, 2F] tensor (gate then up in each row) matches the reference`, async (ctx) => {
      await needGpu(ctx);
      const [R, F] = [7, 37];
      const [g, u] = [values(R * F, 46, 8), values(R * F, 47, 2)];
      const packed = new Float32Array(2 * R * F);
      for (let r = 0; r < R; r++) {
        packed.set(g.subarray(r * F, (r + 1) * F), 2 * r * F);
        packed.set(u.subarray(r * F, (r + 1) * F), (2 * r + 1) * F);
      }
      const pc = new ProgramCase();
      const y = pc.output("y", R * F);
      pc.dispatch("packed gated", packedGatedActivationForward(R, F, kind), [
        y,
        pc.input("gu", packed),
      ]);
      const [gy] = await pc.run();
      expectClose(gy!, gatedActivationForwardReference(g, u, kind), RTOL, "y");
    });

    it(`${kind}: gated y = act(g)·u, and dg, du from one dispatch, match the reference`, async (ctx) => {
      await needGpu(ctx);
      const [g, u, dy] = [values(S, 43, 8), values(S, 44, 2), values(S, 45, 1)];
      const pc = new ProgramCase();
      const y = pc.output("y", S);
      const dg = pc.output("dg", S);
      const du = pc.output("du", S);
      const [gs, us] = [pc.input("g", g), pc.input("u", u)];
      pc.dispatch("gated", gatedActivationForward(S, kind), [y, gs, us]);
      pc.dispatch("gated backward", gatedActivationBackward(S, kind), [
        dg,
        du,
        pc.input("dy", dy),
        gs,
        us,
      ]);
      const [gy, gdg, gdu] = await pc.run();
      const want = gatedActivationBackwardReference(dy, g, u, kind);
      expectClose(gy!, gatedActivationForwardReference(g, u, kind), RTOL, "y");
      expectClose(gdg!, want.dg, RTOL, "dg");
      expectClose(gdu!, want.du, RTOL, "du");
    });
  }

  it("huge |x| saturates to the reference's values, with no inf or NaN", async (ctx) => {
    await needGpu(ctx);
    const x = Float32Array.from([
      0, 1e-3, -1e-3, 20, -20, 40, -40, 100, -100, 1e4, -1e4, 1e20, -1e20,
    ]);
    const dy = new Float32Array(x.length).fill(1);
    const pc = new ProgramCase();
    const outs = KINDS.map((kind) => {
      const y = pc.output(`${kind} y`, x.length);
      const dx = pc.output(`${kind} dx`, x.length);
      const xs = pc.input(`${kind} x`, x);
      pc.dispatch(kind, activationForward(x.length, kind), [y, xs]);
      pc.dispatch(`${kind} backward`, activationBackward(x.length, kind), [
        dx,
        pc.input(`${kind} dy`, dy),
        xs,
      ]);
      return kind;
    });
    const got = await pc.run();
    outs.forEach((kind, k) => {
      const [y, dx] = [got[2 * k]!, got[2 * k + 1]!];
      x.forEach((v, i) => {
        // Each value against its own size (at least 1): the values span 40 orders of magnitude.
        const close = (a: number, e: number, what: string) =>
          expect(
            Math.abs(a - e),
            `${kind} ${what}(${v}) = ${a}, expected ${e}`,
          ).toBeLessThanOrEqual(RTOL * Math.max(1, Math.abs(e)));
        close(y[i]!, act(v, kind), "act");
        close(dx[i]!, actGrad(v, kind), "act'");
      });
    });
  });

  it("more than 65535 workgroups wrap into y", async (ctx) => {
    await needGpu(ctx);
    const size = 65535 * 64 + 100;
    const call = activationForward(size, "silu");
    expect(call.workgroups).toEqual([65535, 2, 1]);
    const x = values(size, 46, 8);
    const pc = new ProgramCase();
    const y = pc.output("y", size);
    pc.dispatch("silu", call, [y, pc.input("x", x)]);
    const [got] = await pc.run();
    expectClose(got!, activationForwardReference(x, "silu"), RTOL, "y");
  });

  it("the references' act' is the finite-difference derivative of act", () => {
    const points = [-6, -2.5, -1, -0.3, 0, 0.2, 0.9, 1.7, 3, 5.5];
    const h = 1e-6;
    for (const kind of KINDS) {
      const numeric = points.map(
        (v) => (act(v + h, kind) - act(v - h, kind)) / (2 * h),
      );
      expectClose(
        points.map((v) => actGrad(v, kind)),
        numeric,
        1e-8,
        `${kind}'`,
      );
    }
  });
});
