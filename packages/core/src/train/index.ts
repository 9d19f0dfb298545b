export { Trainer, lossTokens } from "./trainer.js";
export type { TrainPart, ValidationBatches } from "./trainer.js";
export type {
  TrainBatch,
  TrainerOptions,
  TrainEvent,
  StepEvent,
  EvalEvent,
  TrainResult,
} from "./trainer.js";
export { AdamW, ADAMW_DEFAULTS, loraPlusGroups } from "./optimizer.js";
export type {
  AdamWConfig,
  AdamWState,
  AdamWMoments,
  ParamGroup,
} from "./optimizer.js";
export type { RunIdentity } from "./run_identity.js";
export type { MemoryOptionNames } from "./preflight.js";
export type { TrainerOptionNames } from "./trainer.js";
export { createSchedule, warmupStepsFromRatio } from "./schedule.js";
export type {
  LrSchedule,
  LrSchedulerType,
  ScheduleConfig,
} from "./schedule.js";
export { clipGradNorm, clipGradNormAsync } from "./clip.js";
export type { ClippedGrads } from "./clip.js";
export {
  accuracy,
  classificationMetrics,
  confusionMatrix,
  exactMatch,
  perplexity,
  perplexityFromTotals,
} from "./metrics.js";
export type { ClassificationMetrics, Label } from "./metrics.js";
export { evaluate, forgettingCheck, rowNll, rowNlls } from "./evaluate.js";
export type { EvaluationResult, Scorer } from "./evaluate.js";
export { fewShotEvaluate, fewShotRows } from "./few_shot.js";
export type {
  FewShotOptionNames,
  FewShotOptions,
  FewShotReport,
  FewShotRows,
  FewShotTokenizer,
} from "./few_shot.js";
export { FullFineTune } from "./trainable.js";
export type { TrainableModel, NamedVariable } from "./trainable.js";
export { evaluateHead } from "./head_evaluate.js";
export type { HeadEvaluation, HeadScorer } from "./head_evaluate.js";
export { entitySpans, nerMetrics } from "./ner_metrics.js";
export type {
  EntityScores,
  EntitySpan,
  NerMetrics,
  NerMode,
} from "./ner_metrics.js";
export { predictWithHead, splitWords } from "./head_predict.js";
export type { HeadPrediction } from "./head_predict.js";
