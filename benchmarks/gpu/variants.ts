/**
 * The `variants` part of bench.ts: every tiled-matmul variant's TFLOP/s on LoRA shapes, timed by the autotuner's
 * own timer (each variant's dispatches repeated in one compute pass, timestamp queries where the device has them,
 * the median of a few passes), with the variant the autotuner picks and each one's speed against the fixed
 * default ('shared' on GPUs, 'direct' on CPU adapters). First the big-GPU tiles are checked against the CPU
 * reference on this device (`verifyTiles`).
 *
 * Letters: T tokens (1024; smoke 128), gpt2's c_attn 768 → 2304, rank 8, and a square of side Q (4096; smoke 256).
 *   c_attn forward  x [T, 768]·W [768, 2304]          M T     N 2304  K 768   x mk, W kn
 *   c_attn dx       dy [T, 2304]·Wᵀ (W [768, 2304])   M T     N 768   K 2304  x mk, W nk
 *   LoRA dA         gᵀ·x: g [T, 8], x [T, 768]         M 8     N 768   K T     x km, W kn
 *   LoRA dB         dyᵀ·h: dy [T, 2304], h [T, 8]      M 2304  N 8     K T     x km, W kn
 *   square          [Q, Q]·[Q, Q]                      M Q     N Q     K Q     x mk, W kn
 * BENCH_VARIANT_TOKENS and BENCH_VARIANT_SQUARE override T and Q; BENCH_VARIANT_REPS the timed passes (default 5).
 */
import {
  autotune,
  DEFAULT_CHECK_CASES,
  gpuDevice,
  gpuInfo,
  setLoraKernelVariant,
  verifyLoraKernels,
  type MatmulLayout,
  type MatmulUse,
  type VariantName,
  PLAIN_MATMUL,
} from "@webtune/core";
import { envInt, sig, type PartContext } from "./part.js";

function layout(x: "mk" | "km", w: "kn" | "nk", step = false): MatmulLayout {
  return {
    ...PLAIN_MATMUL,
    xLayout: x,
    wLayout: w,
    accumulate: step ? "step" : "none",
  };
}

/** The shapes of the file comment, by name. */
function shapes(smoke: boolean): Record<string, MatmulUse> {
  const T = envInt("BENCH_VARIANT_TOKENS", smoke ? 128 : 1024);
  const Q = envInt("BENCH_VARIANT_SQUARE", smoke ? 256 : 4096);
  const use = (M: number, N: number, K: number, l: MatmulLayout) => ({
    shape: { M, N, K },
    layout: l,
    splitK: true,
  });
  return {
    c_attn_forward: use(T, 2304, 768, layout("mk", "kn")),
    c_attn_dx: use(T, 768, 2304, layout("mk", "nk")),
    lora_dA_r8: use(8, 768, T, layout("km", "kn", true)),
    lora_dB_r8: use(2304, 8, T, layout("km", "kn", true)),
    [`square_${Q}`]: use(Q, Q, Q, layout("mk", "kn")),
  };
}

/**
 * The big-GPU tiles against the CPU reference on this device, through tfjs's kernels (forward, dx, dA, dB; a
 * split-K variant runs there unsplit, and the engine's two passes are checked on lavapipe by the unit tests).
 * Returns the worst relative error per variant; above 1e-4 is a failure, recorded under `failures`.
 */
async function verifyTiles(ctx: PartContext): Promise<Record<string, number>> {
  const worst: Record<string, number> = {};
  const failures = ctx.result["failures"] as Record<string, string> | undefined;
  try {
    for (const variant of [
      "shared-double",
      "shared128",
      "shared128-double",
    ] as const) {
      setLoraKernelVariant(variant);
      const results = await verifyLoraKernels(DEFAULT_CHECK_CASES);
      const errors = results.flatMap((r) => Object.values(r.errors));
      // NaN fails: Math.max gives NaN, and !(NaN <= tol).
      const max = Math.max(...errors);
      worst[variant] = sig(max) ?? NaN;
      const pass = max <= 1e-4;
      ctx.log(
        `verify ${variant}: ${pass ? "PASS" : "FAIL"} (worst relative error ${max.toExponential(2)})`,
      );
      if (!pass && failures)
        failures[`variants_verify_${variant}`] = `worst relative error ${max}`;
    }
  } finally {
    setLoraKernelVariant(undefined);
  }
  return worst;
}

export async function variantsPart(ctx: PartContext): Promise<void> {
  const fallback: VariantName = gpuInfo().software ? "direct" : "shared";
  const repetitions = envInt("BENCH_VARIANT_REPS", ctx.smoke ? 3 : 5);
  const out: Record<string, unknown> = {};
  ctx.result["variants"] = out;
  out["verify"] = await verifyTiles(ctx);
  for (const [name, use] of Object.entries(shapes(ctx.smoke))) {
    const { M, N, K } = use.shape;
    const flops = 2 * M * N * K;
    const times = new Map<VariantName, number>();
    const table = await autotune(gpuDevice(), [use], {
      cache: false,
      install: false,
      repetitions,
      onTimed: (_use, variant, ms) => times.set(variant, ms),
      log: ctx.log,
    });
    const chosen = Object.values(table)[0]?.variant;
    const base = times.get(fallback);
    ctx.log(
      `${name}: M ${M}, N ${N}, K ${K} (${(flops / 1e9).toFixed(2)} GFLOP); picked ${chosen}`,
    );
    const rows: Record<string, unknown> = {};
    for (const [variant, ms] of times) {
      const tflops = flops / (ms * 1e-3) / 1e12;
      const ratio = base !== undefined ? base / ms : NaN;
      rows[variant] = {
        ms: sig(ms),
        tflops: sig(tflops),
        vs_default: sig(ratio),
      };
      ctx.log(
        `  ${variant.padEnd(24)} ${ms.toFixed(4).padStart(10)} ms ${tflops.toFixed(3).padStart(8)} TFLOP/s  ` +
          `${ratio.toFixed(2)}× ${fallback}`,
      );
    }
    out[name] = { M, N, K, default: fallback, chosen, variants: rows };
  }
}
