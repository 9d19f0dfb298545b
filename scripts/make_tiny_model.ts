/**
 * Writes the tiny test model (a 31k-parameter Llama with deterministic random weights and the tiny-chatml test
 * tokenizer) and a 36-sentence dataset, for trying the CLI until the embedded default model lands.
 *
 *   node --import tsx scripts/make_tiny_model.ts /tmp/tiny
 */
import { writeFileSync } from "node:fs";
import { chatModelFolder } from "../test/helpers/chat_model.js";

const dir = process.argv[2];
if (!dir) {
  process.stderr.write(
    "usage: node --import tsx scripts/make_tiny_model.ts <dir>\n",
  );
  process.exit(2);
}
chatModelFolder(`${dir}/model`);
const animals = ["cat", "dog", "bird", "fox", "cow", "pig"];
const places = ["mat", "rug", "bed", "box", "hill", "log"];
const rows = animals.flatMap((a) =>
  places.map((p) =>
    JSON.stringify({ text: `the ${a} sat on the ${p}. the ${a} is happy.` }),
  ),
);
writeFileSync(`${dir}/animals.jsonl`, `${rows.join("\n")}\n`);
process.stdout.write(`wrote ${dir}/model and ${dir}/animals.jsonl\n`);
