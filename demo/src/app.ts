/**
 * The demo's state and actions: load a model and data, train with live charts, compare, evaluate, export.
 * Every heavy step runs in the worker; this thread only draws. `window.webtuneDemo` publishes the state for tests.
 */
import * as Comlink from "comlink";
import type {
  EvaluationResult,
  FineTuneJobInput,
  ForgettingEvent,
  FineTuneJobSpec,
  JobEvent,
  PhaseEvent,
  TrainEvent,
  TrainResult,
} from "@webtune/core";
import type {
  CheckpointInfo,
  DataSummary,
  ModelInfo,
  RetrainOutcome,
  WorkerTrainer,
} from "@webtune/worker";
import { TrainingCharts } from "./charts.js";
import {
  byId,
  download,
  fillList,
  formatBytes,
  formatDuration,
  hideError,
  setStatus,
  showError,
} from "./dom.js";
import { showMetrics } from "./metrics.js";
import { finishedRun, recordRun, showHistory } from "./history.js";
import { showFewShot } from "./few_shot.js";
import { showRetrieval } from "./retrieval.js";
import { showMonitorButtons, type DriftCheck } from "./monitor.js";
import { showDrift, showRetrained } from "./drift_view.js";
import { fetchPresetFile, presetOf, PRESETS } from "./presets.js";
import {
  describePrediction,
  FEW_SHOT_NOTE,
  HEAD_WORDS,
  showHeadNotes,
  TASK_NAMES,
  taskOfAdapter,
} from "./heads.js";
import { readAdapterUpload, zipFolder } from "./adapter_files.js";
import { adapterGgufBlocker, modelGgufBlocker } from "./gguf.js";
import {
  forgetRun,
  saveRun,
  type DataChoice,
  type ModelChoice,
  type SavedRun,
} from "./run_store.js";
import {
  applyJob,
  applyPreset,
  currentValues,
  formReading,
  formTask,
  PAGE_FIELD_NAMES,
  PAGE_OPTION_NAMES,
  PAGE_TRAINER_NAMES,
  sameReading,
  settingsJob,
  weightStorage,
  type DataReading,
  type Task,
} from "./settings.js";
import {
  showAugmented,
  showDataSummary,
  showReadingNote,
} from "./data_view.js";

/** idle; busy (an action with every button locked); a job's or Evaluate's scoring; training; paused. */
export type Phase = "idle" | "busy" | "scoring" | "training" | "paused";

const EMBEDDED_MODEL = "models/webtune-demo-base/";
/** Tokens each side of the before/after panel generates. */
const COMPARE_TOKENS = 32;

export class DemoApp {
  phase: Phase = "idle";
  model?: ModelInfo;
  data?: DataSummary;
  hasAdapter = false;
  /** The model's own weights were trained (full fine-tuning): the base is gone until the model is loaded again. */
  fullyTuned = false;
  /** What the adapter in the worker answers with: its head's task, or the language model's. */
  adapterTask: Task = "causal-lm";
  /** The adapter in the worker is DoRA, which has no GGUF adapter form (its merged model has). */
  adapterDora = false;
  /**
   * What the worker's data (the splits Evaluate scores) was read for, by loadData or by the last job: a head's
   * rows are scored through that head alone.
   */
  private dataRead?: DataReading;
  /** The prompt the page last filled in, which reading the data again may replace (a typed one stays). */
  private pagePrompt?: string;
  /** The task the base model's scores were made for (a head scores through a fresh head). */
  private baseTask?: Task;
  events: TrainEvent[] = [];
  /** The last job run, as it ran (its prompt template filled in). */
  lastJob?: FineTuneJobSpec;
  /** The string the model was loaded from (hub id or URL), which a job names it by; none for picked files. */
  private modelSource?: string;
  /** The loaded data files by the names the job gives them. */
  private dataFiles: Record<string, string> = {};
  /** The loaded data's part of the job: its files, split and reading options. */
  private dataJob?: FineTuneJobInput["data"];
  metrics: {
    base?: EvaluationResult;
    tuned?: EvaluationResult;
    forgetting?: ForgettingEvent;
  } = {};
  compared?: { base: string; tuned: string };
  /** The last drift check (8 · Monitor new data), and the last retraining on new rows. */
  drift?: DriftCheck;
  retrained?: RetrainOutcome;
  /** A retraining on new rows is running: its phases are worded for it. */
  retraining = false;
  lastTrain?: TrainResult;
  /** Made with the page, so that starting a run draws into charts that exist. */
  readonly charts = new TrainingCharts();
  modelChoice?: ModelChoice;
  dataChoice?: DataChoice;
  private run?: SavedRun;
  private imports = 0;

  constructor(readonly trainer: WorkerTrainer) {
    showHistory();
  }

  private get api() {
    return this.trainer.api;
  }

  /** Runs an action with the buttons locked; an error goes to the banner and the page stays usable. */
  async act(label: string, action: () => Promise<void>): Promise<void> {
    if (this.phase !== "idle") return;
    hideError();
    this.setPhase("busy");
    setStatus(label);
    try {
      await action();
    } catch (error) {
      if (isAbort(error)) {
        setStatus("Stopped: the scoring was cancelled.");
      } else {
        showError(error);
        setStatus("Something went wrong: see the message below.");
      }
    } finally {
      this.setPhase("idle");
      this.showJobLine();
    }
  }

  setPhase(phase: Phase): void {
    this.phase = phase;
    const idle = phase === "idle";
    const ready = idle && this.model !== undefined;
    const trainable = ready && this.data !== undefined;
    const enable = (id: string, on: boolean) =>
      (byId<HTMLButtonElement>(id).disabled = !on);
    enable("load-model", idle);
    enable("load-data", ready);
    enable("train", trainable);
    const running = ["scoring", "training", "paused"].includes(phase);
    enable("pause", phase === "training" || phase === "paused");
    enable("stop", running);
    enable("skip-scoring", phase === "scoring");
    byId<HTMLSelectElement>("preset").disabled = !idle;
    byId<HTMLInputElement>("load-job").disabled = !idle;
    const head = this.headTask();
    const trained = this.hasAdapter && this.adapterTask === head;
    showHeadNotes(head, trained);
    // A head answers once trained; the language model, at once.
    enable(
      "compare",
      ready && this.model!.hasTokenizer && (head === "causal-lm" || trained),
    );
    // The worker scores its rows with what the model answers with: rows read for a head need that head.
    const answers = this.hasAdapter ? this.adapterTask : "causal-lm";
    const readFor = this.dataRead?.task;
    enable(
      "evaluate",
      trainable && this.data!.sizes.test > 0 && readFor === answers,
    );
    byId("evaluate").title =
      !trainable || readFor === answers
        ? ""
        : answers === "causal-lm"
          ? `These rows are read for ${TASK_NAMES[readFor!]}, which a job trains: train first.`
          : `The model answers with ${TASK_NAMES[answers]} and these rows are read for ${TASK_NAMES[readFor!]}: load data for the adapter's task to score it.`;
    // The prompting baselines: the base model on text, with training rows in its prompts.
    const baseline = baselineBlocker(this, trainable, head, readFor);
    for (const id of ["few-shot", "retrieval"]) {
      enable(id, trainable && !baseline);
      byId(id).title = baseline ?? "";
    }
    showMonitorButtons(this, idle);
    showReadingNote(this.data && this.dataRead, formReading());
    enable("export-adapter", ready && this.hasAdapter);
    const merged = ready && (this.hasAdapter || this.fullyTuned);
    enable("export-merged", merged);
    const modelBlocker = modelGgufBlocker(this);
    enable("export-gguf", merged && !modelBlocker);
    byId("export-gguf").title = modelBlocker ?? "";
    byId<HTMLSelectElement>("gguf-dtype").disabled = !merged || !!modelBlocker;
    // The adapter alone, when llama.cpp's LoRA format can hold it; the tooltip says why not.
    const blocker = this.hasAdapter ? adapterGgufBlocker(this) : undefined;
    enable("export-adapter-gguf", ready && this.hasAdapter && !blocker);
    byId("export-adapter-gguf").title = blocker ?? "";
    byId("export-merged").textContent = this.fullyTuned
      ? "Download tuned model"
      : "Download merged model";
    enable("download-job", trainable);
    byId<HTMLInputElement>("import-adapter").disabled = !ready;
    byId("pause").textContent = phase === "paused" ? "Resume" : "Pause";
  }

  /**
   * The head the page's model answers with, if any: the adapter's in the worker (whose answers are labels,
   * whatever the form says next), else the form's, which the next job trains.
   */
  headTask(): Task {
    return this.hasAdapter && this.adapterTask !== "causal-lm"
      ? this.adapterTask
      : formTask();
  }

  /** Brings the buttons, the notes and the job line up to date with the form. */
  refresh(): void {
    this.setPhase(this.phase);
    this.showJobLine();
  }

  async loadModel(choice: ModelChoice, files?: File[]): Promise<void> {
    const source =
      choice.kind === "embedded"
        ? new URL(EMBEDDED_MODEL, document.baseURI).href
        : choice.kind === "hub"
          ? choice.id
          : (files ?? []);
    const bar = byId<HTMLProgressElement>("model-progress");
    bar.hidden = false;
    const onProgress = Comlink.proxy(
      (p: { loadedBytes: number; totalBytes: number; file: string }) => {
        bar.value = p.totalBytes > 0 ? p.loadedBytes / p.totalBytes : 0;
        setStatus(`Downloading ${p.file}: ${formatBytes(p.loadedBytes)}`);
      },
    );
    this.model = undefined;
    this.data = undefined;
    this.dataJob = undefined;
    this.hasAdapter = false;
    this.adapterTask = "causal-lm";
    this.adapterDora = false;
    this.dataRead = undefined;
    this.fullyTuned = false;
    this.metrics = {};
    showMetrics();
    this.clearBaselines();
    this.clearAnswers();
    const info = await this.api.loadModel(
      source,
      {
        ...weightStorage(byId<HTMLSelectElement>("weight-storage").value),
        ...(choice.kind === "hub" ? hubAddress() : {}),
      },
      onProgress,
    );
    bar.hidden = true;
    this.model = info;
    this.modelSource = typeof source === "string" ? source : undefined;
    this.modelChoice = choice;
    fillList(byId("model-info"), [
      ["model", info.source],
      ["architecture", info.dims.modelType],
      ["parameters", info.parameters.toLocaleString("en")],
      [
        "weights on the GPU",
        `${formatBytes(info.weightBytes)} (projections ${info.weightFormat})`,
      ],
      [
        "shape",
        `${info.dims.numLayers} layers, hidden ${info.dims.hiddenSize}, ${info.dims.numHeads} heads, vocabulary ${info.dims.vocabSize}`,
      ],
      ["Linear modules", info.targetModules.join(", ")],
      ["tokenizer", info.hasTokenizer ? "yes" : "no (training needs one)"],
    ]);
    setStatus(`Loaded ${info.source}.`);
  }

  /**
   * Reads a preset's or the user's data in the worker (its preview and report), as the job will read it: for the
   * form's task. A preset sets the form first, unless `keepForm` (a job file's or a saved run's settings, set
   * already). `again`: the same data for the task the form names now; the rows read before stay if it fails.
   */
  async loadData(
    choice: DataChoice,
    { keepForm = false, again = false } = {},
  ): Promise<void> {
    let files: Record<string, string>;
    let data: NonNullable<FineTuneJobInput["data"]>;
    let prompt: string | undefined;
    if (choice.kind === "preset") {
      const preset = PRESETS[choice.name]!;
      const { train, test } = preset.job.data;
      const [trainText, testText] = await Promise.all([
        fetchPresetFile(train),
        fetchPresetFile(test),
      ]);
      files = { [train]: trainText, [test]: testText };
      data = { ...preset.job.data, testSplit: 0 };
      // One choice: the preset's data, its settings and its prompt together.
      if (!keepForm && !again) applyPreset(preset.job);
      prompt = preset.prompt;
    } else {
      files = { [choice.source]: choice.text };
      if (choice.test) files[choice.test.source] = choice.test.text;
      data = {
        train: choice.source,
        test: choice.test?.source ?? null,
        testSplit: choice.test ? 0 : choice.testSplit,
        skipBadRows: choice.skipBadRows ?? false,
      };
    }
    if (!again) {
      this.data = undefined;
      this.dataJob = undefined;
      this.metrics = {};
      showMetrics();
      this.clearBaselines();
    }
    const maxLength = settingsJob().data?.maxLength;
    // The page trains on one file (a multitask job runs in the CLI): loadJob refuses a list.
    const train = data.train as string;
    const test = data.test as string | null | undefined;
    // Rows differ per task (a head reads the text alone, or words and their tags): read them as the job will.
    const reading = formReading();
    const summary = await this.api.loadData(files[train]!, {
      source: train,
      maxLength: typeof maxLength === "number" ? maxLength : undefined,
      valSplit: data.valSplit,
      testSplit: data.testSplit,
      test: test ? { input: files[test]!, source: test } : undefined,
      skipBadRows: data.skipBadRows,
      optionNames: PAGE_OPTION_NAMES,
      task: reading.task,
      labelSubwords: reading.labelSubwords,
    });
    // Scores of other rows are no scores of these.
    this.metrics = {};
    this.clearBaselines();
    this.dataRead = reading;
    this.data = summary;
    this.dataChoice = choice;
    this.dataFiles = files;
    this.dataJob = data;
    showDataSummary(train, summary, reading.task);
    showMetrics(undefined, undefined, summary.format);
    const promptBox = byId<HTMLTextAreaElement>("compare-prompt");
    if (!again || promptBox.value === this.pagePrompt)
      promptBox.value = this.pagePrompt =
        prompt ??
        summary.preview.test[0]?.prompt ??
        summary.preview.train[0]?.prompt ??
        summary.preview.train[0]?.target.slice(0, 40) ??
        "";
    this.clearAnswers();
    setStatus(
      `${again ? `Read the data again for ${TASK_NAMES[reading.task]}: ` : "Loaded "}${summary.sizes.train} training, ${summary.sizes.val} validation and ${summary.sizes.test} test rows.`,
    );
  }

  /** Whether the loaded rows were read for another task than the form's (or other subwords tagged). */
  dataStale(): boolean {
    return (
      this.data !== undefined &&
      this.dataRead !== undefined &&
      !sameReading(this.dataRead, formReading())
    );
  }

  /** Reads the loaded data again for the form's task. */
  async rereadData(): Promise<void> {
    if (this.dataChoice) await this.loadData(this.dataChoice, { again: true });
  }

  /** The job the page describes: the loaded model, the loaded data and the settings form. */
  jobInput(): FineTuneJobInput {
    if (!this.model || !this.dataJob)
      throw new Error("Load a model and data first.");
    const settings = settingsJob();
    const storage = weightStorage(
      byId<HTMLSelectElement>("weight-storage").value,
    );
    // The loaded data's files and split, with the form's reading options (max tokens, label subwords).
    return {
      ...settings,
      model: {
        source: this.modelSource ?? this.model.source,
        dtype: storage.dtype ?? "float32",
        quantize: storage.quantize ?? null,
        doubleQuant: storage.doubleQuant ?? false,
      },
      data: { ...this.dataJob, ...settings.data },
    };
  }

  /** What Train will run, in a line under the buttons: so the loaded data and the settings are never a surprise. */
  showJobLine(): void {
    const line = byId("job-line");
    if (!this.model || !this.dataJob || !this.data) {
      line.textContent = "";
      return;
    }
    const job = settingsJob();
    const t = job.training!;
    const method =
      job.method === "full"
        ? "full fine-tuning"
        : `LoRA r ${String(job.adapter!.r)}${HEAD_WORDS[formTask()]}`;
    const steps =
      t.maxSteps !== null && t.maxSteps !== undefined
        ? `${String(t.maxSteps)} steps`
        : `${String(t.epochs)} epoch(s)`;
    line.textContent = `Train runs ${method} on ${this.dataJob.train} (${this.data.sizes.train} training rows), ${steps} of batch ${String(t.batchSize)} at learning rate ${String(t.learningRate)}.`;
  }

  /**
   * Runs the page's job in the worker: scores the base model (unless scored already), trains a fresh adapter (or
   * continues a checkpoint), scores the result, and compares the two on the prompt. Stop answers at once.
   */
  async train(resume?: {
    checkpoint: CheckpointInfo;
    run: SavedRun;
  }): Promise<void> {
    const started = performance.now();
    const input = this.jobInput();
    const job = await this.api.checkJob(input, PAGE_FIELD_NAMES);
    const testRows = Math.min(
      job.evaluation.testRows ?? Infinity,
      this.data!.sizes.test,
    );
    // The base model's scores stay valid while the model, the data, the task and the rows scored are the same.
    if (
      this.metrics.base &&
      this.metrics.base.rows === testRows &&
      this.baseTask === job.adapter.task
    )
      job.evaluation.scoreBase = false;
    if (resume) this.events = resume.run.events;
    this.startCharts(resume?.checkpoint.step ?? 0);
    this.run = {
      startedAt: resume?.run.startedAt ?? new Date().toISOString(),
      model: this.modelChoice!,
      data: this.dataChoice!,
      settings: currentValues(),
      events: this.events,
    };
    saveRun(this.run);
    let total = this.totalSteps(job);
    this.metrics.tuned = undefined;
    this.metrics.forgetting = undefined;
    this.clearAnswers();
    this.clearMonitor();
    const onEvent = Comlink.proxy((event: JobEvent) => {
      if (event.type === "test" && event.phase === "base")
        this.baseTask = job.adapter.task;
      // Augmentation adds training rows: an epoch is longer than the loaded data said.
      if (event.type === "data")
        total = this.totalSteps(job, event.sizes.train);
      this.onEvent(event, total);
    });
    const outcome = await this.api
      .runJob(job, await this.jobFiles(job), onEvent, {
        resumeFrom: resume?.checkpoint.name,
        names: PAGE_FIELD_NAMES,
        trainerNames: PAGE_TRAINER_NAMES,
        dataNames: PAGE_OPTION_NAMES,
      })
      .catch((error: unknown) => {
        // Said beside the chart too, where the eye is.
        const last = this.events.filter((e) => e.type === "step").at(-1);
        const name = (error as { name?: string }).name ?? "Error";
        byId("eta").textContent =
          `Stopped after step ${last?.step ?? 0}: ${name}, explained in the banner above.`;
        throw error;
      });
    this.lastJob = outcome.job;
    this.lastTrain = outcome.train;
    this.fullyTuned = job.method === "full";
    this.hasAdapter = !this.fullyTuned;
    this.adapterTask = this.fullyTuned ? "causal-lm" : job.adapter.task;
    this.adapterDora = this.hasAdapter && job.adapter.dora;
    // The worker keeps the job's splits, read for its task.
    this.dataRead = {
      task: job.adapter.task,
      labelSubwords: job.data.labelSubwords,
    };
    this.setPhase("busy");
    const r = outcome.train;
    const stopped = r.aborted;
    byId("eta").textContent = stopped
      ? `Stopped after step ${r.steps}: the ${this.fullyTuned ? "model" : "adapter"} so far is kept. Evaluate on test scores it.`
      : `Done: ${r.steps} steps${r.stoppedEarly ? " (early stopping kept the best validation loss)" : ""}.`;
    setStatus(
      `${stopped ? "Stopped" : "Trained"} after ${r.steps} steps${r.stoppedEarly ? " (early stopping kept the best validation loss)" : ""}.`,
    );
    if (!stopped)
      recordRun(
        finishedRun(
          outcome,
          this.data!.format,
          performance.now() - started,
          this.metrics.base,
        ),
      );
    if (!stopped) await this.compare();
  }

  /** The loaded data's files, and the demo's general text when the job replays it or checks forgetting on it. */
  async jobFiles(job: FineTuneJobSpec): Promise<Record<string, string>> {
    const files = { ...this.dataFiles };
    for (const path of [
      job.replay.source,
      job.evaluation.reference,
      job.augment.lexicon,
    ])
      if (path && files[path] === undefined)
        files[path] = await fetchPresetFile(path);
    return files;
  }

  /** Optimizer steps the run will take, for the progress bar. */
  private totalSteps(
    job: FineTuneJobSpec,
    trainRows = this.data!.sizes.train,
  ): number {
    const t = job.training;
    const perEpoch = Math.ceil(trainRows / t.batchSize);
    return t.maxSteps ?? Math.ceil((perEpoch * t.epochs) / t.gradAccum);
  }

  startCharts(fromStep: number): void {
    this.events = this.events.filter((e) => e.step <= fromStep);
    this.charts.reset(this.events);
  }

  /** A job's event into the charts, the progress line, the metrics and the status line. */
  onEvent(event: JobEvent, total: number): void {
    switch (event.type) {
      case "phase":
        return this.onPhase(event);
      case "test":
        if (event.phase === "few-shot") return; // the few-shot panel scores its own
        this.metrics[event.phase] = event;
        showMetrics(
          this.metrics.base,
          this.metrics.tuned,
          this.data?.format,
          this.metrics.forgetting,
        );
        return;
      case "forgetting":
        this.metrics.forgetting = event;
        showMetrics(
          this.metrics.base,
          this.metrics.tuned,
          this.data?.format,
          event,
        );
        return;
      case "data":
        showAugmented(event.report.augmented);
        return;
      case "retention":
        return;
    }
    this.events.push(event);
    this.charts.add(event);
    if (event.type === "step") {
      byId<HTMLProgressElement>("progress").value = event.step / total;
      byId("eta").textContent =
        `step ${event.step} of ${total} · loss ${event.loss.toFixed(3)} · ${Math.round(event.tokensPerSec)} tokens/s · ${formatDuration(event.elapsedMs)} elapsed, about ${formatDuration(event.etaMs)} left · GPU ${formatBytes(event.gpuBytes)}, peak ${formatBytes(event.peakGpuBytes)}`;
    } else {
      byId("overfit").textContent = overfitting(this.events);
    }
    if (this.run && (event.type === "eval" || event.step % 5 === 0))
      saveRun(this.run);
  }

  private onPhase(event: PhaseEvent): void {
    const rows = event.rows ? ` on ${event.rows} test rows` : "";
    const words: Record<PhaseEvent["phase"], string> = {
      "loading model": "Loading the model for this job…",
      "reading data": "Reading the data…",
      augmenting: "Augmenting the training split…",
      paraphrasing: `The base model is paraphrasing ${event.rows ?? ""} training rows…`,
      "scoring base": `Scoring the base model${rows} (Skip scoring to go straight to training)…`,
      training: "Training…",
      "scoring tuned": this.retraining
        ? `Scoring the retrained adapter on ${event.rows ?? ""} held-out new rows (Skip scoring to leave it)…`
        : `Scoring the ${this.fullyTuned ? "tuned model" : "adapter"}${rows} (Skip scoring to leave it for later)…`,
      "scoring few-shot": `Scoring the base model with training examples in each prompt${rows}…`,
      "checking retention": this.retraining
        ? `Scoring the adapter as it was and as retrained on ${event.rows ?? ""} ${event.task ?? "rows"} (Skip scoring to leave it)…`
        : "Scoring an earlier task again…",
      "checking forgetting": "Checking the reference text for forgetting…",
    };
    if (this.phase !== "paused")
      this.setPhase(
        event.phase === "training"
          ? "training"
          : event.phase.startsWith("scoring")
            ? "scoring"
            : "busy",
      );
    setStatus(words[event.phase]);
  }

  async pauseOrResume(): Promise<void> {
    if (this.phase === "training") {
      await this.api.pause();
      this.setPhase("paused");
      setStatus("Paused: the worker holds the run between steps.");
    } else if (this.phase === "paused") {
      await this.api.resume();
      this.setPhase("training");
      setStatus("Training…");
    }
  }

  /** Answers at once: scoring is cancelled, training ends after the step in flight, and the result is kept. */
  async stop(): Promise<void> {
    setStatus(
      this.phase === "scoring"
        ? "Stopping: cancelling the scoring…"
        : "Stopping after the step in flight…",
    );
    if (this.phase !== "scoring") byId("eta").textContent = "Stopping…";
    byId<HTMLButtonElement>("stop").disabled = true;
    await this.api.stop();
  }

  async skipScoring(): Promise<void> {
    setStatus("Skipping the scoring…");
    byId<HTMLButtonElement>("skip-scoring").disabled = true;
    await this.api.skipScoring();
  }

  /** Scores the base model (unless scored already) and the adapter on the test rows; Stop or Skip cancels. */
  async evaluate(): Promise<void> {
    const job = settingsJob();
    const maxRows = (job.evaluation?.testRows as number | null) ?? undefined;
    this.setPhase("scoring");
    if (!this.metrics.base && !this.fullyTuned) {
      setStatus(`Scoring the base model on the test split…`);
      this.metrics.base = await this.api.evaluate("test", {
        maxRows,
        useAdapter: false,
      });
      this.baseTask = this.hasAdapter ? this.adapterTask : "causal-lm";
      showMetrics(this.metrics.base, undefined, this.data?.format);
    }
    if (this.hasAdapter || this.fullyTuned) {
      setStatus(
        `Scoring the ${this.fullyTuned ? "tuned model" : "adapter"} on the test split…`,
      );
      // Row by row: the drift check (8 · Monitor new data) compares new rows with these.
      this.metrics.tuned = await this.api.evaluate("test", {
        maxRows,
        keepRows: true,
      });
    }
    showMetrics(
      this.metrics.base,
      this.metrics.tuned,
      this.data?.format,
      this.metrics.forgetting,
    );
    setStatus("Evaluated on the test split.");
  }

  /** Saves the page's job (model, data, settings) as JSON, for `webtune train --job` or to load here later. */
  async downloadJob(): Promise<void> {
    const job = await this.api.checkJob(this.jobInput(), PAGE_FIELD_NAMES);
    if (this.lastJob?.data.train === job.data.train)
      job.data.promptTemplate ??= this.lastJob.data.promptTemplate;
    download(
      "webtune-job.json",
      `${JSON.stringify(job, null, 2)}\n`,
      "application/json",
    );
    setStatus(
      "Saved webtune-job.json: webtune train --job webtune-job.json --out run runs it in Node.",
    );
  }

  /**
   * Fills the form from a job file; a preset's data is loaded with it, other data files must be picked again
   * (a job names its files, it does not hold them).
   */
  async loadJob(file: File): Promise<void> {
    let input: unknown;
    try {
      input = JSON.parse(await file.text());
    } catch (e) {
      throw new Error(`${file.name} is not JSON: ${(e as Error).message}.`, {
        cause: e,
      });
    }
    const job = await this.api.checkJob(input as FineTuneJobInput);
    // The page trains one data file into a new adapter; these jobs run in the CLI (webtune train --job).
    if (Array.isArray(job.data.train) || job.adapter.continueFrom !== null)
      throw new Error(
        `${file.name} ${Array.isArray(job.data.train) ? `trains on several files at once (${job.data.train.join(", ")})` : `continues the adapter ${job.adapter.continueFrom}`}: this page trains one file into a new adapter. Run it with webtune train --job ${file.name}.`,
      );
    applyJob(job);
    const preset = presetOf(job);
    const notes: string[] = [];
    if (preset && this.model) {
      byId<HTMLSelectElement>("preset").value = preset.name;
      // The preset's data, read for the job's task (its settings are the job's, not the preset's).
      await this.loadData(
        { kind: "preset", name: preset.name },
        { keepForm: true },
      );
    } else if (!preset)
      notes.push(
        `it trains on ${job.data.train}${job.data.test ? ` and tests on ${job.data.test}` : ""}: pick ${job.data.test ? "them" : "it"} under "your own file" and press Load data`,
      );
    if (
      this.model &&
      job.model.source !== (this.modelSource ?? this.model.source)
    )
      notes.push(`its model is ${job.model.source}, not the loaded one`);
    setStatus(
      `Loaded the settings of ${file.name}${notes.length ? `; ${notes.join("; ")}.` : "."}`,
    );
  }

  /**
   * The same prompt, greedy, from the base model and from the adapter, streamed side by side. An adapter with a
   * head answers through it instead: labels or tagged words (see heads.ts); a head not yet trained, not at all.
   */
  async compare(): Promise<void> {
    const head = this.headTask();
    if (head !== "causal-lm") {
      this.clearAnswers();
      if (this.hasAdapter && this.adapterTask === head)
        await this.comparePredictions();
      return;
    }
    const prompt = byId<HTMLTextAreaElement>("compare-prompt").value;
    const sides = { base: byId("base-output"), tuned: byId("tuned-output") };
    const result = { base: "", tuned: "" };
    for (const side of ["base", "tuned"] as const) {
      if (side === "tuned" && !this.hasAdapter && !this.fullyTuned) {
        sides.tuned.textContent = "(no adapter yet)";
        continue;
      }
      if (side === "base" && this.fullyTuned) {
        sides.base.textContent =
          "(full fine-tuning changed the base weights: load the model again to ask the base)";
        continue;
      }
      const out = sides[side];
      out.textContent = "";
      const onToken = Comlink.proxy((t: { text: string }) => {
        out.textContent = t.text;
      });
      const generated = await this.api.generate(
        prompt,
        {
          maxNewTokens: COMPARE_TOKENS,
          temperature: 0,
          useAdapter: side === "tuned",
        },
        onToken,
      );
      out.textContent = result[side] = generated.text;
    }
    this.compared = result;
  }

  /** The adapter's head on the prompt, through the base model's weights and through the adapter's. */
  private async comparePredictions(): Promise<void> {
    const prompt = byId<HTMLTextAreaElement>("compare-prompt").value;
    const result = { base: "", tuned: "" };
    for (const side of ["base", "tuned"] as const) {
      const prediction = await this.api.predict(prompt, {
        useAdapter: side === "tuned",
      });
      byId(`${side}-output`).textContent = result[side] =
        describePrediction(prediction);
    }
    this.compared = result;
  }

  /** Empties the before/after panel, whose answers were for another prompt or model. */
  clearAnswers(): void {
    byId("base-output").textContent = "";
    byId("tuned-output").textContent = "";
    this.compared = undefined;
  }

  /** Empties the baselines' and the monitor's boxes, which were for another model or other data. */
  private clearBaselines(): void {
    showFewShot();
    showRetrieval();
    this.clearMonitor();
  }

  /** Empties the monitor's boxes, which were for another adapter. */
  private clearMonitor(): void {
    this.drift = this.retrained = undefined;
    showDrift();
    showRetrained();
  }

  async exportAdapter(): Promise<void> {
    const files = await this.api.saveAdapter();
    download(
      "webtune-adapter.zip",
      zipFolder({ ...files }) as BlobPart,
      "application/zip",
    );
    setStatus("Saved webtune-adapter.zip (PEFT format).");
  }

  async exportMerged(): Promise<void> {
    setStatus(
      this.fullyTuned
        ? "Saving the tuned weights…"
        : "Merging the adapter into a copy of the weights…",
    );
    const files = await this.api.saveMerged();
    download(
      "webtune-merged-model.zip",
      zipFolder(files) as BlobPart,
      "application/zip",
    );
    setStatus("Saved webtune-merged-model.zip (a Hugging Face model folder).");
  }

  async importAdapter(files: File[]): Promise<void> {
    const adapter = await readAdapterUpload(files);
    const config = await this.api.loadAdapter(
      `imported-${++this.imports}`,
      adapter,
    );
    this.hasAdapter = true;
    this.adapterTask = taskOfAdapter(config);
    this.adapterDora = config.use_dora;
    this.metrics.tuned = undefined;
    this.clearMonitor();
    showMetrics(this.metrics.base, undefined, this.data?.format);
    setStatus(
      `Imported an adapter: r ${config.r}, alpha ${config.lora_alpha}, on ${[config.target_modules].flat().join(", ")}.`,
    );
  }

  /** Deletes the saved run and its checkpoints. */
  async discardRun(): Promise<void> {
    forgetRun();
    await this.api.clearCheckpoints();
  }
}

/**
 * The hub a hub id is fetched from: huggingface.co, or a mirror named by the page's `?hub=` parameter (a company
 * mirror, or a test's local server).
 */
function hubAddress(): { hubUrl?: string } {
  const hub = new URLSearchParams(location.search).get("hub");
  return hub ? { hubUrl: hub } : {};
}

/** Whether an error is a cancellation (Stop or Skip scoring), which is no error to the user. */
function isAbort(error: unknown): boolean {
  return (error as { name?: string } | undefined)?.name === "AbortError";
}

/**
 * Why the prompting baselines (few-shot, retrieval) cannot score, or undefined when they can: they prompt the base
 * model with training rows, which needs text data with test rows and the base model's own weights.
 */
function baselineBlocker(
  app: DemoApp,
  trainable: boolean,
  head: Task,
  readFor: Task | undefined,
): string | undefined {
  if (!trainable) return "Load a model and data first.";
  if (head !== "causal-lm") return FEW_SHOT_NOTE;
  if (readFor !== "causal-lm")
    return "These rows are read for a classification head: read them for the language model (the task in 4 · LoRA and training) to prompt it.";
  if (app.data!.sizes.test === 0)
    return "The data has no test rows: load it with a test split or a test file.";
  if (app.fullyTuned)
    return "Full fine-tuning changed the base model's own weights: load the model again to prompt the base model.";
  return undefined;
}

/** A warning when validation loss has risen for two checks while training loss kept falling. */
export function overfitting(events: TrainEvent[]): string {
  const evals = events.filter((e) => e.type === "eval");
  if (evals.length < 3) return "";
  const [a, b, c] = evals.slice(-3).map((e) => e.loss);
  const best = Math.min(...evals.map((e) => e.loss));
  return a! < b! && b! < c!
    ? `Validation loss has risen for two checks (best ${best.toFixed(3)}, now ${c!.toFixed(3)}): the adapter is overfitting. Stop, lower the rate, or set early-stop patience.`
    : "";
}
