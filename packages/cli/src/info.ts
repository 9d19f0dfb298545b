/** `webtune info`: what a model is, and which modules an adapter can target. */
import { initRuntime, loadModel } from "@webtune/core";

export async function infoCommand(o: { model: string }): Promise<void> {
  await initRuntime();
  const model = await loadModel(o.model);
  const d = model.dims;
  const groups = new Map<string, string[]>();
  for (const l of model.linears()) {
    const short = l.name.split(".").at(-1)!;
    groups.set(short, [...(groups.get(short) ?? []), l.name]);
  }
  const lines = [
    `model            ${model.source}`,
    `architecture     ${d.modelType}${Array.isArray(model.config["architectures"]) ? ` (${(model.config["architectures"] as string[]).join(", ")})` : ""}`,
    `layers           ${d.numLayers}, hidden ${d.hiddenSize}, heads ${d.numHeads} (kv ${d.numKvHeads}), head dim ${d.headDim}`,
    `vocabulary       ${d.vocabSize}${d.tieWordEmbeddings ? " (tied embeddings)" : ""}`,
    `parameters       ${model.lm.parameterCount().toLocaleString("en-US")}`,
    `tokenizer        ${model.tokenizer ? `yes${model.tokenizer.chatTemplateNames.length > 0 ? ", with a chat template" : ""}` : "none"}`,
    `linear modules   ${model.linears().length}:`,
    ...[...groups].map(
      ([short, names]) =>
        `  ${short.padEnd(14)} ×${names.length}  e.g. ${names[0]}`,
    ),
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
  model.dispose();
}
