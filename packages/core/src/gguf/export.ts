/**
 * Models and LoRA adapters as GGUF files for llama.cpp (and Ollama, LM Studio, node-llama-cpp, wllama): what
 * convert_hf_to_gguf.py and convert_lora_to_gguf.py write, from the weights webtune holds.
 */
import type * as tf from "@tensorflow/tfjs";
import { ConfigError } from "../errors.js";
import { writeFilesAtomically } from "../io/atomic_write.js";
import { ConfigReader } from "../models/config.js";
import type { PretrainedModel } from "../models/pretrained.js";
import { namedCheckpointTensors } from "../models/save.js";
import { scalingOf } from "../lora/config.js";
import { rankAndAlpha } from "../lora/target.js";
import type { LoraModel } from "../lora/model.js";
import { ggufArchitecture, type ConvertedTensor } from "./architectures.js";
import {
  f32,
  str,
  u32,
  writeGguf,
  type GgufFile,
  type GgufTensor,
  type GgufValue,
} from "./format.js";
import { fitsQ8_0, type GgmlType } from "./quants.js";
import { vocabularyMetadata } from "./vocab.js";

/** How the 2-D weights are stored; norms, biases and position embeddings stay F32, as llama.cpp's converter keeps them. */
export type GgufDtype = "f32" | "f16" | "q8_0";

export const GGUF_DTYPES: readonly GgufDtype[] = ["f32", "f16", "q8_0"];

/** `general.file_type` (llama_ftype): ALL_F32, MOSTLY_F16, MOSTLY_Q8_0. */
const FILE_TYPE: Record<GgufDtype, number> = { f32: 0, f16: 1, q8_0: 7 };

export interface GgufExportOptions {
  /** Default "f16", as llama.cpp's converter. */
  dtype?: GgufDtype;
  /** `general.name` (default: the model's source). */
  name?: string;
}

/**
 * The model (its current weights: after `peft.mergeAndUnload()`, the tuned model) as a GGUF file with its
 * tokenizer, which llama.cpp loads as it loads its own converter's output.
 *
 * @example
 * ```ts
 * const file = await modelToGguf(peft.mergeAndUnload(), { dtype: "f16" });
 * await saveGgufFile(file, "runs/tuned.gguf"); // llama-cli -m runs/tuned.gguf, ollama create -f Modelfile ...
 * ```
 */
export async function modelToGguf(
  model: PretrainedModel,
  options: GgufExportOptions = {},
): Promise<GgufFile> {
  const dtype = checkDtype(options.dtype ?? "f16");
  const dims = model.dims;
  const arch = ggufArchitecture(dims.modelType);
  if (model.lm.taskHead)
    throw new ConfigError(
      `GGUF export: this model has a ${model.lm.taskHead.task} head, which llama.cpp cannot run; export the language model without it.`,
    );
  const tokenizer = model.tokenizer;
  if (!tokenizer || !model.files || !(await model.files.has("tokenizer.json")))
    throw new ConfigError(
      `GGUF export: ${model.source} has no tokenizer.json, and a GGUF model carries its tokenizer.`,
    );
  const cfg = new ConfigReader(model.config, `${model.source}/config.json`);
  const tensors: ConvertedTensor[] = [];
  for await (const t of namedCheckpointTensors(model))
    tensors.push(arch.convert(t.name, t.shape, t.values, dims));
  tensors.push(...arch.extraTensors(cfg, dims));
  const metadata: Record<string, GgufValue> = {
    "general.architecture": str(arch.name),
    "general.type": str("model"),
    "general.name": str(options.name ?? model.source),
    "general.file_type": u32(FILE_TYPE[dtype]),
    "general.quantization_version": u32(2),
    ...arch.hyperparameters(cfg, dims),
    ...vocabularyMetadata(
      tokenizer,
      JSON.parse(await model.files.text("tokenizer.json")),
      dims.vocabSize,
    ),
  };
  return writeGguf(
    metadata,
    tensors.map((t) => stored(t, dtype)),
  );
}

/**
 * An adapter as a llama.cpp LoRA GGUF (`llama-cli -m base.gguf --lora adapter.gguf`), tensors `<base>.lora_a`
 * (A [r, in]) and `.lora_b` (B [out, r]) with the base model's q/k row order.
 *
 * llama.cpp scales each update by `adapter.lora.alpha / r`, r read from each module's B. One alpha serves every
 * module: rsLoRA (alpha / √r), rank_pattern and alpha_pattern become that alpha and, where a module's own scale
 * differs, B scaled by the ratio, so every module's update is the same as in webtune. DoRA has no GGUF form (merge
 * it and export the model), nor does a classification head.
 *
 * @example
 * ```ts
 * const file = await adapterToGguf(peft, "default");
 * await saveGgufFile(file, "runs/adapter.gguf");
 * ```
 */
export async function adapterToGguf(
  peft: LoraModel,
  name = peft.activeAdapter,
  options: Omit<GgufExportOptions, "name"> = {},
): Promise<GgufFile> {
  const dtype = checkDtype(options.dtype ?? "f32");
  if (!name)
    throw new ConfigError("GGUF export: the model has no adapter to export.");
  const config = peft.config(name);
  const dims = peft.base.dims;
  const arch = ggufArchitecture(dims.modelType);
  if (config.use_dora)
    throw new ConfigError(
      `GGUF export: adapter "${name}" is DoRA, which llama.cpp's LoRA format cannot express; export the merged model instead (webtune export --merged).`,
    );
  if (peft.head(name))
    throw new ConfigError(
      `GGUF export: adapter "${name}" trains a classification head (modules_to_save), which llama.cpp cannot run.`,
    );
  // Each module's A and B, by module name ("model.layers.0.self_attn.q_proj").
  const factors = new Map<string, Partial<Record<string, tf.Variable>>>();
  for (const { key, part, variable } of peft.namedTrainableVariables(name)) {
    const module = key.slice(0, key.lastIndexOf("."));
    factors.set(module, { ...factors.get(module), [part]: variable });
  }
  const reference = rankAndAlpha(config, [...factors.keys()][0]!);
  // The one alpha: the first module's scale times its rank (for rsLoRA, lora_alpha·√r).
  const alpha =
    scalingOf(reference.r, reference.alpha, config.use_rslora) * reference.r;
  const tensors: GgufTensor[] = [];
  for (const [module, { lora_A, lora_B }] of factors) {
    const { r, alpha: moduleAlpha } = rankAndAlpha(config, module);
    const ratio = scalingOf(r, moduleAlpha, config.use_rslora) / (alpha / r);
    const base = `${arch.moduleName(module)}.weight`;
    const A = (await lora_A!.data()) as Float32Array;
    const bShape = [...lora_B!.shape];
    const B = arch.loraB(
      module,
      (await lora_B!.data()) as Float32Array,
      bShape,
      dims,
    );
    tensors.push(
      stored(
        { name: `${base}.lora_a`, shape: [...lora_A!.shape], values: A },
        dtype,
      ),
      stored(
        {
          name: `${base}.lora_b`,
          shape: bShape,
          values: ratio === 1 ? B : B.map((v) => v * ratio),
        },
        dtype,
      ),
    );
  }
  return writeGguf(
    {
      "general.architecture": str(arch.name),
      "general.type": str("adapter"),
      "general.name": str(name),
      "general.file_type": u32(FILE_TYPE[dtype]),
      "general.quantization_version": u32(2),
      "adapter.type": str("lora"),
      "adapter.lora.alpha": f32(alpha),
    },
    tensors,
  );
}

/**
 * Writes a GGUF file in Node: to a temporary name in the same folder, fsynced, then renamed, so that a full disk
 * or a crash never leaves a cut-short file under the real name.
 */
export async function saveGgufFile(
  file: GgufFile,
  path: string,
): Promise<void> {
  const slash = path.lastIndexOf("/");
  const dir = slash < 0 ? "." : path.slice(0, slash) || "/";
  await writeFilesAtomically(dir, [[path.slice(slash + 1), file.parts]], path);
}

function checkDtype(dtype: string): GgufDtype {
  if (!(GGUF_DTYPES as readonly string[]).includes(dtype))
    throw new ConfigError(
      `GGUF export: dtype "${dtype}" is not one of ${GGUF_DTYPES.join(", ")}.`,
    );
  return dtype as GgufDtype;
}

/**
 * convert_hf_to_gguf's storage rule: 1-D tensors, norms and position embeddings stay F32; 2-D weights take the
 * chosen type, and Q8_0 falls back to F16 for rows that are not whole blocks.
 */
function stored(t: ConvertedTensor, dtype: GgufDtype): GgufTensor {
  let type: GgmlType = "F32";
  if (t.shape.length >= 2 && !t.name.startsWith("position_embd")) {
    if (dtype === "f16") type = "F16";
    if (dtype === "q8_0") type = fitsQ8_0(t.shape) ? "Q8_0" : "F16";
  }
  return { ...t, type };
}
