/**
 * @webtune/core: LoRA fine-tuning of pretrained transformers on WebGPU.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs';
 * import { initRuntime, loraLinear } from '@webtune/core';
 *
 * const info = await initRuntime(); // WebGPU in the browser or a worker; Dawn in Node
 * const y = loraLinear(x, W, null, A, B, { scale: 16 / 8, weightLayout: 'out_in' });
 * ```
 */
export * from "./errors.js";
export * from "./runtime/index.js";
export * from "./kernels/index.js";
export * from "./io/index.js";
export * from "./models/index.js";
export * from "./lora/index.js";
export * from "./train/index.js";
export * from "./train/data/index.js";
