export { loraLinear } from "./lora_linear/op.js";
export type { LoraLinearOptions } from "./lora_linear/op.js";
export { setLoraKernelVariant } from "./lora_linear/variant.js";
export type {
  KernelKind,
  MatmulUse,
  TileTable,
  VariantName,
} from "./lora_linear/variant.js";
export type { MatmulLayout } from "./lora_linear/shader.wgsl.js";
export { PLAIN_MATMUL } from "./lora_linear/shader.wgsl.js";
// The autotuner times the kernels through the engine's pipelines; it is exported with the kernels it chooses among.
export { autotune } from "../engine/autotune.js";
export type {
  AutotuneMode,
  AutotuneOption,
  AutotuneOptions,
} from "../engine/autotune.js";
export { setReductionKind } from "./subgroups.js";
export type { ReductionKind } from "./subgroups.js";
export {
  verifyLoraKernels,
  DEFAULT_CHECK_CASES,
} from "./lora_linear/self_test.js";
export type {
  LoraCheckCase,
  LoraCheckResult,
} from "./lora_linear/self_test.js";
export { linear } from "./linear/op.js";
export { trimBufferPool } from "../backend/buffers.js";
export {
  PackedMatrix,
  NF4_LEVELS,
  BLOCK_SIZE,
  SUPER_BLOCK_SIZE,
  isPacked,
  matrixBytes,
  matrixTensors,
} from "./quant/packed.js";
export type { Matrix, PackedFormat, BlockScales } from "./quant/packed.js";
export {
  encodeMatrix,
  decodeMatrix,
  uploadPacked,
  packMatrix,
} from "./quant/codec.js";
export type { PackedHost, HostScales, EncodeOptions } from "./quant/codec.js";
export { gatherRows, dequantizeMatrix } from "./gather/op.js";
