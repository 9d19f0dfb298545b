/** The FineTuneJob class: a checked job description, its JSON, and its run. */
import type {
  FineTuneJobInput,
  FineTuneJobSpec,
  JobAdapter,
  JobData,
  JobEvaluation,
  JobModel,
  JobReplay,
  JobAugment,
  JobTraining,
} from "./job.js";
import { runJob, type JobResult, type JobRunOptions } from "./run.js";
import {
  JobError,
  jobProblems,
  withDefaults,
  type JobFieldNames,
  type JobProblem,
} from "./validate.js";

/**
 * One fine-tuning run, described completely as plain data: the model and its storage, the data files and split,
 * the adapter, the training options, evaluation and checkpoints. Its JSON is the job file that `webtune train
 * --job` runs, the demo downloads, and the worker receives; defaults come from {@link JOB_DEFAULTS}.
 *
 * @example
 * ```ts
 * const job = FineTuneJob.from({
 *   model: { source: "HuggingFaceTB/SmolLM2-135M" },
 *   data: { train: "train.jsonl", test: "test.jsonl" },
 *   training: { learningRate: 1e-3, maxSteps: 200 },
 * }); // throws a JobError naming every bad field, before anything is loaded
 * const run = await job.run({ readFile: (path) => readFile(path), onEvent: console.log });
 * console.log(run.summary.test_exactMatch);
 * await saveAdapterToDirectory(await run.peft.saveAdapter(), "out");
 * ```
 */
export class FineTuneJob implements FineTuneJobSpec {
  readonly webtuneJob = 1 as const;
  readonly model: JobModel;
  readonly data: JobData;
  readonly method: FineTuneJobSpec["method"];
  readonly adapter: JobAdapter;
  readonly training: JobTraining;
  readonly replay: JobReplay;
  readonly augment: JobAugment;
  readonly evaluation: JobEvaluation;
  readonly checkpointEvery: number | null;

  private constructor(spec: FineTuneJobSpec) {
    this.model = { ...spec.model };
    this.data = { ...spec.data };
    this.method = spec.method;
    this.adapter = { ...spec.adapter };
    this.training = { ...spec.training };
    this.replay = { ...spec.replay };
    this.augment = { ...spec.augment, edaOps: [...spec.augment.edaOps] };
    this.evaluation = { ...spec.evaluation };
    this.checkpointEvery = spec.checkpointEvery;
  }

  /**
   * The job `input` describes (a parsed job file, or fields a surface collected), defaults filled in. Throws a
   * {@link JobError} that names every bad or unknown field, in `names`' words (a CLI's flags, a form's labels).
   */
  static from(input: unknown, names: JobFieldNames = {}): FineTuneJob {
    const { spec, problems } = withDefaults(input, names);
    const all = [...problems, ...jobProblems(spec, names)];
    if (all.length > 0) throw new JobError(all);
    return new FineTuneJob(spec);
  }

  /** Every bad field, in `names`' words; empty when the job can run. */
  problems(names: JobFieldNames = {}): JobProblem[] {
    return jobProblems(this, names);
  }

  /** Throws a {@link JobError} naming every bad field; nothing is loaded or allocated. */
  validate(names: JobFieldNames = {}): void {
    const problems = this.problems(names);
    if (problems.length > 0) throw new JobError(problems);
  }

  /** This job with some fields changed, checked again. */
  with(changes: FineTuneJobInput, names: JobFieldNames = {}): FineTuneJob {
    const spec = this.toJSON();
    return FineTuneJob.from(
      {
        ...spec,
        ...changes,
        model: { ...spec.model, ...changes.model },
        data: { ...spec.data, ...changes.data },
        adapter: { ...spec.adapter, ...changes.adapter },
        training: { ...spec.training, ...changes.training },
        replay: { ...spec.replay, ...changes.replay },
        augment: { ...spec.augment, ...changes.augment },
        evaluation: { ...spec.evaluation, ...changes.evaluation },
      },
      names,
    );
  }

  /** The job as plain data, every field present (null for "none"): what a job file holds. */
  toJSON(): FineTuneJobSpec {
    return {
      webtuneJob: 1,
      model: { ...this.model },
      data: { ...this.data },
      method: this.method,
      adapter: { ...this.adapter },
      training: { ...this.training },
      replay: { ...this.replay },
      augment: { ...this.augment, edaOps: [...this.augment.edaOps] },
      evaluation: { ...this.evaluation },
      checkpointEvery: this.checkpointEvery,
    };
  }

  /**
   * Loads the model (unless given one), reads and splits the data, adds the adapter, scores the base model on the
   * test rows, trains, scores the tuned model and checks forgetting, reporting each as a {@link JobEvent}. A
   * {@link JobControl} stops it, pauses it or skips a scoring pass. The caller disposes the result's model and
   * adapter (unless it passed them in).
   */
  run(options: JobRunOptions): Promise<JobResult> {
    this.validate(options.names);
    return runJob(this.toJSON(), options);
  }
}
