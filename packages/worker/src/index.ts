/**
 * @webtune/worker: webtune behind comlink in a dedicated Web Worker, so the page stays responsive.
 *
 * @example
 * ```ts
 * import { createTrainer } from "@webtune/worker";
 * const trainer = createTrainer();
 * console.log(await trainer.api.init());
 * ```
 */
export { createTrainer } from "./client.js";
export type { WorkerTrainer } from "./client.js";
export type {
  CheckpointInfo,
  DataOptions,
  DataSummary,
  ModelInfo,
  PreviewRow,
  TrainerApi,
  WorkerEvaluateOptions,
  WorkerGenerateOptions,
  WorkerLoadOptions,
  WorkerTrainOptions,
} from "./api.js";
