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
    tokens: { type: "string", default: "16" },
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
for (const [i, ids] of prompts.entries()) {
  process.stderr.write(`webtune ${i + 1}/${prompts.length}\r`);
  mine.push(
    (await model.generate(ids, { maxNewTokens: count, temperature: 0 })).ids,
  );
}
const report = [await compare("base f32 + LoRA GGUF (f32)", base, peft, lora)];
const merged = peft.mergeAndUnload();
for (const dtype of ["f32", "f16", "q8_0"] as GgufDtype[]) {
  const path = join(out, `merged-${dtype}.gguf`);
  await saveGgufFile(await modelToGguf(merged, { dtype }), path);
  report.push(await compare(`merged ${dtype}`, path, merged));
}
console.table(report);
console.log(JSON.stringify({ rows: rows.length, tokens: count, report }));
disposeRuntime();

/**
 * llama.cpp on a GGUF (with the LoRA GGUF) against webtune's model on every prompt: greedy answers, and the worst
 * logit difference at the prompt's last position (the first answer token's logits) and at any position.
 */
async function compare(
  name: string,
  gguf: string,
  webtune: PretrainedModel | LoraModel,
  loraPath?: string,
) {
  const llama = await loadGguf(gguf);
  const answers: number[][] = [];
  let first = 0;
  let any = 0;
  for (const ids of prompts) {
    answers.push(await llamaGreedy(llama, ids, count, loraPath));
    const logits = webtune.logits([ids]);
    const ours = await logitRows(logits);
    logits.dispose();
    const theirs = await llamaLogProbs(llama, ids, { lora: loraPath });
    first = Math.max(
      first,
      worstLogitDifference(theirs.slice(-1), ours.slice(-1)),
    );
    any = Math.max(any, worstLogitDifference(theirs, ours));
  }
  await llama.dispose();
  const same = answers.filter(
    (a, i) => JSON.stringify(a) === JSON.stringify(mine[i]),
  ).length;
  const exact = answers.filter((a, i) =>
    model.tokenizer!.decode(a).trim().startsWith(rows[i]!.completion.trim()),
  ).length;
  return {
    gguf: name,
    greedy_equal: `${same}/${answers.length}`,
    task_exact_match: `${exact}/${answers.length}`,
    worst_logit_rel_diff_first_token: Number(first.toExponential(2)),
    worst_logit_rel_diff_any_position: Number(any.toExponential(2)),
  };
}
