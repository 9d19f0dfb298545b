/**
 * Saving a model as a Hugging Face folder: config.json, model.safetensors (F32, the checkpoint's own tensor
 * names, merged adapters included) and the tokenizer and generation files of the source.
 */
import * as tf from "@tensorflow/tfjs";
import { writeFilesAtomically } from "../io/atomic_write.js";
import { writeSafetensors } from "../io/safetensors.js";
import { dequantizeMatrix } from "../kernels/gather/op.js";
import { isPacked } from "../kernels/quant/packed.js";
import type { PretrainedModel } from "./pretrained.js";
import type { ClassificationHead } from "./heads.js";
import { headArchitecture } from "./head_names.js";

const COPIED = [
  "tokenizer.json",
  "tokenizer_config.json",
  "generation_config.json",
  "special_tokens_map.json",
  "chat_template.jinja",
];

/**
 * The files of a Hugging Face model folder holding this model's current weights.
 *
 * @example
 * ```ts
 * const merged = peft.mergeAndUnload();
 * const files = await savePretrained(merged); // { "config.json", "model.safetensors", "tokenizer.json", ... }
 * ```
 */
export async function savePretrained(
  model: PretrainedModel,
): Promise<Record<string, Uint8Array | string>> {
  const tensors: Record<
    string,
    { dtype: "F32"; shape: number[]; data: Float32Array }
  > = {};
  for await (const { name, shape, values } of namedCheckpointTensors(model))
    tensors[name] = { dtype: "F32", shape, data: values };
  const head = model.lm.taskHead;
  for (const { key, variable } of head?.namedVariables() ?? [])
    tensors[key] = {
      dtype: "F32",
      shape: [...variable.shape],
      data: (await variable.data()) as Float32Array,
    };
  const files: Record<string, Uint8Array | string> = {
    "config.json": JSON.stringify(
      {
        ...model.config,
        ...(head ? headConfig(model, head) : {}),
        torch_dtype: "float32",
      },
      null,
      2,
    ),
    "model.safetensors": writeSafetensors(tensors, { format: "pt" }),
  };
  for (const name of COPIED) {
    if (model.files && (await model.files.has(name)))
      files[name] = await model.files.text(name);
  }
  return files;
}

/**
 * Every checkpoint tensor of the model with its current values (merged adapters included), by its HF name, as f32
 * (packed f16, int8 and NF4 weights dequantized; Gemma's norms as stored, w not 1 + w). One at a time, so that a
 * converter holds one tensor's values beside its own output.
 */
export async function* namedCheckpointTensors(
  model: PretrainedModel,
): AsyncGenerator<{ name: string; shape: number[]; values: Float32Array }> {
  for (const entry of model.lm.parameters()) {
    const dequantized: tf.Tensor[] = [];
    const parts = entry.get().map((m) => {
      if (!isPacked(m)) return m;
      const values = dequantizeMatrix(m);
      dequantized.push(values);
      return values;
    });
    const whole = parts.length === 1 ? parts[0]! : tf.concat(parts, 0);
    let values = (await whole.data()) as Float32Array;
    const shape = whole.shape;
    if (whole !== parts[0]) whole.dispose();
    tf.dispose(dequantized);
    if (entry.unmap) values = values.map(entry.unmap);
    yield { name: entry.name, shape, values };
  }
}

/**
 * Writes {@link savePretrained}'s files into a Node folder (created if needed) without losing the model already
 * there: every file is written to a temporary name and fsynced first, then renamed, config.json last (see
 * io/atomic_write.ts). A full disk throws a WebtuneError naming the folder and leaves its files as they were.
 * Returns the names written.
 *
 * @example
 * ```ts
 * await savePretrainedToDirectory(peft.mergeAndUnload(), "runs/merged");
 * ```
 */
export async function savePretrainedToDirectory(
  model: PretrainedModel,
  dir: string,
): Promise<string[]> {
  const files = Object.entries(await savePretrained(model));
  // The description last: a crash between renames never leaves a config.json newer than its weights.
  files.sort(
    ([a], [b]) => Number(a === "config.json") - Number(b === "config.json"),
  );
  await writeFilesAtomically(dir, files, "the model");
  return files.map(([name]) => name);
}

/**
 * What config.json says of a classification head, so that AutoModelFor*Classification loads the folder: the class,
 * the labels, and the pad token its pooling skips.
 */
function headConfig(
  model: PretrainedModel,
  head: ClassificationHead,
): Record<string, unknown> {
  const architecture = headArchitecture(model.dims.modelType, head.task);
  return {
    ...(architecture ? { architectures: [architecture] } : {}),
    id2label: head.id2label,
    label2id: head.label2id,
    pad_token_id: head.padTokenId ?? null,
  };
}
