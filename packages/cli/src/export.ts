/**
 * `webtune export --format gguf`: a model, a merged model or a LoRA adapter as a GGUF file for llama.cpp and the
 * tools built on it (Ollama, LM Studio, node-llama-cpp, wllama).
 */
import { stat } from "node:fs/promises";
import {
  adapterToGguf,
  ConfigError,
  modelToGguf,
  saveGgufFile,
  type GgufDtype,
  type GgufFile,
} from "@webtune/core";
import { loadForCommand } from "./common.js";

export interface ExportOptions {
  model: string;
  adapter?: string;
  merged?: boolean;
  format: string;
  dtype?: GgufDtype;
  out: string;
  overwrite?: boolean;
}

/** What the command writes: the model (with the adapter merged in, if any) or the adapter alone. */
type Exported = "model" | "merged model" | "adapter";

export async function exportCommand(o: ExportOptions): Promise<void> {
  if (o.format !== "gguf")
    throw new ConfigError(
      `--format ${o.format} is not one webtune exports; use --format gguf (Hugging Face folders: webtune merge).`,
    );
  if (o.merged && !o.adapter)
    throw new ConfigError("--merged needs --adapter: the adapter to merge.");
  if (!o.out.endsWith(".gguf"))
    throw new ConfigError(`--out ${o.out} must name a .gguf file.`);
  if (!o.overwrite && (await stat(o.out).catch(() => undefined)))
    throw new ConfigError(
      `--out ${o.out} already exists; pass --overwrite to replace it.`,
    );
  const { model, peft } = await loadForCommand(o.model, o.adapter);
  try {
    const what: Exported = !o.adapter
      ? "model"
      : o.merged
        ? "merged model"
        : "adapter";
    let file: GgufFile;
    if (what === "adapter") file = await adapterToGguf(peft, "default", o);
    else
      file = await modelToGguf(
        what === "merged model" ? peft.mergeAndUnload() : model,
        o,
      );
    await saveGgufFile(file, o.out);
    process.stdout.write(
      `${JSON.stringify({ out: o.out, what, bytes: file.byteLength, tensors: file.tensorCount, dtype: o.dtype ?? (what === "adapter" ? "f32" : "f16") })}\n`,
    );
  } finally {
    model.dispose();
  }
}
