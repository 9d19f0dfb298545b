/** TrainerApi implemented with @webtune/core; runs in the worker, and in-thread for tests. */
import * as Comlink from "comlink";
import {
  adapterToGguf,
  evaluate,
  fewShotEvaluate,
  FineTuneJob,
  JOB_DEFAULTS,
  JobControl,
  LoraModel,
  modelToGguf,
  savePretrained,
  defaultCheckpointStore,
  type AdapterFiles,
  type CheckpointStore,
  type EvaluationResult,
  type FewShotReport,
  type FineTuneJobInput,
  type FineTuneJobSpec,
  type GgufFile,
  type JobEvent,
  type JobFieldNames,
  type JobResult,
  type LoraConfig,
  type RetrievalReport,
  ConfigError,
  disposeRuntime,
  gpuInfo,
  initRuntime,
  loadModel,
  predictWithHead,
  verifyLoraKernels,
  type HeadPrediction,
  type DownloadProgress,
  type GenerateResult,
  type GpuInfo,
  type LoraCheckCase,
  type LoraCheckResult,
  type ModelSource,
  type PretrainedModel,
  type RuntimeOptions,
} from "@webtune/core";
import type {
  CheckpointInfo,
  DataOptions,
  DataSummary,
  GgufExportRequest,
  DriftBaseline,
  JobOutcome,
  ModelInfo,
  MonitorResult,
  NewRowsFile,
  RetrainOutcome,
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
import { retrievalBaseline } from "./baselines.js";
import { readData, type LoadedData } from "./data.js";
import {
  jobReading,
  monitorNewRows,
  readingOf,
  type DataReading,
} from "./monitor.js";
import { retrainOnNewRows } from "./retrain.js";

/** Where checkpoints go unless the service is given a store: OPFS in browsers, a folder in Node. */
export const DEFAULT_CHECKPOINT_FOLDER = "webtune-checkpoints";

/** Trainer.checkpoint names checkpoints "step-000042". */
const checkpointStep = (name: string) =>
  Number(/^step-(\d+)$/.exec(name)?.[1] ?? NaN);

/**
 * The weights buffers of a set of files, for transferring them instead of copying. Only the freshly written
 * safetensors: the other files can be views of the source model's bytes, which must stay usable here.
 */
const weightBuffers = (files: object) =>
  Object.entries(files).flatMap(([name, data]) =>
    name.endsWith(".safetensors") ? [(data as Uint8Array).buffer] : [],
  ) as ArrayBuffer[];

export class TrainerService implements TrainerApi {
  private model: PretrainedModel | undefined;
  private peft: LoraModel | undefined;
  private data: LoadedData | undefined;
  /** How the loaded data was read (by loadData or the last job), which monitored rows are read the same way. */
  private reading: DataReading | undefined;
  /** The loaded model's source and storage, which a job's model must match to run on it. */
  private loaded: FineTuneJobSpec["model"] | undefined;
  /** The model's own weights were trained (a full fine-tune): there is no separate base to compare with. */
  private fullyTuned = false;
  private control: JobControl | undefined;
  /** An evaluate() call in progress, which stop() and skipScoring() cancel. */
  private scoring: AbortController | undefined;

  constructor(
    private readonly checkpoints: CheckpointStore = defaultCheckpointStore(
      DEFAULT_CHECKPOINT_FOLDER,
    ),
  ) {}

  init(options?: RuntimeOptions): Promise<GpuInfo> {
    return initRuntime(options);
  }

  async gpuInfo(): Promise<GpuInfo> {
    return gpuInfo();
  }

  verifyKernels(cases?: LoraCheckCase[]): Promise<LoraCheckResult[]> {
    return verifyLoraKernels(cases);
  }

  async loadModel(
    source: ModelSource,
    options: WorkerLoadOptions = {},
    onProgress?: (event: DownloadProgress) => void,
  ): Promise<ModelInfo> {
    await initRuntime();
    const model = await loadModel(source, { ...options, onProgress });
    this.releaseModel();
    this.model = model;
    this.peft = new LoraModel(model);
    this.loaded = {
      // What a job names: the string it was loaded from (a hub id, a URL), else the picked files' description.
      source: typeof source === "string" ? source : model.source,
      revision: options.revision ?? JOB_DEFAULTS.model.revision,
      dtype: options.dtype ?? "float32",
      quantize: options.quantize ?? null,
      doubleQuant: options.doubleQuant ?? false,
    };
    return {
      source: model.source,
      dims: model.dims,
      parameters: model.lm.parameterCount(),
      weightBytes: model.lm.weightBytes(),
      weightFormat: model.lm.projectionFormat(),
      hasTokenizer: model.tokenizer !== undefined,
      hasChatTemplate: (model.tokenizer?.chatTemplateNames.length ?? 0) > 0,
      targetModules: [
        ...new Set(model.linears().map((l) => l.name.split(".").at(-1)!)),
      ],
    };
  }

  async generate(
    prompt: string | number[],
    options: WorkerGenerateOptions = {},
    onToken?: (token: { id: number; text: string }) => void,
  ): Promise<GenerateResult> {
    const { useAdapter = true, ...generateOptions } = options;
    const peft = this.requirePeft();
    const run = () => peft.generate(prompt, { ...generateOptions, onToken });
    return useAdapter ? run() : peft.withAdaptersDisabled(run);
  }

  async predict(
    text: string,
    options: { useAdapter?: boolean } = {},
  ): Promise<HeadPrediction> {
    const peft = this.requirePeft();
    const head = peft.head();
    if (!head)
      throw new ConfigError(
        "The adapter has no classification head to predict with: train with the task seq-cls or token-cls, or generate text instead.",
      );
    const run = () =>
      predictWithHead(peft, this.requireModel().tokenizer!, head, text);
    return options.useAdapter === false
      ? peft.withAdaptersDisabled(run)
      : run();
  }

  async loss(ids: number[][]): Promise<number> {
    const loss = this.requirePeft().loss(ids);
    try {
      return (await loss.data())[0]!;
    } finally {
      loss.dispose();
    }
  }

  async loadData(
    input: string | ArrayBuffer,
    options: DataOptions,
  ): Promise<DataSummary> {
    const model = this.requireModel();
    if (!model.tokenizer)
      throw new ConfigError(
        `${model.source} has no tokenizer.json, which reading a dataset needs.`,
      );
    const { data, summary } = await readData(input, options, model);
    this.data = data;
    this.reading = readingOf(options);
    return summary;
  }

  async checkJob(
    input: FineTuneJobInput,
    names?: JobFieldNames,
  ): Promise<FineTuneJobSpec> {
    return FineTuneJob.from(input, names).toJSON();
  }

  /**
   * Runs a fine-tuning job (see FineTuneJob) on this worker's model: the one loaded when it is the job's model
   * (same source and storage) and the job trains an adapter; otherwise the job's model is loaded (a full
   * fine-tune always loads a fresh, trainable copy) and kept. `files` holds the data files the job names, by name;
   * a name not there is fetched as a URL.
   */
  async runJob(
    input: FineTuneJobInput,
    files: Record<string, string | ArrayBuffer> = {},
    onEvent?: (event: JobEvent) => void,
    options: RunJobOptions = {},
  ): Promise<JobOutcome> {
    this.refuseWhileRunning();
    const job = FineTuneJob.from(input, options.names);
    const reuse =
      job.method === "lora" &&
      this.model !== undefined &&
      this.loaded !== undefined &&
      sameModel(this.loaded, job.model);
    const resume = options.resumeFrom
      ? await this.checkpoints.load(options.resumeFrom)
      : undefined;
    if (!resume && job.checkpointEvery !== null) await this.checkpoints.clear();
    const control = (this.control = new JobControl());
    try {
      const run = await this.execute(job, files, control, onEvent, {
        ...options,
        reuse,
        resume,
      });
      if (!reuse) {
        this.releaseModel();
        this.model = run.model;
        this.peft = run.peft;
        // A fully tuned model is no longer its source's base: the next job loads that afresh.
        this.loaded = job.method === "full" ? undefined : { ...job.model };
      }
      this.fullyTuned = job.method === "full";
      this.data = run.splits;
      this.reading = jobReading(run.job);
      return {
        job: run.job,
        train: run.train,
        test: run.test,
        majorityAccuracy: run.majorityAccuracy,
        tasks: run.tasks,
        forgetting: run.forgetting,
        retention: run.retention,
        summary: run.summary,
      };
    } finally {
      this.control = undefined;
    }
  }

  /** Runs a checked job on this worker's model (`reuse`) or on the one it loads; the caller owns `control`. */
  private execute(
    job: FineTuneJob,
    files: Record<string, string | ArrayBuffer>,
    control: JobControl,
    onEvent: ((event: JobEvent) => void) | undefined,
    o: RunJobOptions & {
      reuse: boolean;
      resume?: Record<string, Uint8Array>;
      readAdapter?: (source: string) => Promise<AdapterFiles>;
    },
  ): Promise<JobResult> {
    return job.run({
      readFile: async (source) => {
        const given = files[source];
        if (given !== undefined)
          return typeof given === "string" ? given : new Uint8Array(given);
        return fetchData(source);
      },
      readAdapter: o.readAdapter,
      model: o.reuse ? this.model : undefined,
      peft: o.reuse ? this.peft : undefined,
      load: { onProgress: o.onProgress },
      control,
      checkpoints: this.checkpoints,
      resume: o.resume,
      names: o.names,
      trainerNames: o.trainerNames,
      dataNames: o.dataNames,
      onEvent,
    });
  }

  async retrainOnDrift(
    input: FineTuneJobInput,
    file: NewRowsFile,
    files: Record<string, string | ArrayBuffer>,
    options: WorkerRetrainOptions,
    onEvent?: (event: JobEvent) => void,
  ): Promise<RetrainOutcome> {
    this.refuseWhileRunning();
    const peft = this.requireRetrainable();
    const control = (this.control = new JobControl());
    try {
      return await retrainOnNewRows(
        {
          peft,
          tokenizer: this.requireModel().tokenizer!,
          data: this.requireData(),
          reading: this.reading!,
          control,
          onEvent,
          isLoaded: (model) => sameModel(this.loaded!, model),
          runJob: (job, jobFiles, readAdapter) =>
            this.execute(job, jobFiles, control, onEvent, {
              ...options,
              reuse: true,
              readAdapter,
            }),
        },
        { input, file, files },
        options,
      );
    } finally {
      this.control = undefined;
    }
  }

  async pause(): Promise<void> {
    this.control?.pause();
  }

  async resume(): Promise<void> {
    this.control?.resume();
  }

  async stop(): Promise<void> {
    this.control?.stop();
    this.scoring?.abort();
  }

  async skipScoring(): Promise<void> {
    this.control?.skipScoring();
    this.scoring?.abort();
  }

  async evaluate(
    split: "val" | "test",
    options: WorkerEvaluateOptions = {},
  ): Promise<EvaluationResult> {
    const data = this.requireData();
    const examples = this.splitRows(split, options.maxRows);
    const peft = this.requirePeft();
    const scoring = (this.scoring = new AbortController());
    const run = () =>
      evaluate(peft, this.requireModel().tokenizer!, examples, {
        format: data.format,
        labels: data.labels,
        signal: scoring.signal,
        head: peft.head(),
        keepRows: options.keepRows,
      });
    try {
      return await (options.useAdapter === false
        ? peft.withAdaptersDisabled(run)
        : run());
    } finally {
      if (this.scoring === scoring) this.scoring = undefined;
    }
  }

  async fewShot(
    k: number,
    seed = 0,
    options: WorkerFewShotOptions = {},
  ): Promise<{ result: EvaluationResult; report: FewShotReport }> {
    const { peft, data, test, format } = this.baselineInputs(
      "a few-shot prompt",
      options.maxRows,
    );
    const scoring = (this.scoring = new AbortController());
    try {
      return await peft.withAdaptersDisabled(() =>
        fewShotEvaluate(peft, this.requireModel().tokenizer!, {
          train: data.train,
          test,
          k,
          seed,
          format,
          labels: data.labels,
          names: { k: "k", train: "the train split", ...options.names },
          signal: scoring.signal,
        }),
      );
    } finally {
      if (this.scoring === scoring) this.scoring = undefined;
    }
  }

  /**
   * What a prompting baseline (`what`: few-shot, retrieval) scores: the base model on the first `maxRows` test rows
   * of text data; refused after a full fine-tune (no base is left) and for a classification head.
   */
  private baselineInputs(what: string, maxRows?: number) {
    const data = this.requireData();
    const test = this.splitRows("test", maxRows);
    if (this.fullyTuned)
      throw new ConfigError(
        "The model's own weights were trained (a full fine-tune), so there is no base model to prompt: load the model again first.",
      );
    const peft = this.requirePeft();
    if (data.format === "tagged" || peft.head())
      throw new ConfigError(
        `A classification head answers with labels, not text: ${what} is no baseline for it.`,
      );
    return { peft, data, test, format: data.format };
  }

  async retrieval(
    k: number,
    options: WorkerRetrievalOptions = {},
  ): Promise<{ result: EvaluationResult; report: RetrievalReport }> {
    const inputs = this.baselineInputs("a retrieval prompt", options.maxRows);
    const scoring = (this.scoring = new AbortController());
    try {
      return await retrievalBaseline(
        { ...inputs, model: this.requireModel() },
        k,
        options,
        scoring.signal,
      );
    } finally {
      if (this.scoring === scoring) this.scoring = undefined;
    }
  }

  async monitor(
    file: NewRowsFile,
    baseline: DriftBaseline,
    options: WorkerMonitorOptions = {},
  ): Promise<MonitorResult> {
    const data = this.requireData();
    const peft = this.requirePeft();
    if (peft.head())
      throw new ConfigError(
        "The adapter answers with a classification head: monitoring head adapters is not supported yet.",
      );
    const scoring = (this.scoring = new AbortController());
    try {
      return await monitorNewRows(
        {
          peft,
          model: this.requireModel(),
          data,
          reading: this.reading!,
          signal: scoring.signal,
        },
        file,
        baseline,
        options,
      );
    } finally {
      if (this.scoring === scoring) this.scoring = undefined;
    }
  }

  async saveAdapter(): Promise<AdapterFiles> {
    const files = await this.requirePeft().saveAdapter();
    return Comlink.transfer(files, weightBuffers(files));
  }

  async saveMerged(): Promise<Record<string, Uint8Array | string>> {
    const files = await this.withWeights("merged", savePretrained);
    return Comlink.transfer(files, weightBuffers(files));
  }

  async exportGguf(request: GgufExportRequest): Promise<GgufFile> {
    const { what, dtype } = request;
    if (!["merged", "adapter", "base"].includes(what))
      throw new ConfigError(
        `exportGguf: what must be "merged", "adapter" or "base", got ${JSON.stringify(what)}.`,
      );
    let file: GgufFile;
    if (what === "adapter") {
      if (this.fullyTuned)
        throw new ConfigError(
          'The model\'s own weights were trained (a full fine-tune), so there is no adapter to export: export "merged", the tuned model.',
        );
      file = await adapterToGguf(this.requirePeft(), undefined, { dtype });
    } else
      file = await this.withWeights(what, (model) =>
        modelToGguf(model, { dtype }),
      );
    // Each part is its own buffer (see writeGguf); a set guards against transferring one twice.
    return Comlink.transfer(file, [
      ...new Set(file.parts.map((p) => p.buffer)),
    ]);
  }

  async listCheckpoints(): Promise<CheckpointInfo[]> {
    return (await this.checkpoints.list())
      .map((name) => ({ name, step: checkpointStep(name) }))
      .filter((c) => Number.isInteger(c.step));
  }

  clearCheckpoints(): Promise<void> {
    return this.checkpoints.clear();
  }

  async loadAdapter(
    name: string,
    source: AdapterFiles | ModelSource,
  ): Promise<LoraConfig> {
    const peft = this.requirePeft();
    const config = await peft.loadAdapter(name, source);
    peft.setAdapter(name);
    return config;
  }

  async merge(): Promise<void> {
    this.requirePeft().merge();
  }

  async unmerge(): Promise<void> {
    this.requirePeft().unmerge();
  }

  async dispose(): Promise<void> {
    this.control?.stop();
    this.releaseModel();
    disposeRuntime();
  }

  /**
   * Runs `read` on the model with the weights `what` names: "merged", the active adapter folded in (a full
   * fine-tune's own weights as they are); "base", no adapter folded in. The adapters are left as they were found,
   * what was merged merged and what was separate separate, also when `read` throws.
   */
  private async withWeights<T>(
    what: "merged" | "base",
    read: (model: PretrainedModel) => Promise<T>,
  ): Promise<T> {
    const model = this.requireModel();
    const peft = this.requirePeft();
    if (this.control)
      throw new ConfigError(
        "A job is running in this worker, and its weights change with every step: save or export after it ends, or stop() it.",
      );
    if (what === "base" && this.fullyTuned)
      throw new ConfigError(
        "The model's own weights were trained (a full fine-tune), so there is no base model to export: load the model again first.",
      );
    const before = peft.mergedAdapters;
    const change =
      what === "merged"
        ? !this.fullyTuned && !before.includes(peft.activeAdapter ?? "")
        : before.length > 0;
    if (change && what === "merged") peft.merge();
    if (change && what === "base") peft.unmerge();
    try {
      return await read(model);
    } finally {
      if (change) {
        peft.unmerge();
        for (const name of before) peft.merge(name);
      }
    }
  }

  private refuseWhileRunning(): void {
    if (this.control)
      throw new ConfigError(
        "A job is already running in this worker; stop() it first.",
      );
  }

  /** The LoraModel whose active adapter can go on training on new rows, with the loaded data read as it was. */
  private requireRetrainable(): LoraModel {
    const peft = this.requirePeft();
    this.requireData();
    if (this.fullyTuned)
      throw new ConfigError(
        "The model's own weights were trained (a full fine-tune): retraining on new rows continues a LoRA adapter. Train an adapter first.",
      );
    if (!peft.activeAdapter || !this.loaded || !this.reading)
      throw new ConfigError(
        "There is no adapter to retrain: train one (or import one and load its data) first.",
      );
    if (peft.head())
      throw new ConfigError(
        "The adapter answers with a classification head: retraining head adapters on new rows is not supported yet.",
      );
    return peft;
  }

  private releaseModel(): void {
    this.peft?.dispose();
    this.model?.dispose();
    this.peft = this.model = this.data = this.loaded = this.reading = undefined;
    this.fullyTuned = false;
  }

  private requirePeft(): LoraModel {
    this.requireModel();
    return this.peft!;
  }

  /** The first `maxRows` rows of a split of the loaded data; a ConfigError when there are none. */
  private splitRows(split: "val" | "test", maxRows?: number) {
    const rows = this.requireData()[split].slice(0, maxRows);
    if (rows.length === 0)
      throw new ConfigError(
        `The ${split} split is empty: loadData with a ${split}Split above 0${split === "test" ? " or a test file" : ""}.`,
      );
    return rows;
  }

  private requireData(): LoadedData {
    if (!this.data)
      throw new ConfigError(
        "No dataset is loaded in the worker: call loadData(text, { source }) first.",
      );
    return this.data;
  }

  private requireModel(): PretrainedModel {
    if (!this.model)
      throw new ConfigError(
        "No model is loaded in the worker: call loadModel(source) first.",
      );
    return this.model;
  }
}

/** Whether a loaded model is the job's: the same source and storage. */
function sameModel(
  loaded: FineTuneJobSpec["model"],
  wanted: FineTuneJobSpec["model"],
): boolean {
  const trim = (s: string) => s.replace(/\/+$/, "");
  return (
    trim(loaded.source) === trim(wanted.source) &&
    loaded.revision === wanted.revision &&
    loaded.dtype === wanted.dtype &&
    loaded.quantize === wanted.quantize &&
    loaded.doubleQuant === wanted.doubleQuant
  );
}

/** A data file the job names but the caller did not hand over: fetched as a URL (relative to the worker). */
async function fetchData(source: string): Promise<Uint8Array> {
  const response = await fetch(source).catch((e: Error) => {
    throw new ConfigError(
      `The job names ${source}, which was not among the files given to runJob and could not be fetched: ${e.message}.`,
    );
  });
  if (!response.ok)
    throw new ConfigError(
      `The job names ${source}, which was not among the files given to runJob; fetching it gave HTTP ${response.status}.`,
    );
  return new Uint8Array(await response.arrayBuffer());
}
