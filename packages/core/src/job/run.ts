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
import { epochBatches, epochSequence } from "../train/data/batch.js";
import { findOverlap } from "../train/data/overlap.js";
import type {
  DatasetInput,
  Example,
  OptionNames,
} from "../train/data/types.js";
import { evaluate, type EvaluationResult } from "../train/evaluate.js";
import { FullFineTune } from "../train/trainable.js";
import {
  Trainer,
  type TrainerOptionNames,
  type TrainResult,
} from "../train/trainer.js";
import type { JobControl } from "./control.js";
import { readJobData, type JobSplits } from "./data.js";
import type { ForgettingEvent, JobEvent } from "./events.js";
import type { FineTuneJobSpec, JobField } from "./job.js";
import { derivePromptTemplate } from "./prompt_template.js";
import { adapterConfig, fieldName, type JobFieldNames } from "./validate.js";

/** The adapter a job trains, in a LoraModel's adapters. */
export const JOB_ADAPTER = "default";

/** Where a run gets what the job only names, and where it reports. */
export interface JobRunOptions {
  /** The bytes or text of a file the job names: its data.train, data.test or evaluation.reference. */
  readFile: (
    source: string,
    field: "data.train" | "data.test" | "evaluation.reference",
  ) => Promise<DatasetInput>;
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
  /** How messages name the job's fields, and the Trainer's and dataset reader's options, on this surface. */
  names?: JobFieldNames;
  trainerNames?: Partial<TrainerOptionNames>;
  dataNames?: Partial<OptionNames>;
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
  test: { base?: EvaluationResult; tuned?: EvaluationResult };
  /** Classification: test accuracy of always answering the training split's most common label. */
  majorityAccuracy?: number;
  forgetting?: ForgettingEvent;
  overlap?: { rows: number; lines: number[] };
  /** The run's numbers as one flat record, as the CLI prints it. */
  summary: Record<string, unknown>;
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
  const test = data.test.slice(0, job.evaluation.testRows ?? undefined);
  const overlap =
    test.length > 0
      ? findOverlap([...data.train, ...data.val], test)
      : undefined;
  const promptTemplate =
    job.data.promptTemplate ??
    (data.format === "instruction"
      ? derivePromptTemplate(data.train.map((e) => e.prompt ?? ""))
      : null);
  const ran: FineTuneJobSpec = {
    ...job,
    data: { ...job.data, promptTemplate },
  };
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
  });

  const trained = addTrainable(job, model, peft);
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
  const score = async (phase: "base" | "tuned", rows: Example[]) => {
    if (rows.length === 0 || o.control?.stopRequested) return undefined;
    // Started before it is announced, so that a skip in answer to the announcement reaches it.
    const signal = o.control?.startScoring();
    emit({
      type: "phase",
      phase: phase === "base" ? "scoring base" : "scoring tuned",
      rows: rows.length,
    });
    const run = () =>
      evaluate(scorer, tok, rows, {
        format: data.format,
        labels: data.labels,
        signal,
      });
    try {
      return phase === "base" && trained === peft
        ? await peft.withAdaptersDisabled(run)
        : await run();
    } catch (error) {
      if (signal?.aborted) return undefined; // skipped, or the run was stopped
      throw error;
    } finally {
      o.control?.endScoring();
    }
  };
  const result: Omit<JobResult, "train" | "summary"> = {
    job: ran,
    model,
    peft,
    splits: { ...data, test },
    test: {},
    overlap,
  };
  if (job.evaluation.scoreBase) {
    result.test.base = await score("base", test);
    if (result.test.base)
      emit({ type: "test", phase: "base", step: 0, ...result.test.base });
  }
  const reference = data.reference;
  const scoreReference = () =>
    evaluate(scorer, tok, reference!, { format: "completion" });
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
  result.test.tuned = await score("tuned", test);
  if (result.test.tuned)
    emit({
      type: "test",
      phase: "tuned",
      step: trainResult.steps,
      ...result.test.tuned,
    });
  if (data.format === "classification" && test.length > 0)
    result.majorityAccuracy = majorityBaseline(data.train, test);
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

/** The job's adapter added to `peft` (replacing an earlier one of its name), or every weight for a full fine-tune. */
function addTrainable(
  job: FineTuneJobSpec,
  model: PretrainedModel,
  peft: LoraModel,
): LoraModel | FullFineTune {
  if (job.method === "full") return new FullFineTune(model);
  if (peft.adapterNames.includes(JOB_ADAPTER)) {
    peft.unmerge();
    peft.deleteAdapter(JOB_ADAPTER);
  }
  peft.addAdapter(JOB_ADAPTER, adapterConfig(job.adapter), {
    seed: job.training.seed,
  });
  peft.setAdapter(JOB_ADAPTER);
  return peft;
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
  const train = epochSequence(data.train, batching, t.epochs);
  const valRows = data.val.slice(0, job.evaluation.valRows ?? undefined);
  const val =
    valRows.length > 0
      ? epochBatches(valRows, { ...batching, shuffle: false }, 1)
      : undefined;
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

/** A run's numbers as one flat record: the keys the CLI has always printed. */
function summarize(r: Omit<JobResult, "summary">): Record<string, unknown> {
  const prefixed = (prefix: string, m: EvaluationResult | undefined) =>
    Object.fromEntries(
      Object.entries(m ?? {}).map(([k, v]) => [`${prefix}${k}`, v]),
    );
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
    ...prefixed("test_", r.test.tuned),
  };
  if (r.majorityAccuracy !== undefined)
    summary.test_majority_accuracy = r.majorityAccuracy;
  if (r.forgetting)
    Object.assign(summary, {
      reference_loss_base: r.forgetting.base_loss,
      reference_loss_tuned: r.forgetting.tuned_loss,
      reference_loss_delta: r.forgetting.loss_delta,
    });
  return summary;
}
