/** `webtune merge`: model + adapter → one Hugging Face folder with merged weights and the tokenizer files. */
import { savePretrainedToDirectory } from "@webtune/core";
import { loadForCommand } from "./common.js";
import { checkApartFromModel } from "./out_folder.js";

export async function mergeCommand(o: {
  model: string;
  adapter: string;
  out: string;
}): Promise<void> {
  await checkApartFromModel(o.out, o.model);
  const { model, peft } = await loadForCommand(o.model, o.adapter);
  const merged = peft.mergeAndUnload();
  // Each file to a temporary name, then renamed; config.json last (see savePretrainedToDirectory).
  const files = await savePretrainedToDirectory(merged, o.out);
  process.stdout.write(`${JSON.stringify({ out: o.out, files })}\n`);
  model.dispose();
}
