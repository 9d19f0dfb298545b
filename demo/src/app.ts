/**
 * The demo's state and actions: load a model and data, train with live charts, compare, evaluate, export.
 * Every heavy step runs in the worker; this thread only draws. `window.webtuneDemo` publishes the state for tests.
 */
import * as Comlink from "comlink";
import type { EvaluationResult, TrainEvent, TrainResult } from "@webtune/core";
import type {
  CheckpointInfo,
  DataSummary,
  ModelInfo,
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
import { fetchPresetFile, PRESETS } from "./presets.js";
import { readAdapterUpload, zipFolder } from "./adapter_files.js";
import {
  forgetRun,
  saveRun,
  type DataChoice,
  type ModelChoice,
  type SavedRun,
} from "./run_store.js";
import {
  currentValues,
  readSettings,
  weightStorage,
  type Settings,
} from "./settings.js";
import { showDataSummary } from "./data_view.js";

export type Phase = "idle" | "busy" | "training" | "paused";

const EMBEDDED_MODEL = "models/webtune-demo-base/";
const ADAPTER = "default";
/** Tokens each side of the before/after panel generates. */
const COMPARE_TOKENS = 32;

/** How data messages name this page's controls, instead of the API's option names. */
const PAGE_OPTION_NAMES = {
  skip: 'tick "Skip rows that cannot be read" (with your own file)',
  maxLength: '"max tokens per row"',
  truncate: null,
  format: null,
};

export class DemoApp {
  phase: Phase = "idle";
  model?: ModelInfo;
  data?: DataSummary;
  hasAdapter = false;
  events: TrainEvent[] = [];
  metrics: { base?: EvaluationResult; tuned?: EvaluationResult } = {};
  compared?: { base: string; tuned: string };
  lastTrain?: TrainResult;
  /** Made with the page, so that starting a run draws into charts that exist. */
  readonly charts = new TrainingCharts();
  modelChoice?: ModelChoice;
  dataChoice?: DataChoice;
  private run?: SavedRun;
  private imports = 0;

  constructor(readonly trainer: WorkerTrainer) {}

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
      showError(error);
      setStatus("Something went wrong: see the message below.");
    } finally {
      this.setPhase("idle");
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
    enable("pause", phase === "training" || phase === "paused");
    enable("stop", phase === "training" || phase === "paused");
    enable("compare", ready && this.model!.hasTokenizer);
    enable("evaluate", trainable && this.data!.sizes.test > 0);
    enable("export-adapter", ready && this.hasAdapter);
    enable("export-merged", ready && this.hasAdapter);
    byId<HTMLInputElement>("import-adapter").disabled = !ready;
    byId("pause").textContent = phase === "paused" ? "Resume" : "Pause";
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
    this.hasAdapter = false;
    this.metrics = {};
    showMetrics();
    this.clearAnswers();
    const info = await this.api.loadModel(
      source,
      weightStorage(byId<HTMLSelectElement>("weight-storage").value),
      onProgress,
    );
    bar.hidden = true;
    this.model = info;
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

  async loadData(choice: DataChoice, settings: Settings): Promise<void> {
    let train: string;
    let test: { input: string; source: string } | undefined;
    let source: string;
    if (choice.kind === "preset") {
      const preset = PRESETS[choice.name]!;
      [train, test] = await Promise.all([
        fetchPresetFile(preset.train),
        fetchPresetFile(preset.test).then((input) => ({
          input,
          source: preset.test,
        })),
      ]);
      source = preset.train;
    } else {
      train = choice.text;
      source = choice.source;
      if (choice.test)
        test = { input: choice.test.text, source: choice.test.source };
    }
    this.data = undefined;
    this.metrics = {};
    showMetrics();
    const summary = await this.api.loadData(train, {
      source,
      maxLength: settings.maxLength,
      valSplit: 0.1,
      testSplit: choice.kind === "text" && !test ? choice.testSplit : 0,
      test,
      skipBadRows: choice.kind === "text" && choice.skipBadRows,
      optionNames: PAGE_OPTION_NAMES,
    });
    this.data = summary;
    this.dataChoice = choice;
    showDataSummary(source, summary);
    showMetrics(undefined, undefined, summary.format);
    const prompt =
      summary.preview.test[0]?.prompt ??
      summary.preview.train[0]?.prompt ??
      summary.preview.train[0]?.target.slice(0, 40) ??
      "";
    byId<HTMLTextAreaElement>("compare-prompt").value = prompt;
    this.clearAnswers();
    setStatus(
      `Loaded ${summary.sizes.train} training, ${summary.sizes.val} validation and ${summary.sizes.test} test rows.`,
    );
  }

  /** Trains a fresh adapter, or continues a checkpoint; then scores the test split and compares outputs. */
  async train(resume?: {
    checkpoint: CheckpointInfo;
    run: SavedRun;
  }): Promise<void> {
    const settings = readSettings();
    const { summary } = await this.api.addAdapter(ADAPTER, settings.lora);
    this.hasAdapter = true;
    setStatus(summary);
    const testRows = Math.min(settings.testRows, this.data!.sizes.test);
    if (testRows > 0 && !this.metrics.base) {
      setStatus(`Scoring the base model on ${testRows} test rows…`);
      this.metrics.base = await this.api.evaluate("test", {
        maxRows: testRows,
        useAdapter: false,
      });
      showMetrics(this.metrics.base);
    }
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
    this.setPhase("training");
    setStatus(
      resume ? `Training from step ${resume.checkpoint.step}…` : "Training…",
    );
    const total = this.totalSteps(settings);
    const onEvent = Comlink.proxy((event: TrainEvent) =>
      this.onEvent(event, total),
    );
    this.lastTrain = await this.api
      .train(
        { ...settings.train, resumeFrom: resume?.checkpoint.name },
        onEvent,
      )
      .catch((error: unknown) => {
        // Said beside the chart too, where the eye is: the banner is the top of the page.
        const last = this.events.filter((e) => e.type === "step").at(-1);
        const name = (error as { name?: string }).name ?? "Error";
        byId("eta").textContent =
          `Stopped after step ${last?.step ?? 0}: ${name}, explained in the banner above.`;
        throw error;
      });
    this.setPhase("busy");
    setStatus(
      `${this.lastTrain.aborted ? "Stopped" : "Trained"} after ${this.lastTrain.steps} steps${this.lastTrain.stoppedEarly ? " (early stopping kept the best validation loss)" : ""}.`,
    );
    if (testRows > 0) await this.evaluate(settings);
    await this.compare();
  }

  /** Optimizer steps the run will take, for the progress bar. */
  private totalSteps(s: Settings): number {
    const perEpoch = Math.ceil(this.data!.sizes.train / s.train.batchSize!);
    return s.train.maxSteps ?? perEpoch * s.train.epochs!;
  }

  private startCharts(fromStep: number): void {
    this.events = this.events.filter((e) => e.step <= fromStep);
    this.charts.reset(this.events);
  }

  private onEvent(event: TrainEvent, total: number): void {
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

  async stop(): Promise<void> {
    await this.api.abort();
    setStatus("Stopping after the current step…");
  }

  async evaluate(settings = readSettings()): Promise<void> {
    const maxRows = settings.testRows;
    if (!this.metrics.base) {
      setStatus(`Scoring the base model on the test split…`);
      this.metrics.base = await this.api.evaluate("test", {
        maxRows,
        useAdapter: false,
      });
    }
    if (this.hasAdapter) {
      setStatus(`Scoring the adapter on the test split…`);
      this.metrics.tuned = await this.api.evaluate("test", { maxRows });
    }
    showMetrics(this.metrics.base, this.metrics.tuned);
    setStatus("Evaluated on the test split.");
  }

  /** The same prompt, greedy, from the base model and from the adapter, streamed side by side. */
  async compare(): Promise<void> {
    const prompt = byId<HTMLTextAreaElement>("compare-prompt").value;
    const sides = { base: byId("base-output"), tuned: byId("tuned-output") };
    const result = { base: "", tuned: "" };
    for (const side of ["base", "tuned"] as const) {
      if (side === "tuned" && !this.hasAdapter) {
        sides.tuned.textContent = "(no adapter yet)";
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

  /** Empties the before/after panel, whose answers were for another prompt or model. */
  clearAnswers(): void {
    byId("base-output").textContent = "";
    byId("tuned-output").textContent = "";
    this.compared = undefined;
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
    setStatus("Merging the adapter into a copy of the weights…");
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
    this.metrics.tuned = undefined;
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
