/**
 * The host scenario's bookkeeping, without a GPU: the API counter wraps and restores prototypes and traces what a
 * window creates; layer labels split a graph's dispatches; the engine's targets; the headline takes the engine's
 * numbers, never the tape baseline's; and the table shows both with the targets beside them.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ApiCounter } from "../../../benchmarks/lib/api_counter.js";
import {
  dispatchesByLayer,
  missedTargets,
} from "../../../benchmarks/lib/host.js";
import {
  headlineCells,
  scenarioCells,
} from "../../../benchmarks/lib/report.js";
import { headlineOf, type BenchRecord } from "../../../benchmarks/lib/run.js";

const CLASSES = [
  "GPUDevice",
  "GPUQueue",
  "GPUCommandEncoder",
  "GPUComputePassEncoder",
  "GPUBuffer",
] as const;

describe("ApiCounter", () => {
  const scope = globalThis as unknown as Record<string, unknown>;
  const saved = new Map<string, unknown>();

  class FakeDevice {
    createBuffer(d: { label?: string }) {
      return { made: d.label };
    }
    createBindGroup(d: { label?: string }) {
      return { made: d.label };
    }
  }
  class FakePass {
    dispatchWorkgroups(x: number) {
      return x;
    }
  }
  class FakeQueue {
    submit() {}
    writeBuffer() {}
  }

  beforeEach(() => {
    for (const c of CLASSES) saved.set(c, scope[c]);
    scope["GPUDevice"] = FakeDevice;
    scope["GPUComputePassEncoder"] = FakePass;
    scope["GPUQueue"] = FakeQueue;
    scope["GPUCommandEncoder"] = class {};
    scope["GPUBuffer"] = class {};
  });
  afterEach(() => {
    for (const c of CLASSES) scope[c] = saved.get(c);
  });

  it("counts calls between install and restore, traces creations, and puts every method back", () => {
    const originalCreate = FakeDevice.prototype.createBuffer;
    const counter = new ApiCounter(1);
    const device = new FakeDevice();
    const pass = new FakePass();
    const queue = new FakeQueue();
    counter.install();
    expect(counter.installed).toBe(true);
    expect(device.createBuffer({ label: "arena" })).toEqual({ made: "arena" });
    device.createBuffer({});
    device.createBindGroup({ label: "transformer.h.0.attn dq" });
    expect(pass.dispatchWorkgroups(7)).toBe(7);
    pass.dispatchWorkgroups(1);
    queue.writeBuffer();
    queue.submit();
    const { counts, creations } = counter.take();
    expect(counts).toMatchObject({
      buffers: 2,
      bindGroups: 1,
      dispatches: 2,
      writeBuffers: 1,
      submits: 1,
      pipelines: 0,
    });
    // One trace per call (the limit), each with its label and where it was made.
    expect(creations.map((c) => [c.call, c.label])).toEqual([
      ["GPUDevice.createBuffer", "arena"],
      ["GPUDevice.createBindGroup", "transformer.h.0.attn dq"],
    ]);
    expect(creations[0]!.at).toMatch(/host\.test\.ts:\d+/);
    // take() starts a new window.
    pass.dispatchWorkgroups(1);
    expect(counter.take().counts.dispatches).toBe(1);
    counter.restore();
    expect(counter.installed).toBe(false);
    expect(FakeDevice.prototype.createBuffer).toBe(originalCreate);
    pass.dispatchWorkgroups(1);
    expect(counter.take().counts.dispatches).toBe(0);
  });

  it("refuses to count before the WebGPU classes exist, leaving nothing wrapped", () => {
    scope["GPUQueue"] = undefined;
    const original = FakeDevice.prototype.createBuffer;
    expect(() => new ApiCounter().install()).toThrow(/no global GPUQueue/);
    expect(FakeDevice.prototype.createBuffer).toBe(original);
  });
});

describe("dispatches by layer", () => {
  it("reads the layer index from gpt2 and llama labels, and counts the rest as fixed", () => {
    const { layers, other } = dispatchesByLayer([
      "transformer.wte",
      "transformer.h.0.ln_1",
      "transformer.h.0.attn dq",
      "transformer.h.1.mlp.c_proj dx",
      "transformer.h.11.attn",
      "model.layers.7 q rope",
      "lm_head rows 0..16 logits 3",
      "grad norm",
      "AdamW",
    ]);
    expect(layers.slice(0, 2)).toEqual([2, 1]);
    expect(layers[7]).toBe(1);
    expect(layers[11]).toBe(1);
    expect(layers[5]).toBe(0);
    expect(other).toBe(4);
  });
});

function hostRecord(
  model: string,
  executor: "compiled" | "tape",
  metrics: Record<string, number | string | boolean | null>,
  layers = 12,
): BenchRecord {
  return {
    scenario: "host",
    case: `${model}, ${executor === "compiled" ? "engine" : "tape (before)"}`,
    config: {
      executor,
      layers,
      counted_layers: "2 and 1",
      batch: 4,
      seq: 256,
    },
    metrics: {
      dispatches: 500,
      dispatches_per_layer: 36,
      dispatches_fixed: 68,
      graph_dispatches: executor === "compiled" ? 500 : null,
      buffers_created: 0,
      bind_groups_created: 0,
      write_buffers: 3,
      submits: 1,
      pipelines_created: 0,
      shader_modules_created: 0,
      enqueue_ms: 7.25,
      enqueue_timer: "main-thread CPU (/proc schedstat)",
      extrapolated: false,
      targets_missed: executor === "compiled" ? "" : null,
      ...metrics,
    },
  };
}

describe("the host scenario's targets, headline and table", () => {
  it("misses only what exceeds the issue's targets; enqueue time counts for gpt2 only", () => {
    const ok = hostRecord("gpt2", "compiled", {}).metrics;
    expect(missedTargets(ok, "gpt2", 12)).toEqual([]);
    expect(
      missedTargets(
        { ...ok, dispatches: 541, buffers_created: 1, enqueue_ms: 16 },
        "gpt2",
        12,
      ),
    ).toEqual(["dispatches", "buffers", "enqueue ms"]);
    expect(
      missedTargets({ ...ok, enqueue_ms: 40 }, "smollm2-135m", 30),
    ).toEqual([]);
    expect(
      missedTargets({ ...ok, dispatches_per_layer: 41 }, "smollm2-135m", 30),
    ).toEqual(["dispatches"]);
    expect(missedTargets({ ...ok, submits: 3 }, "gpt2", 12)).toEqual([
      "submits",
    ]);
    expect(
      missedTargets({ ...ok, shader_modules_created: 1 }, "gpt2", 12),
    ).toEqual(["pipelines"]);
  });

  it("puts the engine's numbers in the headline, never the tape's: gpt2's dispatches, the most buffers", () => {
    const records = [
      hostRecord("smollm2-135m", "compiled", {
        dispatches: 1100,
        buffers_created: 2,
        bind_groups_created: 1,
        enqueue_ms: 20,
      }),
      hostRecord("gpt2", "compiled", { dispatches: 520 }),
      hostRecord("gpt2", "tape", {
        dispatches: 3000,
        buffers_created: 200,
        bind_groups_created: 3000,
        enqueue_ms: 900,
      }),
    ];
    expect(headlineOf(records)).toMatchObject({
      dispatches_per_step_gpt2: 520,
      buffers_created_per_step: 2,
      bind_groups_created_per_step: 1,
      host_enqueue_ms_gpt2: 7.25,
    });
    const [head, row] = headlineCells(headlineOf(records));
    const cell = (k: string) => row![head!.indexOf(k)];
    expect(cell("dispatches_per_step_gpt2")).toBe("520");
    expect(cell("buffers_created_per_step")).toBe("2");
    expect(cell("host_enqueue_ms_gpt2")).toBe("7.25");
    expect(headlineOf([]).dispatches_per_step_gpt2).toBeNull();
  });

  it("shows engine and tape rows with the targets in the headers and an extrapolated tape said so", () => {
    const cells = scenarioCells("host", [
      hostRecord("gpt2", "compiled", {
        dispatches: 560,
        targets_missed: "dispatches",
      }),
      hostRecord("gpt2", "tape", {
        dispatches: 3012.5,
        dispatches_per_layer: 240.5,
        buffers_created: 150,
        bind_groups_created: 3012.5,
        extrapolated: true,
        enqueue_ms: 850,
        enqueue_timer: "wall (performance.now)",
      }),
    ]);
    const [head, engine, tape] = cells;
    expect(head).toContain("dispatches/step (≤ 40·L + 60)");
    expect(head).toContain("enqueue ms (gpt2 ≤ 15)");
    expect(engine).toEqual([
      "gpt2, engine (12 layers)",
      "4×256",
      "560",
      "36 + 68",
      "500",
      "0",
      "0",
      "3",
      "1",
      "0",
      "7.25 CPU",
      "missed: dispatches",
    ]);
    expect(tape![0]).toBe(
      "gpt2, tape (before) (12 layers; counted at 2 and 1, extrapolated)",
    );
    expect(tape![2]).toBe("3012.5");
    expect(tape![4]).toBe("–");
    expect(tape![10]).toBe("850.00 wall");
    expect(tape![11]).toBe("–");
  });
});
