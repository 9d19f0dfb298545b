/**
 * The export panel's GGUF downloads, for llama.cpp and the tools built on it (Ollama, LM Studio): the merged (or
 * fully tuned) model in the storage the page's select names, and the LoRA adapter alone for `--lora`. The worker
 * writes the file; its parts become one Blob here, without joining them into one buffer.
 */
import type { GgufDtype, GgufFile } from "@webtune/core";
import type { DemoApp } from "./app.js";
import { byId, download, formatBytes, setStatus } from "./dom.js";

/**
 * Why the page's adapter has no GGUF of its own (the button's tooltip), or undefined when it has one. llama.cpp's
 * LoRA format holds plain A and B: no DoRA magnitudes, no classification head.
 */
export function adapterGgufBlocker(
  app: Pick<DemoApp, "adapterDora" | "adapterTask">,
): string | undefined {
  if (app.adapterDora)
    return "A DoRA adapter has no llama.cpp LoRA form: download the merged model's GGUF instead.";
  if (app.adapterTask !== "causal-lm")
    return "The adapter trains a classification head, which llama.cpp cannot run.";
  return undefined;
}

/** Why the merged model has no GGUF (the button's tooltip), or undefined when it has one. */
export function modelGgufBlocker(
  app: Pick<DemoApp, "hasAdapter" | "adapterTask">,
): string | undefined {
  if (app.hasAdapter && app.adapterTask !== "causal-lm")
    return "The adapter answers through a classification head, which llama.cpp cannot run.";
  return undefined;
}

/** Saves the merged model (the tuned one, after full fine-tuning) as webtune-merged-<dtype>.gguf. */
export async function downloadModelGguf(app: DemoApp): Promise<void> {
  const dtype = byId<HTMLSelectElement>("gguf-dtype").value as GgufDtype;
  setStatus(
    app.fullyTuned
      ? `Writing the tuned model as a ${dtype} GGUF…`
      : `Merging the adapter into a copy of the weights, as a ${dtype} GGUF…`,
  );
  const file = await app.trainer.api.exportGguf({ what: "merged", dtype });
  const name = `webtune-merged-${dtype}.gguf`;
  save(name, file);
  setStatus(
    `Saved ${name} (${formatBytes(file.byteLength)}, ${file.tensorCount} tensors): llama-cli -m ${name} runs it in llama.cpp; Ollama and LM Studio open it too.`,
  );
}

/** Saves the adapter alone as webtune-adapter.gguf, which llama.cpp applies over the base model's GGUF. */
export async function downloadAdapterGguf(app: DemoApp): Promise<void> {
  setStatus("Writing the adapter as a GGUF…");
  const file = await app.trainer.api.exportGguf({ what: "adapter" });
  const name = "webtune-adapter.gguf";
  save(name, file);
  setStatus(
    `Saved ${name} (${formatBytes(file.byteLength)}): llama-cli -m base.gguf --lora ${name} applies it to the base model as GGUF (webtune export --model <its folder or hub id> --format gguf --out base.gguf).`,
  );
}

function save(name: string, file: GgufFile): void {
  download(
    name,
    new Blob(file.parts as BlobPart[]),
    "application/octet-stream",
  );
}
