export { loraLinear } from "./lora_linear/op.js";
export type { LoraLinearOptions } from "./lora_linear/op.js";
export { setLoraKernelVariant } from "./lora_linear/variant.js";
export type { KernelKind } from "./lora_linear/variant.js";
export {
  verifyLoraKernels,
  DEFAULT_CHECK_CASES,
} from "./lora_linear/self_test.js";
export type {
  LoraCheckCase,
  LoraCheckResult,
} from "./lora_linear/self_test.js";
export { linear } from "./linear/op.js";
export { trimBufferPool } from "./tfjs_internals.js";
