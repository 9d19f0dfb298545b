/** GGUF export for llama.cpp and the tools built on it: models (f32, f16, q8_0) with their tokenizers, and LoRA adapters. */
export {
  adapterToGguf,
  GGUF_DTYPES,
  modelToGguf,
  saveGgufFile,
  type GgufDtype,
  type GgufExportOptions,
} from "./export.js";
export {
  writeGguf,
  type GgufFile,
  type GgufTensor,
  type GgufValue,
} from "./format.js";
export { dequantizeQ8_0, quantizeQ8_0, type GgmlType } from "./quants.js";
export { ggufArchitecture, permuteHeadRows } from "./architectures.js";
