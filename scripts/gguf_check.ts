/**
 * How closely llama.cpp runs webtune's GGUF export of a trained adapter: on a task's test rows, llama.cpp's greedy
 * answers (base GGUF + LoRA GGUF, and the merged model in f32, f16 and q8_0) against webtune's own, and the worst
 * logit difference over the prompts (relative to each row's largest logit; test/helpers/llama_cpp.ts). A check for the README and closing notes, not a test.
 *
 *   npm run build --silent && node --import tsx scripts/gguf_check.ts --adapter runs/dates --data demo/public/data/dates/test.jsonl --rows 50
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  adapterToGguf,
  disposeRuntime,
  initRuntime,
  loadModel,
  LoraModel,
  modelToGguf,
  saveGgufFile,
  type GgufDtype,
  type PretrainedModel,
} from "@webtune/core";
import {
  llamaGreedy,
  llamaLogProbs,
  loadGguf,
  logitRows,
  worstLogitDifference,
} from "../test/helpers/llama_cpp.js";

const { values: args } = parseArgs({
  options: {
    model: { type: "string", default: "demo/public/models/webtune-demo-base" },
    adapter: { type: "string" },
    data: { type: "string" },
    rows: { type: "string", default: "50" },
    tokens: { type: "string", default: "12" },
  },
});
if (!args.adapter || !args.data) throw new Error("give --adapter and --data");

await initRuntime();
const out = mkdtempSync(join(tmpdir(), "webtune-gguf-check-"));
const rows = readFileSync(args.data, "utf8")
  .split("\n")
  .filter(Boolean)
  .slice(0, Number(args.rows))
  .map((l) => JSON.parse(l) as { prompt: string; completion: string });
const count = Number(args.tokens);

const model = await loadModel(args.model, { cache: false });
const base = join(out, "base-f32.gguf");
await saveGgufFile(await modelToGguf(model, { dtype: "f32" }), base);
const peft = new LoraModel(model);
await peft.loadAdapter("default", args.adapter);
const lora = join(out, "adapter.gguf");
await saveGgufFile(await adapterToGguf(peft), lora);

const prompts = rows.map((r) => model.tokenizer!.encode(r.prompt));
const mine: number[][] = [];
let worst = 0;
const llamaBase = await loadGguf(base);
const unmerged: number[][] = [];
for (const [i, ids] of prompts.entries()) {
  process.stderr.write(
    `row ${i + 1}/${prompts.length} ${(performance.now() / 1000).toFixed(0)} s\n`,
  );
  mine.push(
    (await model.generate(ids, { maxNewTokens: count, temperature: 0 })).ids,
  );
  unmerged.push(await llamaGreedy(llamaBase, ids, count, lora));
  const logits = peft.logits([ids]);
  worst = Math.max(
    worst,
    worstLogitDifference(
      await llamaLogProbs(llamaBase, ids, { lora }),
      await logitRows(logits),
    ),
  );
  logits.dispose();
}
await llamaBase.dispose();

const merged = peft.mergeAndUnload();
const report: Record<string, unknown>[] = [
  summary("base f32 + LoRA GGUF (f32)", unmerged, worst),
];
for (const dtype of ["f32", "f16", "q8_0"] as GgufDtype[])
  report.push(await mergedRow(merged, dtype));
console.table(report);
console.log(JSON.stringify({ rows: rows.length, tokens: count, report }));
disposeRuntime();

async function mergedRow(m: PretrainedModel, dtype: GgufDtype) {
  const path = join(out, `merged-${dtype}.gguf`);
  await saveGgufFile(await modelToGguf(m, { dtype }), path);
  const llama = await loadGguf(path);
  const answers: number[][] = [];
  let w = 0;
  for (const ids of prompts) {
    answers.push(await llamaGreedy(llama, ids, count));
    const logits = m.logits([ids]);
    w = Math.max(
      w,
      worstLogitDifference(
        await llamaLogProbs(llama, ids),
        await logitRows(logits),
      ),
    );
    logits.dispose();
  }
  await llama.dispose();
  return summary(`merged ${dtype}`, answers, w);
}

function summary(name: string, answers: number[][], w: number) {
  const same = answers.filter(
    (a, i) => JSON.stringify(a) === JSON.stringify(mine[i]),
  ).length;
  const exact = answers.filter((a, i) =>
    model.tokenizer!.decode(a).startsWith(rows[i]!.completion),
  ).length;
  return {
    gguf: name,
    greedy_equal: `${same}/${answers.length}`,
    task_exact_match: `${exact}/${answers.length}`,
    worst_logit_rel_diff: Number(w.toExponential(2)),
  };
}
