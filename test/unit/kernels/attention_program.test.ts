/**
 * The fused attention programs on the real device, against the float64 CPU reference: o, lse, dq, dk and dv of
 * one compiled graph (forward, then the two backward dispatches), for both variants, on shapes that are not round
 * (B = 2, T = 37; D = 12, 64, 256), MHA and GQA, with and without a sliding window and a softcap, reading q, k, v
 * from a fused [B, T, (H + 2G)·D] projection or from [B, heads, T, D] buffers.
 *
 * Tolerance: 1e-4 relative (expectClose: each element against max(|expected|, rms)); f32 accumulation over at
 * most T·D = 9472 products per element.
 *
 * Letters: B batch, T tokens, H query heads, G kv heads, D head dim.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  ConfigError,
  disposeRuntime,
  gpuDevice,
  ShapeError,
} from "@webtune/core";
import { Engine } from "../../../packages/core/src/engine/engine.js";
import {
  graphLimits,
  StepGraph,
  type GraphTensor,
} from "../../../packages/core/src/engine/graph.js";
import {
  attentionBackward,
  attentionForward,
  attentionProgram,
  attentionStorage,
  chooseAttentionConfig,
  headMajorView,
  setAttentionKernelVariant,
  tokenMajorView,
  type AttentionDims,
  type AttentionKernelKind,
  type AttentionOptions,
  type AttentionView,
  type BackwardViews,
} from "../../../packages/core/src/kernels/attention/program.js";
import {
  attentionBackwardReference,
  attentionForwardReference,
  readView,
} from "../../../packages/core/src/kernels/attention/reference.js";
import type { ProgramCall } from "../../../packages/core/src/kernels/program.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";
import { expectClose, seededValues } from "../../helpers/tensors.js";

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());
afterEach(() => setAttentionKernelVariant(undefined));

const RTOL = 1e-4;
const [B, T] = [2, 37];

interface Case {
  name: string;
  D: number;
  H: number;
  G: number;
  layout: "fused" | "headMajor";
  window?: number;
  softcap?: number;
  /** A tiny per-dimension limit, so that the grid wraps into y and leaves idle workgroups. */
  wrap?: boolean;
}

const CASES: Case[] = [
  { name: "MHA, fused qkv", D: 12, H: 4, G: 4, layout: "fused" },
  {
    name: "GQA, window 5, softcap 3",
    D: 12,
    H: 6,
    G: 2,
    layout: "headMajor",
    window: 5,
    softcap: 3,
  },
  { name: "MHA, window 5", D: 64, H: 3, G: 3, layout: "headMajor", window: 5 },
  {
    name: "GQA, fused qkv, softcap 3, wrapped grid",
    D: 64,
    H: 6,
    G: 2,
    layout: "fused",
    softcap: 3,
    wrap: true,
  },
  {
    name: "GQA, fused qkv, window 5, softcap 3",
    D: 64,
    H: 6,
    G: 2,
    layout: "fused",
    window: 5,
    softcap: 3,
  },
  {
    name: "GQA, softcap 3",
    D: 256,
    H: 6,
    G: 2,
    layout: "headMajor",
    softcap: 3,
  },
  {
    name: "MHA, fused qkv, window 5",
    D: 256,
    H: 2,
    G: 2,
    layout: "fused",
    window: 5,
  },
];

/** Where each operand lives: its graph tensor and its view. */
interface Operand {
  tensor: GraphTensor;
  view: AttentionView;
}

/** q, k, v, dO inputs (with host values) and o, dq, dk, dv outputs, laid out as the case says. */
function layOut(g: StepGraph, c: Case) {
  const { H, G, D } = c;
  const values = new Map<GraphTensor, Float32Array>();
  const input = (name: string, shape: number[], seed: number) => {
    const t = g.input(name, shape, "f32");
    values.set(t, seededValues(t.size, seed));
    return t;
  };
  let q: Operand, k: Operand, v: Operand, o: Operand, dO: Operand;
  let dq: Operand, dk: Operand, dv: Operand;
  if (c.layout === "fused") {
    // [B, T, (H + 2G)·D]: q heads, then k heads, then v heads, as a fused c_attn / qkv projection.
    const width = (H + 2 * G) * D;
    const qkv = input("qkv", [B, T, width], 1);
    const dqkv = g.activation("dqkv", [B, T, width]);
    const part = (t: GraphTensor, at: number) => ({
      tensor: t,
      view: tokenMajorView(T, width, D, at),
    });
    [q, k, v] = [part(qkv, 0), part(qkv, H * D), part(qkv, (H + G) * D)];
    [dq, dk, dv] = [part(dqkv, 0), part(dqkv, H * D), part(dqkv, (H + G) * D)];
    // o merged-heads [B, T, H·D], for the next projection.
    const merged = (t: GraphTensor) => ({
      tensor: t,
      view: tokenMajorView(T, H * D, D),
    });
    o = merged(g.activation("o", [B, T, H * D]));
    dO = merged(input("dO", [B, T, H * D], 4));
  } else {
    const head = (t: GraphTensor, heads: number) => ({
      tensor: t,
      view: headMajorView(heads, T, D),
    });
    q = head(input("q", [B, H, T, D], 1), H);
    k = head(input("k", [B, G, T, D], 2), G);
    v = head(input("v", [B, G, T, D], 3), G);
    o = head(g.activation("o", [B, H, T, D]), H);
    dO = head(input("dO", [B, H, T, D], 4), H);
    dq = head(g.activation("dq", [B, H, T, D]), H);
    dk = head(g.activation("dk", [B, G, T, D]), G);
    dv = head(g.activation("dv", [B, G, T, D]), G);
  }
  return { values, q, k, v, o, dO, dq, dk, dv };
}

async function checkCase(c: Case, kind: AttentionKernelKind): Promise<void> {
  setAttentionKernelVariant(kind);
  const device = gpuDevice();
  const dims: AttentionDims = { B, T, H: c.H, G: c.G, D: c.D };
  // Softcapped cases take a scale large enough that the cap bends the scores (|s| up to ~3·cap).
  const options: AttentionOptions = {
    scale: (c.softcap ? 6 : 1) / Math.sqrt(c.D),
    softcap: c.softcap,
    window: c.window,
    maxWorkgroupsPerDimension: c.wrap ? 5 : undefined,
    fusedQkv: c.layout === "fused",
  };
  const g = new StepGraph(graphLimits(device));
  const x = layOut(g, c);
  const lse = g.activation("lse", [B, c.H, T]);
  const delta = g.activation("delta", [B, c.H, T]);
  const views: BackwardViews = {
    q: x.q.view,
    k: x.k.view,
    v: x.v.view,
    o: x.o.view,
    dO: x.dO.view,
    dq: x.dq.view,
    dk: x.dk.view,
    dv: x.dv.view,
  };
  // The programs name their bindings (QKV and dQKV when fused): bind each graph tensor by that name.
  const byName: Record<string, GraphTensor> = {
    Q: x.q.tensor,
    K: x.k.tensor,
    V: x.v.tensor,
    QKV: x.q.tensor,
    O: x.o.tensor,
    dO: x.dO.tensor,
    LSE: lse,
    Delta: delta,
    dQ: x.dq.tensor,
    dK: x.dk.tensor,
    dV: x.dv.tensor,
    dQKV: x.dq.tensor,
  };
  const bind = (label: string, call: ProgramCall) =>
    g.dispatch(
      label,
      call,
      call.program.storage.map((b) => byName[b.name]!),
    );
  bind("attention", attentionForward(dims, views, options, true));
  const [dqCall, dkdvCall] = attentionBackward(dims, views, options, true);
  bind("attention dq", dqCall);
  bind("attention dk dv", dkdvCall);
  const reads = [...new Set([x.o, x.dq, x.dk, x.dv].map((t) => t.tensor))];
  for (const t of [...reads, lse]) g.readback(t);
  const engine = new Engine(device);
  try {
    const compiled = engine.compile(g);
    const got = await engine.run({
      graphs: [compiled],
      inputs: [...x.values].map(([t, data]) => [compiled, t, data]),
      readback: [...reads, lse].map((t) => [compiled, t]),
    });
    const value = (t: GraphTensor) => got[[...reads, lse].indexOf(t)]!;
    const host = (op: Operand, heads: number) =>
      readView(x.values.get(op.tensor)!, op.view, dims, heads);
    const inputs = { q: host(x.q, c.H), k: host(x.k, c.G), v: host(x.v, c.G) };
    const want = attentionForwardReference(inputs, dims, options);
    const grads = attentionBackwardReference(
      inputs,
      host(x.dO, c.H),
      dims,
      options,
    );
    const out = (op: Operand, heads: number) =>
      readView(value(op.tensor), op.view, dims, heads);
    expectClose(out(x.o, c.H), want.o, RTOL, "o");
    expectClose(value(lse), want.lse, RTOL, "lse");
    expectClose(out(x.dq, c.H), grads.dq, RTOL, "dq");
    expectClose(out(x.dk, c.G), grads.dk, RTOL, "dk");
    expectClose(out(x.dv, c.G), grads.dv, RTOL, "dv");
  } finally {
    engine.dispose();
  }
}

describe.each(["direct", "shared"] as const)(
  "fused attention, %s variant",
  (kind) => {
    it.for(CASES)(
      "matches the float64 reference: o, lse, dq, dk, dv (D=$D, $name)",
      async (c, ctx) => {
        await needGpu(ctx);
        await checkCase(c, kind);
      },
    );
  },
);

describe("fused attention programs", () => {
  const dims: AttentionDims = { B: 2, T: 37, H: 6, G: 2, D: 64 };
  const views = (D: number) => {
    const q = headMajorView(6, 37, D);
    return { q, k: q, v: q, o: q, dO: q, dq: q, dk: q, dv: q };
  };

  it("refuses a bad shape or option, naming it", () => {
    const scale = 0.125;
    expect(() =>
      attentionForward({ ...dims, G: 4 }, views(64), { scale }, true),
    ).toThrow(/H = 6 query heads is not a multiple of G = 4/);
    expect(() =>
      attentionBackward({ ...dims, D: 10 }, views(10), { scale }, true),
    ).toThrow(ShapeError);
    expect(() =>
      attentionForward({ ...dims, D: 10 }, views(10), { scale }, true),
    ).toThrow(/head dim D = 10/);
    expect(() =>
      attentionForward({ ...dims, D: 260 }, views(260), { scale }, true),
    ).toThrow(/head dim D = 260/);
    expect(() =>
      attentionForward(dims, views(64), { scale, window: 0 }, true),
    ).toThrow(ConfigError);
    expect(() =>
      attentionForward(dims, views(64), { scale, softcap: -1 }, true),
    ).toThrow(/softcap = -1/);
    expect(() =>
      attentionForward(
        dims,
        { ...views(64), k: { offset: 2, strides: [4, 4, 4] } },
        { scale },
        true,
      ),
    ).toThrow(/view k has offset 2/);
  });

  it("stays within the portable limits: 8 storage bindings, 256 invocations, 16 KiB of workgroup memory", () => {
    for (const kind of ["direct", "shared"] as const) {
      setAttentionKernelVariant(kind);
      for (const D of [4, 12, 64, 128, 252, 256])
        for (const pass of ["forward", "dq", "dkdv"] as const) {
          const config = chooseAttentionConfig(pass, D, { scale: 1 }, true);
          const p = attentionProgram(config);
          expect(p.storage.length, p.key).toBeLessThanOrEqual(8);
          expect(
            p.workgroupSize.reduce((a, b) => a * b),
            p.key,
          ).toBeLessThanOrEqual(256);
          const tiles = kind === "shared" ? 2 * config.tile * D * 4 + 8 : 0;
          expect(tiles, p.key).toBeLessThanOrEqual(16384);
          expect(p.body.includes("var<workgroup>"), p.key).toBe(
            kind === "shared",
          );
          expect(p.body.includes("workgroupBarrier"), p.key).toBe(
            kind === "shared",
          );
        }
    }
  });

  it("binds in the documented order, q, k and v once when fused", () => {
    const names = (pass: "forward" | "dq" | "dkdv", fused: boolean) =>
      attentionStorage(pass, fused).map((b) => b.name);
    expect(names("forward", false)).toEqual(["Q", "K", "V", "O", "LSE"]);
    expect(names("forward", true)).toEqual(["QKV", "O", "LSE"]);
    expect(names("dq", false)).toEqual([
      "Q",
      "K",
      "V",
      "O",
      "dO",
      "LSE",
      "dQ",
      "Delta",
    ]);
    expect(names("dq", true)).toEqual([
      "QKV",
      "O",
      "dO",
      "LSE",
      "dQKV",
      "Delta",
    ]);
    expect(names("dkdv", false)).toEqual([
      "Q",
      "K",
      "V",
      "dO",
      "LSE",
      "Delta",
      "dK",
      "dV",
    ]);
    expect(names("dkdv", true)).toEqual(["QKV", "dO", "LSE", "Delta", "dQKV"]);
  });
});
