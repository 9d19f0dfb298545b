/**
 * The engine's machinery on a real device: a graph of matmuls compiled once and run several times, its buffers
 * placed by lifetime, its bind groups made once, and its results against the float64 CPU reference (1e-4
 * relative, f32 accumulation over at most 200 terms).
 */
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { disposeRuntime, gpuDevice, ShapeError } from "@webtune/core";
import { tensorBuffer } from "../../../packages/core/src/backend/interop.js";
import { Engine } from "../../../packages/core/src/engine/engine.js";
import {
  graphLimits,
  StepGraph,
} from "../../../packages/core/src/engine/graph.js";
import { matmulCall } from "../../../packages/core/src/kernels/lora_linear/program.js";
import { F32_W } from "../../../packages/core/src/kernels/lora_linear/shader.wgsl.js";
import { linearReference } from "../../../packages/core/src/kernels/linear/reference.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { expectClose, seededValues } from "../../helpers/tensors.js";

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

const PLAIN = {
  xLayout: "mk",
  dropout: "none",
  lowRank: "none",
  lowRankMask: false,
  bias: false,
  ...F32_W,
} as const;

describe("Engine", () => {
  it("runs a compiled graph of two matmuls against a tfjs weight, again and again", async (ctx) => {
    await needGpu(ctx);
    const device = gpuDevice();
    const [T, IN, MID, OUT] = [37, 50, 24, 19];
    const x = seededValues(T * IN, 1);
    const W1 = seededValues(IN * MID, 2); // [IN, MID], 'kn'
    const W2 = seededValues(OUT * MID, 3); // [OUT, MID], 'nk'
    const w2 = tf.tensor2d(W2, [OUT, MID]);
    const g = new StepGraph(graphLimits(device));
    const xs = g.input("x", [T, IN], "f32");
    const w1 = g.constant("W1", [IN, MID], W1);
    const w2t = g.external("W2", [OUT, MID], () => tensorBuffer(w2));
    const h = g.activation("h", [T, MID]);
    const y = g.activation("y", [T, OUT]);
    g.dispatch(
      "h = x·W1",
      matmulCall({ M: T, N: MID, K: IN }, { ...PLAIN, wLayout: "kn" }, false),
      [h, xs, w1],
    );
    g.dispatch(
      "y = h·W2ᵀ",
      matmulCall({ M: T, N: OUT, K: MID }, { ...PLAIN, wLayout: "nk" }, false),
      [y, h, w2t],
    );
    g.readback(y);
    const engine = new Engine(device);
    try {
      const compiled = engine.compile(g);
      const expected = linearReference(
        linearReference(x, W1, undefined, { T, IN, OUT: MID }, "kn"),
        W2,
        undefined,
        { T, IN: MID, OUT },
        "nk",
      );
      for (let run = 0; run < 3; run++) {
        const [out] = await engine.run({
          graphs: [compiled],
          inputs: [[compiled, xs, x]],
          readback: [[compiled, y]],
        });
        expectClose(out!, expected, 1e-4, `run ${run}`);
      }
    } finally {
      engine.dispose();
      w2.dispose();
    }
  });

  it("refuses a binding count that does not match the program, naming the op", async (ctx) => {
    await needGpu(ctx);
    const g = new StepGraph(graphLimits(gpuDevice()));
    const a = g.activation("a", [4, 4]);
    expect(() =>
      g.dispatch(
        "layer 3 q_proj",
        matmulCall({ M: 4, N: 4, K: 4 }, { ...PLAIN, wLayout: "kn" }, false),
        [a, a],
      ),
    ).toThrow(/layer 3 q_proj.*binds 3 arrays, got 2/);
    expect(() => g.activation("huge", [1 << 20, 1 << 10])).toThrow(ShapeError);
  });
});
