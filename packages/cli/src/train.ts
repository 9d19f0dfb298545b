/** `webtune train`: dataset → split → LoRA adapter → Trainer → PEFT files and metrics.jsonl in --out. */
import { appendFile } from "node:fs/promises";
import {
  DivergenceError,
  epochBatches,
  epochSequence,
  ConfigError,
  directoryStore,
  evaluate,
  findOverlap,
  FullFineTune,
  savePretrainedToDirectory,
  saveAdapterToDirectory,
  splitDataset,
  Trainer,
  type Dataset,
  type EvaluationResult,
  type Example,
  type PretrainedModel,
  type Scorer,
  type TrainBatch,
  type WeightOptions,
} from "@webtune/core";
import { loadForCommand, readDataset } from "./common.js";
import {
  abandonRun,
  checkApartFromModel,
  checkOutFolder,
  checkpointStep,
  startRun,
} from "./out_folder.js";
import { progress } from "./progress.js";

export interface TrainFlags {
  model: string;
  data: string;
  out: string;
  format?: string;
  mode: string;
  r: number;
  alpha: number;
  dropout: number;
  target: string;
  rslora: boolean;
  dora: boolean;
  lr: number;
  batch: number;
  gradAccum: number;
  epochs: number;
  maxSteps?: number;
  seqLen: number;
  warmup: number;
  schedule: string;
  seed: number;
  valSplit: number;
  testSplit: number;
  evalEvery: number;
  earlyStop?: number;
  checkpointEvery?: number;
  resume?: string;
  reference?: string;
  test?: string;
  dtype: string;
  quantize?: string;
  doubleQuant: boolean;
  gradientCheckpointing: boolean;
  memoryBudget?: number;
  overwrite?: boolean;
  skipBadRows?: boolean;
}

function check(o: TrainFlags): void {
  if (o.mode !== "lora" && o.mode !== "full") {
    throw new ConfigError(`--mode must be lora or full, got "${o.mode}".`);
  }
  if (!["constant", "linear", "cosine"].includes(o.schedule))
    throw new ConfigError(
      `--schedule must be constant, linear or cosine, got "${o.schedule}".`,
    );
  if (!(o.valSplit >= 0 && o.testSplit >= 0 && o.valSplit + o.testSplit < 1)) {
    throw new ConfigError(
      `--val-split and --test-split must be ≥ 0 and sum to less than 1, got ${o.valSplit} and ${o.testSplit}.`,
    );
  }
  if (o.test !== undefined && o.testSplit > 0)
    throw new ConfigError("give --test or --test-split, not both.");
  if (o.batch < 1 || o.gradAccum < 1 || o.epochs < 1)
    throw new ConfigError(
      "--batch, --grad-accum and --epochs must be at least 1.",
    );
  checkNumbers(o);
}

/** The numeric flags' ranges, checked before anything loads or is written (commander checks only their type). */
function checkNumbers(o: TrainFlags): void {
  const need = (ok: boolean, flag: string, what: string, value: unknown) => {
    if (!ok) throw new ConfigError(`${flag} must be ${what}, got ${value}.`);
  };
  need(o.lr > 0, "--lr", "a learning rate above 0, e.g. 2e-4", o.lr);
  need(o.r >= 1, "--r", "a rank of at least 1", o.r);
  need(o.alpha > 0, "--alpha", "above 0", o.alpha);
  need(o.dropout >= 0 && o.dropout < 1, "--dropout", "in [0, 1)", o.dropout);
  need(o.seqLen >= 1, "--seq-len", "at least 1", o.seqLen);
  for (const [flag, v] of [
    ["--max-steps", o.maxSteps],
    ["--eval-every", o.evalEvery],
    ["--checkpoint-every", o.checkpointEvery],
    ["--early-stop", o.earlyStop],
  ] as const)
    need(v === undefined || v >= 1, flag, "at least 1", v);
  if (o.memoryBudget !== undefined)
    need(
      o.memoryBudget > 0,
      "--memory-budget",
      "above 0 MiB",
      o.memoryBudget / 2 ** 20,
    );
  need(
    ["float32", "float16"].includes(o.dtype),
    "--dtype",
    "float32 or float16",
    `"${o.dtype}"`,
  );
  if (o.quantize !== undefined)
    need(
      ["int8", "nf4"].includes(o.quantize),
      "--quantize",
      "int8 or nf4",
      `"${o.quantize}"`,
    );
  if (o.doubleQuant && o.quantize === undefined)
    throw new ConfigError(
      "--double-quant quantizes the block scales of --quantize int8 or nf4: give --quantize too.",
    );
  if (o.target.split(",").every((t) => t.trim() === ""))
    throw new ConfigError(
      '--target names no module; give module names (e.g. q_proj,v_proj) or "all-linear".',
    );
}

function batchList(
  examples: Example[],
  o: TrainFlags,
  padId: number,
  epochs: number,
  shuffle: boolean,
): TrainBatch[] {
  return epochBatches(
    examples,
    { batchSize: o.batch, padId, seed: o.seed, epoch: 0, shuffle },
    epochs,
  );
}

/** The Trainer's divergence, told with the CLI's flags, and what is left in --out. */
function diverged(e: DivergenceError, o: TrainFlags): DivergenceError {
  const show = (v: number) => (Number.isFinite(v) ? v.toPrecision(4) : v);
  const kept =
    o.checkpointEvery && e.step > o.checkpointEvery
      ? ` Checkpoints up to step ${Math.floor((e.step - 1) / o.checkpointEvery) * o.checkpointEvery} are kept in ${o.out}/checkpoints.`
      : "";
  return new DivergenceError(
    `training diverged at step ${e.step}: the loss is ${show(e.loss)} and the gradient norm ${show(e.gradNorm)}. The learning ` +
      `rate is probably too high: run again with --lr ${e.suggestedLearningRate} (a tenth of ${e.learningRate})` +
      `${o.warmup === 0 ? ", and a --warmup of about 5% of the steps" : ""}, with --overwrite to replace this run. ` +
      `No adapter was written (one already in ${o.out} is left as it was); metrics.jsonl has the steps before.${kept}`,
    e,
  );
}

export async function trainCommand(o: TrainFlags): Promise<void> {
  check(o);
  const full = o.mode === "full";
  // Read-only checks of --out; nothing is written there until every option, the model and the data are checked.
  if (full) await checkApartFromModel(o.out, o.model);
  const plan = await checkOutFolder(o.out, o);
  const { model, peft } = await loadForCommand(o.model, undefined, {
    trainable: full,
    dtype: o.dtype as WeightOptions["dtype"],
    quantize: o.quantize as WeightOptions["quantize"],
    doubleQuant: o.doubleQuant,
  });
  const data = await readDataset(o.data, model, {
    format: o.format,
    seqLen: o.seqLen,
    skipBadRows: o.skipBadRows,
  });
  const r = data.report;
  process.stderr.write(
    `data: ${data.format}, ${r.kept} of ${r.total} rows kept (empty ${r.dropped.empty}, duplicate ${r.dropped.duplicate}, ` +
      `too long ${r.dropped.tooLong}, malformed ${r.dropped.malformed}; truncated ${r.truncated})\n`,
  );
  const split = splitDataset(data.examples, {
    val: o.valSplit,
    test: o.testSplit,
    seed: o.seed,
    stratify: data.format === "classification",
  });
  const tok = model.tokenizer!;
  const test = await testSet(o, model, data, split.test);
  // Against train and validation: a test row anywhere in the data file has been seen (or steered early stopping).
  const overlap = test
    ? findOverlap([...split.train, ...split.val], test)
    : undefined;
  if (overlap && overlap.rows > 0)
    process.stderr.write(overlapWarning(o, overlap, test!.length));
  const scoreTest = (scorer: Scorer) =>
    evaluate(scorer, tok, test!, { format: data.format, labels: data.labels });
  // Before any weight changes: the base model's test metrics, and the reference text's loss for the forgetting check.
  const testBase = test ? await scoreTest(model) : undefined;
  const reference = o.reference
    ? await readDataset(o.reference, model, {
        format: "completion",
        seqLen: o.seqLen,
        flag: "--reference",
        evaluation: true,
        skipBadRows: o.skipBadRows,
      })
    : undefined;
  const referenceBase = reference
    ? await evaluate(model, tok, reference.examples, { format: "completion" })
    : undefined;
  const targets =
    o.target === "all-linear"
      ? "all-linear"
      : o.target
          .split(",")
          .map((t) => t.trim())
          .filter(Boolean);
  if (!full)
    peft.addAdapter(
      "default",
      {
        r: o.r,
        lora_alpha: o.alpha,
        lora_dropout: o.dropout,
        target_modules: targets,
        use_rslora: o.rslora,
        use_dora: o.dora,
      },
      { seed: o.seed },
    );
  const trained = full ? new FullFineTune(model) : peft;
  process.stderr.write(
    full
      ? `full fine-tuning: ${model.lm.parameterCount().toLocaleString("en-US")} trainable parameters\n`
      : `${peft.printTrainableParameters()}\n`,
  );
  const padId = tok.padTokenId ?? tok.eosTokenId ?? 0;
  // Made as they are read: --epochs costs no memory.
  const train = epochSequence(
    split.train,
    { batchSize: o.batch, padId, seed: o.seed, epoch: 0 },
    o.epochs,
  );
  const val =
    split.val.length > 0 ? batchList(split.val, o, padId, 1, false) : undefined;
  const steps = o.maxSteps ?? Math.ceil(train.length / o.gradAccum);
  if (o.gradAccum > train.length)
    throw new ConfigError(
      `--grad-accum ${o.gradAccum} is more micro-batches than the ${train.length} training batches ` +
        `(${split.train.length} rows, --batch ${o.batch}, --epochs ${o.epochs}); use at most ${train.length}.`,
    );

  const metrics = `${o.out}/metrics.jsonl`;
  let writes = Promise.resolve();
  let logged = false;
  const trainer = new Trainer(trained, {
    learningRate: o.lr,
    schedule: o.schedule as "constant" | "linear" | "cosine",
    warmupSteps: o.warmup,
    gradAccum: o.gradAccum,
    maxSteps: steps,
    batchesPerEpoch: train.length / o.epochs,
    seed: o.seed,
    gradientCheckpointing: o.gradientCheckpointing,
    memoryBudget: o.memoryBudget,
    optionNames: {
      learningRate: "--lr",
      warmupSteps: "--warmup",
      float16: "--dtype float16",
      nf4: "--quantize nf4",
      nf4DoubleQuant: "--quantize nf4 --double-quant",
      gradientCheckpointing: "--gradient-checkpointing",
    },
    evalEvery: val ? o.evalEvery : undefined,
    earlyStopping:
      o.earlyStop !== undefined ? { patience: o.earlyStop } : undefined,
    checkpoint: o.checkpointEvery
      ? {
          store: directoryStore(`${o.out}/checkpoints`),
          every: o.checkpointEvery,
        }
      : undefined,
    // With the model, its adapter config, the data and the hyperparameters: what --resume must match.
    run: {
      dtype: o.dtype,
      quantize: o.quantize ?? null,
      double_quant: o.doubleQuant,
    },
    onEvent: (e) => {
      logged = true;
      bar.event(e);
      writes = writes.then(() => appendFile(metrics, `${JSON.stringify(e)}\n`));
    },
  });
  const resume = o.resume ? await latestCheckpoint(o.resume) : undefined;
  // Everything is checked: only now is --out created and metrics.jsonl started (or, resuming, kept to the checkpoint).
  await startRun(plan, resume && checkpointStep(resume, o.resume!));
  const bar = progress(steps);
  const result = await trainer
    .train({ train, val }, resume)
    .catch(async (error: unknown) => {
      // Refused before its first step (the Trainer's own checks): --out is left as it was found.
      if (!logged) await abandonRun(plan);
      throw error instanceof DivergenceError ? diverged(error, o) : error;
    });
  bar.stop();
  await writes;
  if (full) {
    await savePretrainedToDirectory(model, o.out);
  } else {
    await saveAdapterToDirectory(await peft.saveAdapter(), o.out);
  }
  const summary: Record<string, unknown> = {
    steps: result.steps,
    stopped_early: result.stoppedEarly,
    train_loss: result.history.filter((e) => e.type === "step").at(-1)?.loss,
    val_loss: result.bestEval?.loss,
  };
  if (overlap)
    Object.assign(summary, {
      test_overlap_rows: overlap.rows,
      test_overlap_lines: overlap.lines,
    });
  if (test) {
    const tuned = await scoreTest(trained === peft ? peft : model);
    for (const [phase, r] of [
      ["base", testBase!],
      ["tuned", tuned],
    ] as const)
      await appendFile(
        metrics,
        `${JSON.stringify({ type: "test", phase, step: result.steps, ...r })}\n`,
      );
    const baseline =
      data.format === "classification"
        ? majorityBaseline(split.train, test)
        : undefined;
    process.stderr.write(testTable(testBase!, tuned, baseline));
    Object.assign(
      summary,
      prefixed("test_base_", testBase!),
      prefixed("test_", tuned),
    );
    if (baseline !== undefined) summary.test_majority_accuracy = baseline;
  }
  if (reference) {
    const after = await evaluate(
      trained === peft ? peft : model,
      tok,
      reference.examples,
      { format: "completion" },
    );
    const line = {
      type: "forgetting",
      base_loss: referenceBase!.loss,
      tuned_loss: after.loss,
      loss_delta: after.loss - referenceBase!.loss,
    };
    await appendFile(metrics, `${JSON.stringify(line)}\n`);
    Object.assign(summary, {
      reference_loss_base: line.base_loss,
      reference_loss_tuned: line.tuned_loss,
      reference_loss_delta: line.loss_delta,
    });
  }
  process.stdout.write(`${JSON.stringify({ ...summary, out: o.out })}\n`);
  peft.dispose();
  model.dispose();
}

async function latestCheckpoint(
  dir: string,
): Promise<Record<string, Uint8Array>> {
  const store = directoryStore(dir);
  const names = await store.list();
  if (names.length === 0)
    throw new ConfigError(`--resume ${dir} holds no complete checkpoint.`);
  process.stderr.write(`resuming from ${dir}/${names.at(-1)}\n`);
  return store.load(names.at(-1)!);
}

/** The test examples: from --test (read like --data, in its format), else the --test-split part; none if neither. */
async function testSet(
  o: TrainFlags,
  model: PretrainedModel,
  data: Dataset,
  fromSplit: Example[],
): Promise<Example[] | undefined> {
  if (!o.test) return fromSplit.length > 0 ? fromSplit : undefined;
  const test = await readDataset(o.test, model, {
    format: data.format,
    seqLen: o.seqLen,
    flag: "--test",
    evaluation: true,
    skipBadRows: o.skipBadRows,
  });
  const unknown = (test.labels ?? []).filter(
    (l) => !(data.labels ?? []).includes(l),
  );
  if (unknown.length > 0)
    throw new ConfigError(
      `--test ${o.test} has labels that --data ${o.data} never uses: ${unknown.join(", ")}.`,
    );
  if (test.examples.length === 0)
    throw new ConfigError(`--test ${o.test} has no usable rows.`);
  return test.examples;
}

/** The contamination warning: test rows that the training split holds too. */
function overlapWarning(
  o: TrainFlags,
  overlap: { rows: number; lines: number[] },
  testRows: number,
): string {
  const file = o.test ? `--test ${o.test}` : `--data ${o.data}`;
  const more = overlap.rows > overlap.lines.length ? ", ..." : "";
  return (
    `warning: ${overlap.rows} of ${testRows} test rows are also in the training data (${file}, lines ` +
    `${overlap.lines.join(", ")}${more}); the test scores overstate how well the model generalizes. Remove them ` +
    "from one of the files.\n"
  );
}

/** Accuracy on `test` of always answering the training split's most common label. */
function majorityBaseline(train: Example[], test: Example[]): number {
  const counts = new Map<string, number>();
  for (const e of train) counts.set(e.label!, (counts.get(e.label!) ?? 0) + 1);
  const majority = [...counts].sort((a, b) => b[1] - a[1])[0]![0];
  return test.filter((e) => e.label === majority).length / test.length;
}

function prefixed(
  prefix: string,
  r: EvaluationResult,
): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(r).map(([k, v]) => [`${prefix}${k}`, v]),
  );
}

/** Base and tuned test metrics side by side, for the terminal. */
function testTable(
  base: EvaluationResult,
  tuned: EvaluationResult,
  majority: number | undefined,
): string {
  const keys = ["loss", "perplexity", "exactMatch", "accuracy", "f1"] as const;
  const fmt = (v: number) => v.toFixed(4).padStart(10);
  const lines = [
    `${"test".padEnd(12)}${"base".padStart(10)}${"tuned".padStart(10)}`,
  ];
  for (const k of keys) {
    const [b, t] = [base[k], tuned[k]];
    if (typeof b === "number" && typeof t === "number")
      lines.push(`${k.padEnd(12)}${fmt(b)}${fmt(t)}`);
  }
  if (majority !== undefined)
    lines.push(`${"majority".padEnd(12)}${fmt(majority)}${fmt(majority)}`);
  return `${lines.join("\n")}\n`;
}
