/** `webtune merge`: model + adapter → one Hugging Face folder with merged weights and the tokenizer files. */
import { mkdir, writeFile } from "node:fs/promises";
import { savePretrained } from "@webtune/core";
import { loadForCommand } from "./common.js";

export async function mergeCommand(o: {
  model: string;
  adapter: string;
  out: string;
}): Promise<void> {
  const { model, peft } = await loadForCommand(o.model, o.adapter);
  const merged = peft.mergeAndUnload();
  await mkdir(o.out, { recursive: true });
  const files = await savePretrained(merged);
  for (const [name, content] of Object.entries(files))
    await writeFile(`${o.out}/${name}`, content);
  process.stdout.write(
    `${JSON.stringify({ out: o.out, files: Object.keys(files) })}\n`,
  );
  model.dispose();
}
