export { loadModel, PretrainedModel, weightSourceOf } from "./pretrained.js";
export { Tokenizer } from "./tokenizer.js";
export type { ChatMessage, ChatEncoding, TokenizerFiles } from "./tokenizer.js";
export { SUPPORTED_MODEL_TYPES, resolveConfig } from "./registry.js";
export type { ModelType, ResolvedConfig } from "./registry.js";
export { CausalLM, KVCache, IGNORE_INDEX } from "./causal_lm.js";
export type { ModelDims } from "./causal_lm.js";
export { Linear } from "./layers.js";
export type { LinearAdapter } from "./layers.js";
export type { GenerateOptions, GenerateResult } from "./generate.js";
export type { SamplingOptions } from "./sampling.js";
export type { WeightOptions, WeightSource } from "./weights.js";
export { savePretrained, savePretrainedToDirectory } from "./save.js";
export {
  ClassificationHead,
  HEAD_MODULES_TO_SAVE,
  PEFT_TASK_TYPE,
  headHasBias,
  headModuleName,
  pooledPositions,
  sequenceTargets,
} from "./heads.js";
export type { HeadInit, HeadTask } from "./heads.js";
