/**
 * @webtune/worker: webtune behind comlink in a dedicated Web Worker, so the page stays responsive.
 *
 * @example
 * ```ts
 * import { createTrainer } from "@webtune/worker";
 * const trainer = createTrainer();
 * console.log(await trainer.api.init());
 * const outcome = await trainer.api.runJob(
 *   { model: { source: "HuggingFaceTB/SmolLM2-135M" }, data: { train: "train.jsonl" }, training: { maxSteps: 100 } },
 *   { "train.jsonl": await file.text() },
 *   Comlink.proxy((event) => console.log(event)),
 * );
 * console.log(outcome.summary);
 * ```
 */
export { createTrainer } from "./client.js";
export type { WorkerTrainer } from "./client.js";
export type {
  BeforeAfter,
  CheckpointInfo,
  DataOptions,
  DataSummary,
  DriftBaseline,
  GgufExportRequest,
  JobOutcome,
  ModelInfo,
  MonitorResult,
  NewRowsFile,
  PreviewRow,
  RetrainOutcome,
  RetrieverName,
  RunJobOptions,
  TrainerApi,
  WorkerEvaluateOptions,
  WorkerFewShotOptions,
  WorkerGenerateOptions,
  WorkerLoadOptions,
  WorkerMonitorOptions,
  WorkerRetrainOptions,
  WorkerRetrievalOptions,
} from "./api.js";
