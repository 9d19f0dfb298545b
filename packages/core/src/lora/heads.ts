/**
 * A classification head beside a LoRA adapter, as PEFT's SEQ_CLS / TOKEN_CLS models keep it: the head is in
 * `modules_to_save` (trained in full, saved with the adapter as `base_model.model.<head>.weight`), the config's
 * `task_type` names the task, and webtune adds `id2label` / `label2id` to adapter_config.json so that the labels
 * travel with the adapter (PEFT ignores fields it does not know, with a warning).
 */
import { FormatError } from "../errors.js";
import type { SavedModuleTensor } from "../io/peft.js";
import type { CpuTensor } from "../io/safetensors.js";
import {
  ClassificationHead,
  HEAD_MODULES_TO_SAVE,
  headModuleName,
  PEFT_TASK_TYPE,
  type HeadInit,
  type HeadTask,
} from "../models/heads.js";
import type { PretrainedModel } from "../models/pretrained.js";
import type { LoraConfig } from "./config.js";

/** What a new adapter's head is; the pad token defaults to the model's (see `modelPadTokenId`). */
export type AdapterHead = Omit<HeadInit, "padTokenId" | "seed"> & {
  padTokenId?: number;
};

/** HF's config.pad_token_id, else the tokenizer's pad (or EOS) token: what sequence pooling skips. */
export function modelPadTokenId(
  model: Pick<PretrainedModel, "config" | "tokenizer" | "dims">,
): number | undefined {
  const fromConfig = model.config["pad_token_id"];
  if (typeof fromConfig === "number") return fromConfig;
  return model.tokenizer?.padTokenId ?? model.dims.eosTokenIds[0];
}

/** Marks a config as a head's: PEFT's task_type, and the head modules in modules_to_save as PEFT adds them. */
export function withHead(config: LoraConfig, task: HeadTask): void {
  config.task_type = PEFT_TASK_TYPE[task];
  const names = config.modules_to_save ?? [];
  config.modules_to_save = [
    ...names,
    ...HEAD_MODULES_TO_SAVE.filter((m) => !names.includes(m)),
  ];
}

export function newHead(
  model: PretrainedModel,
  head: AdapterHead,
  seed: number,
): ClassificationHead {
  return ClassificationHead.create(
    model.dims.modelType,
    model.dims.hiddenSize,
    {
      ...head,
      padTokenId: head.padTokenId ?? modelPadTokenId(model),
      seed,
    },
  );
}

/** The config fields and tensors a head adds to the adapter's files. */
export async function headFiles(head: ClassificationHead): Promise<{
  fields: Record<string, unknown>;
  tensors: SavedModuleTensor[];
}> {
  const tensors: SavedModuleTensor[] = [];
  for (const { key, variable } of head.namedVariables())
    tensors.push({
      key,
      shape: [...variable.shape],
      data: (await variable.data()) as Float32Array,
    });
  return {
    fields: { id2label: head.id2label, label2id: head.label2id },
    tensors,
  };
}

/** The config fields webtune adds for a head, which LoraConfig does not hold. */
export const HEAD_CONFIG_FIELDS = ["id2label", "label2id"];

/**
 * The head an adapter's files hold, if its task_type is SEQ_CLS or TOKEN_CLS: labels from id2label (HF's
 * LABEL_i names where the file has none, as a Python PEFT adapter has), weights from modules_to_save.
 */
export function headFromAdapter(
  model: PretrainedModel,
  raw: Record<string, unknown>,
  saved: Map<string, CpuTensor>,
  source: string,
): ClassificationHead | undefined {
  const task = (Object.keys(PEFT_TASK_TYPE) as HeadTask[]).find(
    (t) => PEFT_TASK_TYPE[t] === raw["task_type"],
  );
  if (!task) {
    if (saved.size > 0)
      throw new FormatError(
        `${source}: the adapter saves ${[...saved.keys()].join(", ")} but its task_type is ` +
          `${JSON.stringify(raw["task_type"])}; webtune loads a head only with task_type SEQ_CLS or TOKEN_CLS.`,
      );
    return undefined;
  }
  const name = headModuleName(model.dims.modelType, task);
  const weight = saved.get(`${name}.weight`);
  if (!weight)
    throw new FormatError(
      `${source}: a ${PEFT_TASK_TYPE[task]} adapter for ${model.dims.modelType} must save its head ` +
        `"${name}" (base_model.model.${name}.weight, from modules_to_save); the file has ` +
        `${[...saved.keys()].join(", ") || "no saved module"}.`,
    );
  const labels = labelsOf(raw["id2label"], weight.shape[0]!, source);
  return ClassificationHead.fromValues(
    model.dims.modelType,
    model.dims.hiddenSize,
    { task, labels, padTokenId: modelPadTokenId(model) },
    {
      weight: weight.data as Float32Array,
      weightShape: weight.shape,
      bias: saved.get(`${name}.bias`)?.data as Float32Array | undefined,
    },
    source,
  );
}

function labelsOf(id2label: unknown, count: number, source: string): string[] {
  if (id2label === undefined || id2label === null)
    return Array.from({ length: count }, (_, i) => `LABEL_${i}`);
  if (typeof id2label !== "object" || Array.isArray(id2label))
    throw new FormatError(
      `${source}: id2label must be an object of label id to name, got ${JSON.stringify(id2label)}.`,
    );
  const map = id2label as Record<string, unknown>;
  return Array.from({ length: count }, (_, i) => {
    const label = map[String(i)];
    if (typeof label !== "string")
      throw new FormatError(
        `${source}: id2label has no name for label ${i} of the head's ${count}.`,
      );
    return label;
  });
}
