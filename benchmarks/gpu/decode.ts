/**
 * The `decode` part of bench.ts: greedy decoding tokens/s through the compiled decoder (models/decoder.ts, the
 * engine path: one compiled graph per new-token count over a KV cache written in place) against the tape path
 * (tfjs ops, a cache grown by concatenation), same model, same prompt, same run, on
 * - gpt2 (the `train` part's config, random weights, no adapter) and
 * - the embedded demo model (demo/public/models/webtune-demo-base; pack.sh carries it as demo-model/).
 * Per model:
 * - one sequence: `model.generate` at temperature 0 (`generateWithCache` of the generate scenario) for N new
 *   tokens after a P-token prompt, each path; tokens/s = N ÷ wall (the prompt's prefill included, as the generate
 *   scenario counts it), and how many leading tokens the paths share. On the engine path each token's compute pass
 *   is timed (`pass_timer.ts`, where the device has timestamp-query): wall ms per token against GPU ms per token.
 * - batched greedy: `model.greedyBatch` of R prompts of P tokens (one batch, one cache) for M new tokens each,
 *   each path; tokens/s = tokens made ÷ wall; rows whose tokens agree between the paths.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { gpuDevice, loadModel, type PretrainedModel } from "@webtune/core";
import { generateWithCache, sharedPrefix } from "../lib/generate.js";
import { PassTimer } from "../lib/pass_timer.js";
import { timed } from "../lib/stats.js";
import { envInt, sig, type PartContext } from "./part.js";

/** The embedded demo model: BENCH_DEMO_MODEL, else beside the bundle (pack.sh), else in the repo. */
export function demoModelDir(): string | undefined {
  const candidates = [
    process.env["BENCH_DEMO_MODEL"],
    fileURLToPath(new URL("./demo-model", import.meta.url)),
    fileURLToPath(
      new URL("../../demo/public/models/webtune-demo-base", import.meta.url),
    ),
  ];
  return candidates.find(
    (d): d is string => d !== undefined && existsSync(`${d}/config.json`),
  );
}

interface DecodeSizes {
  prompt: number;
  newTokens: number;
  rows: number;
  rowTokens: number;
}

function sizes(smoke: boolean, demo: boolean): DecodeSizes {
  return {
    prompt: envInt("BENCH_DECODE_PROMPT", smoke ? 8 : 32),
    newTokens: envInt("BENCH_DECODE_NEW", smoke ? (demo ? 16 : 6) : 128),
    rows: envInt("BENCH_DECODE_ROWS", smoke ? 4 : 64),
    rowTokens: envInt("BENCH_DECODE_ROW_TOKENS", smoke ? 3 : 32),
  };
}

/** Distinct deterministic ids of a row (as the generate scenario makes its prompt). */
const promptRow = (P: number, V: number, row: number) =>
  Array.from({ length: P }, (_, i) => (i * 37 + 11 + row * 101) % V);

async function decodeModel(
  ctx: PartContext,
  name: string,
  model: PretrainedModel,
  s: DecodeSizes,
): Promise<Record<string, unknown>> {
  const { log } = ctx;
  const V = model.lm.dims.vocabSize;
  const prompt = promptRow(s.prompt, V, 0);
  const prompts = Array.from({ length: s.rows }, (_, r) =>
    promptRow(s.prompt, V, r),
  );
  const budgets = prompts.map(() => s.rowTokens);
  const out: Record<string, unknown> = {
    layers: model.lm.dims.numLayers,
    vocab: V,
    prompt_tokens: s.prompt,
    new_tokens: s.newTokens,
    batch_rows: s.rows,
    batch_new_tokens: s.rowTokens,
  };
  // Warm-up: every pipeline and graph of both paths, one sequence and the batch's shape.
  const tw = performance.now();
  for (const path of ["engine", "tape"] as const) {
    await generateWithCache(model, prompt, 3, path);
    await model.greedyBatch(
      prompts,
      prompts.map(() => 2),
      { decodePath: path },
    );
  }
  log(`${name}: warm-up ${((performance.now() - tw) / 1000).toFixed(1)} s`);

  // One sequence, engine (each token's pass timed) then tape.
  const timer = new PassTimer(gpuDevice());
  timer.install();
  timer.tag = "engine";
  let engine;
  try {
    engine = await timed(() =>
      generateWithCache(model, prompt, s.newTokens, "engine"),
    );
  } finally {
    timer.tag = undefined;
    timer.restore();
  }
  const passes = (await timer.byTag()).get("engine") ?? [];
  timer.dispose();
  const tape = await timed(() =>
    generateWithCache(model, prompt, s.newTokens, "tape"),
  );
  const rate = (n: number, ms: number) => (n * 1000) / ms;
  const eRate = rate(s.newTokens, engine.ms);
  const tRate = rate(s.newTokens, tape.ms);
  const gpuMs = passes.reduce((a, b) => a + b, 0);
  const same = sharedPrefix(engine.value, tape.value);
  log(
    `${name}: one sequence, ${s.prompt}-token prompt + ${s.newTokens} new: engine ${eRate.toFixed(1)} tokens/s ` +
      `(${(engine.ms / s.newTokens).toFixed(2)} ms/token), tape ${tRate.toFixed(1)} tokens/s ` +
      `(${(tape.ms / s.newTokens).toFixed(2)} ms/token): engine ÷ tape ${(eRate / tRate).toFixed(2)}×; ` +
      `${same}/${s.newTokens} tokens the same`,
  );
  if (passes.length > 0)
    log(
      `${name}: engine path, ${passes.length} timed passes: GPU ${(gpuMs / s.newTokens).toFixed(3)} ms/token of ` +
        `${(engine.ms / s.newTokens).toFixed(3)} ms/token wall (${((100 * gpuMs) / engine.ms).toFixed(1)} % GPU-busy; ` +
        `the rest is host: enqueue, readback, argmax)`,
    );
  out["single"] = {
    engine_tokens_per_sec: sig(eRate),
    tape_tokens_per_sec: sig(tRate),
    engine_over_tape: sig(eRate / tRate),
    engine_ms_per_token: sig(engine.ms / s.newTokens),
    tape_ms_per_token: sig(tape.ms / s.newTokens),
    engine_gpu_ms_per_token:
      passes.length > 0 ? sig(gpuMs / s.newTokens) : null,
    engine_gpu_busy_share: passes.length > 0 ? sig(gpuMs / engine.ms) : null,
    engine_timed_passes: passes.length,
    same_tokens: same,
  };

  // Batched greedy: R rows in one batch.
  const batch: Record<string, Record<string, number | null>> = {};
  const ids: Record<string, number[][]> = {};
  for (const path of ["engine", "tape"] as const) {
    const r = await timed(() =>
      model.greedyBatch(prompts, budgets, { decodePath: path }),
    );
    const tokens = r.value.reduce((n, row) => n + row.ids.length, 0);
    const steps = Math.max(...r.value.map((row) => row.ids.length));
    ids[path] = r.value.map((row) => row.ids);
    batch[path] = {
      ms: sig(r.ms),
      tokens,
      decode_steps: steps,
      tokens_per_sec: sig(rate(tokens, r.ms)),
      row_steps_per_sec: sig(rate(s.rows * steps, r.ms)),
    };
  }
  const sameRows = ids["engine"]!.filter(
    (row, i) => row.join() === ids["tape"]![i]!.join(),
  ).length;
  const e = batch["engine"]!;
  const t = batch["tape"]!;
  log(
    `${name}: greedyBatch ${s.rows} rows × ${s.rowTokens} new: engine ${e["tokens_per_sec"]} tokens/s ` +
      `(${e["ms"]} ms), tape ${t["tokens_per_sec"]} tokens/s (${t["ms"]} ms): engine ÷ tape ` +
      `${(e["tokens_per_sec"]! / t["tokens_per_sec"]!).toFixed(2)}×; ${sameRows}/${s.rows} rows the same`,
  );
  out["batch"] = {
    engine: e,
    tape: t,
    engine_over_tape: sig(e["tokens_per_sec"]! / t["tokens_per_sec"]!),
    same_rows: sameRows,
  };
  return out;
}

export async function decodePart(
  ctx: PartContext,
  gpt2: () => Promise<PretrainedModel>,
): Promise<void> {
  const out: Record<string, unknown> = {};
  ctx.result["decode"] = out;
  const failures: string[] = [];
  const cases: [string, () => Promise<PretrainedModel>, boolean][] = [
    ["gpt2", gpt2, false],
  ];
  const dir = demoModelDir();
  if (dir)
    cases.push([
      "demo",
      () => loadModel(dir, { cache: false }) as Promise<PretrainedModel>,
      true,
    ]);
  else failures.push("demo: no demo model found (BENCH_DEMO_MODEL)");
  for (const [name, load, demo] of cases) {
    let model: PretrainedModel | undefined;
    try {
      model = await load();
      out[name] = await decodeModel(ctx, name, model, sizes(ctx.smoke, demo));
    } catch (error) {
      const text = error instanceof Error ? error.message : String(error);
      out[name] = { error: text };
      failures.push(`${name}: ${text}`);
      ctx.log(`!!! decode ${name} FAILED: ${text}`);
    } finally {
      model?.dispose();
    }
  }
  if (failures.length > 0) throw new Error(failures.join("; "));
}
