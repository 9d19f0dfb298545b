export { LoraModel } from "./model.js";
export type { ParameterCounts, AdapterInit } from "./model.js";
export { loraConfig, LORA_DEFAULTS, scalingOf } from "./config.js";
export type { LoraConfig, LoraConfigInput } from "./config.js";
export { peftConfigJson } from "./peft_config.js";
export { LoraLinear } from "./layer.js";
export type { LoraWeights } from "./layer.js";
export { modelPadTokenId } from "./heads.js";
export type { AdapterHead } from "./heads.js";
