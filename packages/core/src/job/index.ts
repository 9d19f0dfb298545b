export { FineTuneJob } from "./fine_tune_job.js";
export { JOB_DEFAULTS } from "./job.js";
export type {
  FineTuneJobInput,
  FineTuneJobSpec,
  JobAdapter,
  JobData,
  JobEvaluation,
  JobField,
  JobModel,
  JobReplay,
  JobAugment,
  AugmentOp,
  JobTraining,
} from "./job.js";
export { JobError, adapterConfig } from "./validate.js";
export type { JobFieldNames, JobProblem } from "./validate.js";
export { JobControl } from "./control.js";
export { JOB_ADAPTER } from "./run.js";
export { readJobData } from "./data.js";
export { taskNames } from "./data.js";
export type {
  JobDataOptions,
  JobFileField,
  JobSplits,
  RetentionSet,
  TaskSplits,
} from "./data.js";
export type { JobResult, JobRunOptions, TaskResult } from "./run.js";
export type {
  DataEvent,
  ForgettingEvent,
  JobEvent,
  PhaseEvent,
  RetentionEvent,
  TestEvent,
} from "./events.js";
export {
  applyPromptTemplate,
  derivePromptTemplate,
  fitsPromptTemplate,
} from "./prompt_template.js";
export * from "./sweep.js";
export { augmentedRecords } from "./augment.js";
export type { AugmentedRecord } from "./augment.js";
