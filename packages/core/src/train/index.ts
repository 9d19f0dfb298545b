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
export type { EvaluationResult, RowScore, Scorer } from "./evaluate.js";
export {
  driftReport,
  labelShift,
  lengthShift,
  metricRows,
  pValueText,
  readBaselineMetrics,
  signedText,
  taskMetric,
} from "./drift.js";
export type {
  BaselineMetrics,
  DriftMetric,
  DriftOptions,
  DriftReport,
  LabelShift,
  LengthShift,
  LengthSummary,
  MetricDrift,
} from "./drift.js";
export {
  bootstrapDelta,
  chiSquareHomogeneity,
  chiSquareSurvival,
  gammaQ,
  kolmogorovSurvival,
  ksTwoSample,
} from "./drift_stats.js";
export type {
  ChiSquareTest,
  DeltaInterval,
  KsTest,
  RatioRow,
} from "./drift_stats.js";
export { fewShotEvaluate, fewShotRows } from "./few_shot.js";
export type {
  FewShotOptionNames,
  FewShotOptions,
  FewShotReport,
  FewShotRows,
  FewShotTokenizer,
} from "./few_shot.js";
export {
  bm25Retriever,
  embeddingRetriever,
  retrievalTerms,
  retrievalText,
} from "./retrieval.js";
export type { Neighbour, Retriever } from "./retrieval.js";
export {
  hiddenStateEmbeddings,
  hiddenStateRetriever,
} from "./hidden_embeddings.js";
export type {
  HiddenStateModel,
  HiddenStateOptions,
} from "./hidden_embeddings.js";
export { retrievalEvaluate, retrievalRows } from "./retrieval_rows.js";
export type {
  RetrievalOptions,
  RetrievalReport,
  RetrievalRows,
} from "./retrieval_rows.js";
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
export { paraphrase } from "./paraphrase.js";
export type {
  Paraphrase,
  ParaphraseModel,
  ParaphraseOptions,
  ParaphraseRejection,
} from "./paraphrase.js";
