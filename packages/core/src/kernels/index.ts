export { loraLinear } from './lora_linear/op.js';
export type { LoraLinearOptions } from './lora_linear/op.js';
export { setLoraKernelVariant } from './lora_linear/variant.js';
export type { KernelKind } from './lora_linear/variant.js';
