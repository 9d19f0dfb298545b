/**
 * Running a FineTuneJob: model → data → split → adapter (or every weight) → base scores → Trainer → tuned scores
 * and the forgetting check. The CLI, the worker and the demo all run jobs through here.
 */
import { ConfigError } from "../errors.js";
import { initRuntime } from "../runtime/runtime.js";
import type { CheckpointStore } from "../io/checkpoint_store.js";
import type { LoadOptions } from "../io/hub.js";
import { LoraModel } from "../lora/model.js";
import { loadModel, type PretrainedModel } from "../models/pretrained.js";
import type { AdapterFiles } from "../io/peft.js";
import { epochBatches, epochSequence } from "../train/data/batch.js";
import {
  mixedSequence,
  temperatureWeights,
  type MixSource,
} from "../train/data/mix.js";
import { findOverlap } from "../train/data/overlap.js";
import type { DatasetFormat, Example } from "../train/data/types.js";
import { evaluate, type EvaluationResult } from "../train/evaluate.js";
import { fewShotEvaluate, type FewShotReport } from "../train/few_shot.js";
import { FullFineTune } from "../train/trainable.js";
import {
  Trainer,
  type TrainerOptionNames,
  type TrainResult,
  type ValidationBatches,
} from "../train/trainer.js";
import type { JobControl } from "./control.js";
import {
  readJobData,
  type JobDataOptions,
  type JobSplits,
  type TaskSplits,
} from "./data.js";
import type { ForgettingEvent, JobEvent, RetentionEvent } from "./events.js";
import type { FineTuneJobSpec, JobField } from "./job.js";
import { derivePromptTemplate } from "./prompt_template.js";
import { augmentJobData, augments } from "./augment.js";
import { adapterConfig, fieldName } from "./validate.js";

/** The adapter a job trains, in a LoraModel's adapters. */
export const JOB_ADAPTER = "default";

/** Where a run gets what the job only names, and where it reports. */
export interface JobRunOptions extends JobDataOptions {
  /**
   * The files of the adapter that `adapter.continueFrom` names (where it is not a folder, URL or hub id this side
   * can open, e.g. files a page was handed). Default: loaded from that source.
   */
  readAdapter?: (source: string) => Promise<AdapterFiles>;
  /**
   * The job's base model, already loaded (with the job's storage; trainable for a full fine-tune): it is used
   * instead of loading one, and the caller keeps owning it.
   */
  model?: PretrainedModel;
  /** The LoraModel over `model` to add the job's adapter to (replacing one named "default"). */
  peft?: LoraModel;
  /** Hub address, token, cache and progress for loading the model. */
  load?: Omit<LoadOptions, "revision" | "signal">;
  control?: JobControl;
  /** Where checkpoints go when the job asks for them. */
  checkpoints?: CheckpointStore;
  /** A checkpoint to continue from (its files). */
  resume?: Record<string, Uint8Array>;
  /** How messages name the Trainer's options on this surface (the job's fields and the reader's: see above). */
  trainerNames?: Partial<TrainerOptionNames>;
  /**
   * Called once everything is read and checked, before the first scoring or step (a CLI starts --out here), with
   * PEFT's trainable-parameters line (or the full fine-tune's count) and the optimizer steps the run will take.
   */
  beforeRun?: (run: { trainable: string; steps: number }) => Promise<void>;
  onEvent?: (event: JobEvent) => void;
}

/** What a run leaves: the model and its adapter (the caller disposes them), and every measurement. */
export interface JobResult {
  /** The job as run, its prompt template filled in from the data. */
  job: FineTuneJobSpec;
  model: PretrainedModel;
  /** Holds the trained adapter ("default") when the method is lora. */
  peft: LoraModel;
  /** The data as the run split it; `test` is the rows it scored. */
  splits: JobSplits;
  train: TrainResult;
  /** The first task's test scores (the only task's, unless the job trains several). */
  test: {
    base?: EvaluationResult;
    /** The base model with `evaluation.fewShot` training examples in each prompt. */
    fewShot?: EvaluationResult;
    tuned?: EvaluationResult;
  };
  /** Classification: test accuracy of always answering the training split's most common label. */
  majorityAccuracy?: number;
  /** Each task's test scores (one entry unless the job trains several). */
  tasks: TaskResult[];
  forgetting?: ForgettingEvent;
  /** Sequential fine-tuning: each earlier task's scores before and after this run. */
  retention?: RetentionEvent[];
  overlap?: { rows: number; lines: number[] };
  /** The run's numbers as one flat record, as the CLI prints it. */
  summary: Record<string, unknown>;
}

/** One task's test scores in a run. */
export interface TaskResult {
  name: string;
  base?: EvaluationResult;
  fewShot?: EvaluationResult;
  fewShotReport?: FewShotReport;
  tuned?: EvaluationResult;
  majorityAccuracy?: number;
}

/** Runs `job`, which must have been checked (FineTuneJob.from does). */
export async function runJob(
  job: FineTuneJobSpec,
  o: JobRunOptions,
): Promise<JobResult> {
  const emit = (e: JobEvent) => o.onEvent?.(e);
  emit({ type: "phase", phase: "loading model" });
  if (!o.model) await initRuntime(); // idempotent: a caller that started it with options keeps them
  const model =
    o.model ??
    (await loadModel(job.model.source, {
      ...o.load,
      revision: job.model.revision,
      dtype: job.model.dtype,
      quantize: job.model.quantize ?? undefined,
      doubleQuant: job.model.doubleQuant,
      trainable: job.method === "full",
    }));
  const peft = o.peft ?? new LoraModel(model);
  const owned = () => {
    if (!o.peft) peft.dispose();
    if (!o.model) model.dispose();
  };
  try {
    return await runOn(job, model, peft, o, emit);
  } catch (error) {
    owned();
    throw error;
  }
}

async function runOn(
  job: FineTuneJobSpec,
  model: PretrainedModel,
  peft: LoraModel,
  o: JobRunOptions,
  emit: (e: JobEvent) => void,
): Promise<JobResult> {
  emit({ type: "phase", phase: "reading data" });
  const data = await readJobData(job, model, o);
  const rowsOf = (t: TaskSplits) =>
    t.test.slice(0, job.evaluation.testRows ?? undefined);
  const test = rowsOf(data.tasks[0]!);
  const overlaps = data.tasks.map((t) => {
    const rows = rowsOf(t);
    return rows.length > 0
      ? findOverlap([...t.train, ...t.val], rows)
      : undefined;
  });
  const overlap = overlaps[0];
  const instruction = data.tasks.find((t) => t.format === "instruction");
  const promptTemplate =
    job.data.promptTemplate ??
    (instruction
      ? derivePromptTemplate(instruction.train.map((e) => e.prompt ?? ""))
      : null);
  const ran: FineTuneJobSpec = {
    ...job,
    data: { ...job.data, promptTemplate },
  };
  if (augments(job))
    await augmentData(job, data, model, peft, o, emit, promptTemplate);
  emit({
    type: "data",
    format: data.format,
    report: data.report,
    labels: data.labels,
    sizes: {
      train: data.train.length,
      val: data.val.length,
      test: test.length,
    },
    overlap: overlap ?? { rows: 0, lines: [] },
    promptTemplate,
    ...(data.tasks.length > 1
      ? {
          tasks: data.tasks.map((t, i) => ({
            name: t.name,
            format: t.format,
            labels: t.labels,
            sizes: {
              train: t.train.length,
              val: t.val.length,
              test: rowsOf(t).length,
            },
            overlap: overlaps[i] ?? { rows: 0, lines: [] },
          })),
        }
      : {}),
    ...(data.replay ? { replayRows: data.replay.length } : {}),
  });

  const trained = await addTrainable(job, model, peft, o, data.labels ?? []);
  const { trainer, train, val, steps } = makeTrainer(
    job,
    model,
    trained,
    data,
    o,
    emit,
  );
  await o.beforeRun?.({
    trainable:
      trained === peft
        ? peft.printTrainableParameters()
        : `full fine-tuning: ${model.lm.parameterCount().toLocaleString("en-US")} trainable parameters`,
    steps,
  });

  const tok = model.tokenizer!;
  const scorer = trained === peft ? peft : model;
  const multitask = data.tasks.length > 1;
  const PHASES = {
    base: "scoring base",
    "few-shot": "scoring few-shot",
    tuned: "scoring tuned",
    retention: "checking retention",
  } as const;
  /**
   * Scores `rows` of a task (the base model: without any adapter; an adapter continued from is scored as it was),
   * the few-shot baseline with k of its training rows in each prompt. Undefined when skipped or stopped.
   */
  const score = async (
    phase: keyof typeof PHASES,
    rows: Example[],
    how: Pick<TaskSplits, "name" | "format" | "labels"> & {
      train?: Example[];
    },
  ): Promise<
    { result: EvaluationResult; fewShot?: FewShotReport } | undefined
  > => {
    if (rows.length === 0 || o.control?.stopRequested) return undefined;
    // Started before it is announced, so that a skip in answer to the announcement reaches it.
    const signal = o.control?.startScoring();
    emit({
      type: "phase",
      phase: PHASES[phase],
      rows: rows.length,
      ...(multitask || phase === "retention" ? { task: how.name } : {}),
    });
    const run = () =>
      phase === "few-shot"
        ? fewShotEvaluate(scorer, tok, {
            train: how.train!,
            test: rows,
            k: job.evaluation.fewShot!,
            seed: job.training.seed,
            // A job with a head has no few-shot baseline (checkJob refuses it): the format is a file format here.
            format: how.format as DatasetFormat,
            labels: how.labels,
            signal,
          }).then(({ result, report }) => ({ result, fewShot: report }))
        : evaluate(scorer, tok, rows, {
            format: how.format,
            labels: how.labels,
            signal,
            head: trained === peft ? peft.head() : undefined,
            // The test event keeps each row's scores: `webtune monitor` resamples them later as its baseline.
            keepRows: phase !== "retention",
          }).then((result) => ({ result }));
    try {
      return phase === "base" || phase === "few-shot"
        ? trained === peft
          ? await peft.withAdaptersDisabled(run)
          : await run()
        : await run();
    } catch (error) {
      if (signal?.aborted) return undefined; // skipped, or the run was stopped
      throw error;
    } finally {
      o.control?.endScoring();
    }
  };
  const tasks: TaskResult[] = data.tasks.map((t) => ({ name: t.name }));
  const result: Omit<JobResult, "train" | "summary"> = {
    job: ran,
    model,
    peft,
    splits: { ...data, test },
    test: {},
    tasks,
    overlap,
  };
  const scoreTasks = async (
    phase: "base" | "few-shot" | "tuned",
    step: number,
  ) => {
    for (const [i, t] of data.tasks.entries()) {
      const scored = await score(phase, rowsOf(t), t);
      const key = phase === "few-shot" ? "fewShot" : phase;
      tasks[i]![key] = scored?.result;
      if (scored)
        emit({
          type: "test",
          phase,
          step,
          ...(multitask ? { task: t.name } : {}),
          ...(scored.fewShot ? { fewShot: scored.fewShot } : {}),
          ...scored.result,
        });
      if (scored?.fewShot) tasks[i]!.fewShotReport = scored.fewShot;
    }
    const first = tasks[0]!;
    if (phase === "few-shot") result.test.fewShot = first.fewShot;
    else result.test[phase] = first[phase];
  };
  if (job.evaluation.scoreBase) await scoreTasks("base", 0);
  if (job.evaluation.fewShot !== null) await scoreTasks("few-shot", 0);
  // Earlier tasks, as the adapter continued from holds them.
  const retained: (EvaluationResult | undefined)[] = [];
  for (const set of data.retention ?? [])
    retained.push((await score("retention", set.rows, set))?.result);
  const reference = data.reference;
  // General text is read by the LM head, whatever head the task trains (its blocks are what tuning changes).
  const scoreReference = () =>
    withLmHead(model, () =>
      evaluate(scorer, tok, reference!, { format: "completion" }),
    );
  // The base model's own loss: the new adapter is switched off, not trusted to be a no-op at its init.
  const referenceBase =
    reference && !o.control?.stopRequested
      ? trained === peft
        ? await peft.withAdaptersDisabled(scoreReference)
        : await scoreReference()
      : undefined;

  emit({ type: "phase", phase: "training" });
  o.control?.attach(trainer);
  let trainResult: TrainResult;
  try {
    trainResult = await trainer.train({ train, val }, o.resume);
  } finally {
    o.control?.attach(undefined);
  }

  // A stopped run keeps what it trained and answers at once: scoring it is a separate, optional step.
  await scoreTasks("tuned", trainResult.steps);
  for (const [i, t] of data.tasks.entries())
    if (t.format === "classification" && rowsOf(t).length > 0)
      tasks[i]!.majorityAccuracy = majorityBaseline(t.train, rowsOf(t));
  result.majorityAccuracy = tasks[0]!.majorityAccuracy;
  if (data.retention && !o.control?.stopRequested) {
    result.retention = [];
    for (const [i, set] of data.retention.entries()) {
      const before = retained[i];
      const after = (await score("retention", set.rows, set))?.result;
      if (!before || !after) continue;
      const event: RetentionEvent = {
        type: "retention",
        task: set.name,
        source: set.source,
        before,
        after,
      };
      result.retention.push(event);
      emit(event);
    }
  }
  if (reference && referenceBase && !o.control?.stopRequested) {
    emit({ type: "phase", phase: "checking forgetting" });
    const after = await scoreReference();
    result.forgetting = {
      type: "forgetting",
      base_loss: referenceBase.loss,
      tuned_loss: after.loss,
      loss_delta: after.loss - referenceBase.loss,
    };
    emit(result.forgetting);
  }
  return {
    ...result,
    train: trainResult,
    summary: summarize({ ...result, train: trainResult }),
  };
}

/**
 * The job's augmented rows added to `data`'s training splits, made by the base model with every adapter off. A
 * stop while the base model paraphrases leaves the data as read (the run then ends before its first step).
 */
async function augmentData(
  job: FineTuneJobSpec,
  data: JobSplits,
  model: PretrainedModel,
  peft: LoraModel,
  o: JobRunOptions,
  emit: (e: JobEvent) => void,
  promptTemplate: string | null,
): Promise<void> {
  emit({ type: "phase", phase: "augmenting", rows: data.train.length });
  const signal = o.control?.stopSignal;
  try {
    await peft.withAdaptersDisabled(() =>
      augmentJobData(job, data, model, {
        readFile: o.readFile,
        names: o.names,
        promptTemplate,
        signal,
        onParaphrasing: (task, rows) =>
          emit({
            type: "phase",
            phase: "paraphrasing",
            rows,
            ...(data.tasks.length > 1 ? { task } : {}),
          }),
      }),
    );
  } catch (error) {
    if (!signal?.aborted) throw error;
  }
}

/** Runs `fn` with the model's LM head in place of its task head, if it has one. */
async function withLmHead<T>(
  model: PretrainedModel,
  fn: () => Promise<T>,
): Promise<T> {
  const head = model.lm.taskHead;
  model.lm.taskHead = undefined;
  try {
    return await fn();
  } finally {
    model.lm.taskHead = head;
  }
}

/**
 * The job's adapter added to `peft` (replacing an earlier one of its name): a new one, or the adapter it continues
 * from; or every weight, for a full fine-tune.
 */
async function addTrainable(
  job: FineTuneJobSpec,
  model: PretrainedModel,
  peft: LoraModel,
  o: JobRunOptions,
  labels: string[],
): Promise<LoraModel | FullFineTune> {
  const task = job.adapter.task;
  if (job.method === "full") return new FullFineTune(model);
  if (peft.adapterNames.includes(JOB_ADAPTER)) {
    peft.unmerge();
    peft.deleteAdapter(JOB_ADAPTER);
  }
  const from = job.adapter.continueFrom;
  if (from)
    await peft.loadAdapter(
      JOB_ADAPTER,
      o.readAdapter ? await o.readAdapter(from) : from,
      o.load,
    );
  else
    peft.addAdapter(JOB_ADAPTER, adapterConfig(job.adapter), {
      seed: job.training.seed,
      ...(task === "causal-lm" ? {} : { head: { task, labels } }),
    });
  peft.setAdapter(JOB_ADAPTER);
  const head = peft.head()?.task ?? "causal-lm";
  if (head !== task)
    throw new ConfigError(
      `${fieldName(o.names, "adapter.continueFrom")} ${from} is a ${head} adapter, but ${fieldName(o.names, "adapter.task")} is ${task}: ` +
        `set the task to ${head}, or start a new adapter.`,
    );
  return peft;
}

/**
 * The training batches: one task's, as before; or, with several tasks or replay, mixed batches whose parts are
 * the tasks' rows at their shares (`data.mix`, else by size to the power 1/`data.mixTemperature`) and the
 * replayed rows at `replay.ratio`.
 */
function trainBatches(
  job: FineTuneJobSpec,
  data: JobSplits,
  batching: { batchSize: number; padId: number; seed: number; epoch: number },
) {
  const t = job.training;
  if (data.tasks.length === 1 && !data.replay)
    return epochSequence(data.train, batching, t.epochs);
  const shares =
    job.data.mix ??
    temperatureWeights(
      data.tasks.map((task) => task.train.length),
      job.data.mixTemperature,
    );
  const total = shares.reduce((a, b) => a + b, 0);
  const taskShare = data.replay ? 1 - job.replay.ratio : 1;
  const sources: MixSource[] = data.tasks.map((task, i) => ({
    name: task.name,
    examples: task.train,
    weight: (shares[i]! / total) * taskShare,
  }));
  if (data.replay)
    sources.push({
      name: "replay",
      examples: data.replay,
      weight: job.replay.ratio,
      replay: true,
    });
  return mixedSequence(sources, { ...batching, epochs: t.epochs });
}

/** The batches and the Trainer, whose constructor checks its options before anything runs. */
function makeTrainer(
  job: FineTuneJobSpec,
  model: PretrainedModel,
  trained: LoraModel | FullFineTune,
  data: JobSplits,
  o: JobRunOptions,
  emit: (e: JobEvent) => void,
) {
  const t = job.training;
  const tok = model.tokenizer!;
  const padId = tok.padTokenId ?? tok.eosTokenId ?? 0;
  const batching = { batchSize: t.batchSize, padId, seed: t.seed, epoch: 0 };
  // Made as they are read: many epochs cost no memory.
  const train = trainBatches(job, data, batching);
  const valOf = (rows: Example[]) =>
    epochBatches(
      rows.slice(0, job.evaluation.valRows ?? undefined),
      { ...batching, shuffle: false },
      1,
    );
  // Several tasks: each one's validation loss, and all of them together for early stopping.
  const withVal = data.tasks.filter((task) => task.val.length > 0);
  const val: ValidationBatches | undefined =
    withVal.length === 0
      ? undefined
      : data.tasks.length === 1
        ? valOf(data.val)
        : Object.fromEntries(
            withVal.map((task) => [task.name, valOf(task.val)]),
          );
  if (t.gradAccum > train.length) {
    const name = (f: JobField) => fieldName(o.names, f);
    throw new ConfigError(
      `${name("training.gradAccum")} ${t.gradAccum} is more micro-batches than the ${train.length} training batches ` +
        `(${data.train.length} rows, ${name("training.batchSize")} ${t.batchSize}, ${name("training.epochs")} ${t.epochs}); use at most ${train.length}.`,
    );
  }
  const steps = t.maxSteps ?? Math.ceil(train.length / t.gradAccum);
  const trainer = new Trainer(trained, {
    learningRate: t.learningRate,
    schedule: t.schedule,
    warmupSteps: t.warmupSteps,
    gradAccum: t.gradAccum,
    maxSteps: steps,
    maxGradNorm: t.maxGradNorm,
    weightDecay: t.weightDecay,
    batchesPerEpoch: train.length / t.epochs,
    seed: t.seed,
    gradientCheckpointing: t.gradientCheckpointing,
    memoryBudget: t.memoryBudget ?? undefined,
    optionNames: o.trainerNames,
    evalEvery: val ? (job.evaluation.evalEvery ?? undefined) : undefined,
    earlyStopping:
      job.evaluation.earlyStopPatience !== null
        ? { patience: job.evaluation.earlyStopPatience }
        : undefined,
    checkpoint:
      job.checkpointEvery !== null && o.checkpoints
        ? { store: o.checkpoints, every: job.checkpointEvery }
        : undefined,
    // With the model, its adapter config, the data and the hyperparameters: what a resume must match.
    run: {
      dtype: job.model.dtype,
      quantize: job.model.quantize,
      double_quant: job.model.doubleQuant,
      ...(data.replay ? { replay_ratio: job.replay.ratio } : {}),
    },
    onEvent: emit,
  });
  return { trainer, train, val, steps };
}

/** Accuracy on `test` of always answering the training split's most common label. */
function majorityBaseline(train: Example[], test: Example[]): number {
  const counts = new Map<string, number>();
  for (const e of train) counts.set(e.label!, (counts.get(e.label!) ?? 0) + 1);
  const majority = [...counts].sort((a, b) => b[1] - a[1])[0]![0];
  return test.filter((e) => e.label === majority).length / test.length;
}

/** A run's numbers as one flat record: the keys the CLI has always printed, and each task's and earlier task's. */
function summarize(r: Omit<JobResult, "summary">): Record<string, unknown> {
  // NER's entity scores flatten to one F1 per entity type (test_f1_PER), beside the micro ones.
  const prefixed = (prefix: string, m: EvaluationResult | undefined) =>
    Object.fromEntries([
      ...Object.entries(m ?? {})
        .filter(([k]) => k !== "entities" && k !== "rowScores")
        .map(([k, v]) => [`${prefix}${k}`, v]),
      ...Object.entries(m?.entities?.perType ?? {}).map(([type, s]) => [
        `${prefix}f1_${type}`,
        s.f1,
      ]),
    ]);
  const summary: Record<string, unknown> = {
    steps: r.train.steps,
    stopped_early: r.train.stoppedEarly,
    stopped: r.train.aborted,
    train_loss: r.train.history.filter((e) => e.type === "step").at(-1)?.loss,
    val_loss: r.train.bestEval?.loss,
    ...(r.overlap
      ? {
          test_overlap_rows: r.overlap.rows,
          test_overlap_lines: r.overlap.lines,
        }
      : {}),
    ...prefixed("test_base_", r.test.base),
    ...prefixed("test_fewshot_", r.test.fewShot),
    ...prefixed("test_", r.test.tuned),
  };
  const report = r.tasks[0]?.fewShotReport;
  if (report)
    Object.assign(summary, {
      fewshot_k: report.k,
      fewshot_prompt_tokens_mean: report.promptTokens.mean,
      fewshot_prompt_tokens_max: report.promptTokens.max,
    });
  if (r.majorityAccuracy !== undefined)
    summary.test_majority_accuracy = r.majorityAccuracy;
  if (r.tasks.length > 1)
    for (const t of r.tasks) {
      Object.assign(
        summary,
        prefixed(`test_base_${t.name}_`, t.base),
        prefixed(`test_fewshot_${t.name}_`, t.fewShot),
        prefixed(`test_${t.name}_`, t.tuned),
      );
      if (t.majorityAccuracy !== undefined)
        summary[`test_${t.name}_majority_accuracy`] = t.majorityAccuracy;
    }
  for (const e of r.retention ?? [])
    Object.assign(
      summary,
      prefixed(`retention_${e.task}_before_`, e.before),
      prefixed(`retention_${e.task}_after_`, e.after),
    );
  if (r.forgetting)
    Object.assign(summary, {
      reference_loss_base: r.forgetting.base_loss,
      reference_loss_tuned: r.forgetting.tuned_loss,
      reference_loss_delta: r.forgetting.loss_delta,
    });
  return summary;
}
