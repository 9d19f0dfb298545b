/**
 * The benchmark's bookkeeping: the FLOP formula against the figure derived by hand for the GPU comparison
 * (benchmarks/gpu/README.md), the headline's ratios, and RESULTS.md regeneration keeping hand-written sections.
 */
import { describe, expect, it } from "vitest";
import { loraStepFlops } from "../../../benchmarks/lib/flops.js";
import { CONFIGS, dimsOf } from "../../../benchmarks/lib/models.js";
import {
  BEGIN,
  END,
  regenerateResults,
  type StampedRun,
} from "../../../benchmarks/lib/report.js";

describe("model FLOPs of a LoRA step", () => {
  it("gives gpt2 at 4 × 256, r 8 on c_attn the 536.8 GFLOP derived for the PyTorch comparison", () => {
    const f = loraStepFlops(
      dimsOf(CONFIGS.gpt2),
      { batch: 4, seq: 256 },
      { r: 8, targetModules: ["c_attn"] },
    );
    // benchmarks/gpu/README.md: 505.99 linear, 28.99 attention, 1.81 LoRA.
    expect(f.linear / 1e9).toBeCloseTo(505.99, 2);
    expect(f.attention / 1e9).toBeCloseTo(28.99, 2);
    expect(f.lora / 1e9).toBeCloseTo(1.81, 2);
    expect(f.total / 1e9).toBeCloseTo(536.8, 1);
  });

  it("counts SmolLM2's grouped k/v and three-matrix MLP, and weight gradients in full fine-tuning", () => {
    const d = dimsOf(CONFIGS["smollm2-135m"]);
    expect(d).toMatchObject({
      heads: 9,
      kvHeads: 3,
      headDim: 64,
      mlpMatrices: 3,
    });
    const tokens = { batch: 1, seq: 1 };
    // Per layer: q 576², k and v 576·192 each, o 576², gate/up/down 576·1536 each; head 49152·576.
    const N =
      30 * (576 * 576 * 2 + 2 * 576 * 192 + 3 * 576 * 1536) + 49152 * 576;
    expect(N).toBe(134_479_872); // 134.5 M with the norms: SmolLM2-135M
    const lora = loraStepFlops(d, tokens, {
      r: 8,
      targetModules: ["q_proj", "v_proj"],
    });
    expect(lora.linear).toBe(4 * N);
    expect(lora.lora).toBe(6 * 8 * (576 + 576 + 576 + 192) * 30);
    expect(loraStepFlops(d, tokens, "full").linear).toBe(6 * N);
  });
});

function run(date: string, device: string, mfu: number): StampedRun {
  return {
    runtime: "node",
    device,
    adapter: {
      vendor: "v",
      architecture: "a",
      description: device,
      software: true,
      features: [],
    },
    size: "smoke",
    roof: {
      bySize: { "tf.matMul": { "256": 4 } },
      gflops: 4,
      best: "tf.matMul 256",
    },
    records: [
      {
        scenario: "generate",
        case: "embedded model, greedy",
        config: { prompt_tokens: 8, new_tokens: 8 },
        metrics: {
          cached_tokens_per_s: 20,
          uncached_tokens_per_s: 4,
          speedup: 5,
          same_tokens: 8,
        },
      },
    ],
    profiles: {},
    failures: {},
    headline: {
      train_step_speedup_vs_naive: null,
      mfu,
      kernel_speedup_fwd_bwd: null,
      kv_cache_speedup: 5,
      dispatches_per_step_gpt2: null,
      buffers_created_per_step: null,
      bind_groups_created_per_step: null,
      host_enqueue_ms_gpt2: null,
    },
    seconds: 1,
    date,
    commit: "abc1234",
    node: "v20",
  };
}

describe("RESULTS.md regeneration", () => {
  const handWritten =
    "# Benchmark results\n\nIntro.\n\n## NVIDIA H200, by hand\n\nKept as is.\n";

  it("inserts the generated section before the hand-written ones, then replaces only it", () => {
    const first = regenerateResults(handWritten, [
      run("2026-11-27T01:00:00Z", "dev A", 0.25),
    ]);
    expect(first.startsWith("# Benchmark results\n\nIntro.\n")).toBe(true);
    expect(first).toContain("## NVIDIA H200, by hand\n\nKept as is.\n");
    expect(first.indexOf(BEGIN)).toBeLessThan(first.indexOf("## NVIDIA H200"));
    expect(first).toContain("| 0.250 |");
    expect(first).toContain(
      "| embedded model, greedy, 8+8 tokens | 20.0 | – | – | 4.0 | 5.00× | 8, – of 8 tokens |",
    );

    const second = regenerateResults(first, [
      run("2026-11-27T01:00:00Z", "dev A", 0.25),
      run("2026-11-27T02:00:00Z", "dev A", 0.5),
      run("2026-11-26T02:00:00Z", "dev B", 0.75),
    ]);
    expect(second.split(BEGIN)).toHaveLength(2);
    expect(second.split(END)).toHaveLength(2);
    // The latest run of each device: dev A's 0.5 replaces its 0.25; dev B appears once.
    expect(second).toContain("| 0.500 |");
    expect(second).not.toContain("| 0.250 |");
    expect(second).toContain("| 0.750 |");
    expect(second).toContain("## NVIDIA H200, by hand\n\nKept as is.\n");
  });

  it("regenerates from a results file written before the host scenario's headline fields existed", () => {
    const old = run("2026-11-27T01:00:00Z", "dev A", 0.25);
    const headline: Record<string, unknown> = { ...old.headline };
    for (const key of [
      "dispatches_per_step_gpt2",
      "buffers_created_per_step",
      "bind_groups_created_per_step",
      "host_enqueue_ms_gpt2",
    ])
      delete headline[key];
    const md = regenerateResults(handWritten, [
      { ...old, headline: headline as unknown as StampedRun["headline"] },
    ]);
    expect(md).toContain("| 0.250 |");
    expect(md).toMatch(/\| – \| – \| – \| – \|\n/);
  });

  it("updates the scenarios a partial run measured and keeps the others, stamped with their run", () => {
    const full = run("2026-11-27T01:00:00Z", "dev A", 0.25);
    const partial: StampedRun = {
      ...run("2026-11-27T03:00:00Z", "dev A", 0),
      headline: {
        train_step_speedup_vs_naive: null,
        mfu: null,
        kernel_speedup_fwd_bwd: null,
        kv_cache_speedup: null,
        dispatches_per_step_gpt2: null,
        buffers_created_per_step: null,
        bind_groups_created_per_step: null,
        host_enqueue_ms_gpt2: null,
      },
      records: [
        {
          scenario: "memory",
          case: "SmolLM2-360M, f16 base",
          config: { layers: "all", batch: 1, seq: 256 },
          metrics: { peak_bytes: 1.1e9, target_bytes: 1.2e9 },
        },
      ],
    };
    const md = regenerateResults(handWritten, [partial, full]);
    expect(md.match(/### Node, Dawn: dev A/g)).toHaveLength(1);
    // The headline is the full run's; its generate table stays, stamped with that run; memory is the new run's.
    expect(md).toContain("| 0.250 |");
    expect(md).toContain(
      "**generate** (run of 2026-11-27T01:00:00Z, commit abc1234, size `smoke`, 1 s)",
    );
    expect(md).toContain("**memory**\n");
    expect(md).toContain(
      "| SmolLM2-360M, f16 base (all layers, 1×256) | 1.100 | 1.200 |",
    );
  });
});
