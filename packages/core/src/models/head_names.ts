/**
 * The names Hugging Face and PEFT give classification heads, without tfjs (configs and jobs read them).
 */

export type HeadTask = "seq-cls" | "token-cls";

export const HEAD_TASKS: readonly HeadTask[] = ["seq-cls", "token-cls"];

/** PEFT's task_type for each head. */
export const PEFT_TASK_TYPE: Record<HeadTask, string> = {
  "seq-cls": "SEQ_CLS",
  "token-cls": "TOKEN_CLS",
};

/** The modules PeftModelForSequenceClassification / ForTokenClassification add to modules_to_save. */
export const HEAD_MODULES_TO_SAVE = ["classifier", "score"];

/** HF's module name for the head: GPT2ForTokenClassification's `classifier`, `score` everywhere else. */
export function headModuleName(modelType: string, task: HeadTask): string {
  return modelType === "gpt2" && task === "token-cls" ? "classifier" : "score";
}

/** Only the token-classification heads have a bias (`nn.Linear(C, L)`); the sequence ones are `bias=False`. */
export function headHasBias(task: HeadTask): boolean {
  return task === "token-cls";
}

const CLASS_PREFIX: Record<string, string> = {
  gpt2: "GPT2",
  llama: "Llama",
  qwen2: "Qwen2",
  gemma3_text: "Gemma3Text",
};

/**
 * The transformers class of a model with this head, for config.json's `architectures`; undefined where
 * transformers has none (Gemma 3 has no token-classification class).
 */
export function headArchitecture(
  modelType: string,
  task: HeadTask,
): string | undefined {
  const prefix = CLASS_PREFIX[modelType];
  if (!prefix || (modelType === "gemma3_text" && task === "token-cls"))
    return undefined;
  return `${prefix}For${task === "seq-cls" ? "Sequence" : "Token"}Classification`;
}
