/** The demo page: starts the worker, wires the panels to DemoApp, and offers to resume a saved run. */
import { createTrainer } from "@webtune/worker";
import { DemoApp } from "./app.js";
import { showDevice, checkKernels } from "./device.js";
import { byId, hideError, setStatus, showError } from "./dom.js";
import { scoreFewShot } from "./few_shot.js";
import { checkDrift, retrainOnDrift } from "./monitor.js";
import { scoreRetrieval } from "./retrieval.js";
import { downloadAdapterGguf, downloadModelGguf } from "./gguf.js";
import { PRESETS } from "./presets.js";
import { loadRun, type DataChoice, type ModelChoice } from "./run_store.js";
import { applyPreset, renderSettings, restoreValues } from "./settings.js";

declare global {
  interface Window {
    /** The demo's state, for end-to-end tests and curious developers. */
    webtuneDemo?: DemoApp;
  }
}

const input = (id: string) => byId<HTMLInputElement>(id);

function modelChoice(): ModelChoice {
  const kind = document.querySelector<HTMLInputElement>(
    'input[name="model-kind"]:checked',
  )!.value;
  if (kind === "hub") {
    const id = input("hub-id").value.trim();
    if (!id) throw new Error("Type a hub id, e.g. HuggingFaceTB/SmolLM2-135M.");
    return { kind, id };
  }
  return kind === "folder" ? { kind } : { kind: "embedded" };
}

async function dataChoice(): Promise<DataChoice> {
  const preset = byId<HTMLSelectElement>("preset").value;
  if (preset !== "custom") return { kind: "preset", name: preset };
  const file = input("data-file").files?.[0];
  const pasted = byId<HTMLTextAreaElement>("data-paste").value;
  const testSplit = Number(input("test-split").value);
  const testFile = input("test-file").files?.[0];
  const test = testFile
    ? { source: testFile.name, text: await testFile.text() }
    : undefined;
  const skipBadRows = input("skip-bad-rows").checked;
  if (file)
    return {
      kind: "text",
      source: file.name,
      text: await file.text(),
      testSplit,
      test,
      skipBadRows,
    };
  if (pasted.trim())
    return {
      kind: "text",
      source: "pasted.jsonl",
      text: pasted,
      testSplit,
      test,
      skipBadRows,
    };
  throw new Error("Pick a file or paste rows first, or choose a preset.");
}

/** Shows a preset's settings at once (its data follows as soon as a model is loaded), or the custom-data fields. */
function choosePreset(name: string): void {
  byId("custom-data").hidden = name !== "custom";
  const preset = PRESETS[name];
  if (preset) applyPreset(preset.job);
}

function wire(app: DemoApp): void {
  const on = (id: string, label: string, action: () => Promise<void>) =>
    byId(id).addEventListener("click", () => void app.act(label, action));
  on("check-kernels", "Checking the kernels against the CPU…", () =>
    checkKernels(app.trainer),
  );
  const loadData = async () => app.loadData(await dataChoice());
  on("load-model", "Loading the model…", async () => {
    const choice = modelChoice();
    await app.loadModel(choice, Array.from(input("model-folder").files ?? []));
    if (byId<HTMLSelectElement>("preset").value !== "custom") await loadData();
  });
  on("load-data", "Reading the data…", loadData);
  on("train", "Starting the job…", () => app.train());
  on("download-job", "Saving the job…", () => app.downloadJob());
  on("evaluate", "Evaluating…", () => app.evaluate());
  on("few-shot", "Scoring the few-shot baseline…", () => scoreFewShot(app));
  on("retrieval", "Scoring the retrieval baseline…", () => scoreRetrieval(app));
  on("check-drift", "Checking the new rows for drift…", () => checkDrift(app));
  on("retrain", "Retraining the adapter on the new rows…", () =>
    retrainOnDrift(app),
  );
  // Check for drift waits for a file; Retrain, for a check of the file now picked.
  input("monitor-file").addEventListener("change", () => app.refresh());
  on("compare", "Asking the base model and the adapter…", () => app.compare());
  on("export-adapter", "Saving the adapter…", () => app.exportAdapter());
  on("export-merged", "Saving the merged model…", () => app.exportMerged());
  on("export-gguf", "Writing the GGUF…", () => downloadModelGguf(app));
  on("export-adapter-gguf", "Writing the adapter GGUF…", () =>
    downloadAdapterGguf(app),
  );
  // Pause and Stop act during training, when other actions are locked.
  byId("pause").addEventListener("click", () =>
    app.pauseOrResume().catch(showError),
  );
  byId("stop").addEventListener("click", () => app.stop().catch(showError));
  byId("skip-scoring").addEventListener("click", () =>
    app.skipScoring().catch(showError),
  );
  input("load-job").addEventListener("change", () => {
    const file = input("load-job").files?.[0];
    input("load-job").value = "";
    if (file) void app.act("Reading the job…", () => app.loadJob(file));
  });
  // Train's line says what it will run, and a head's notes show: the data and the settings as they are now.
  byId("settings").addEventListener("input", () => app.refresh());
  // Rows differ per task: a new task (or other subwords tagged) reads the loaded data again. While a job runs,
  // the data panel says to press Load data instead.
  byId("settings").addEventListener("change", (event) => {
    const id = (event.target as HTMLElement).id;
    const reads = ["setting-task", "setting-labelSubwords"].includes(id);
    if (reads && app.phase === "idle" && app.dataStale())
      void app.act("Reading the data again for the new task…", () =>
        app.rereadData(),
      );
  });
  input("import-adapter").addEventListener("change", () => {
    const files = Array.from(input("import-adapter").files ?? []);
    input("import-adapter").value = "";
    void app.act("Importing the adapter…", () => app.importAdapter(files));
  });
  // A preset is one choice: its settings, its data and its prompt change together.
  byId("preset").addEventListener("change", () => {
    const name = byId<HTMLSelectElement>("preset").value;
    choosePreset(name);
    if (name !== "custom" && app.model)
      void app.act("Reading the data…", () =>
        app.loadData({ kind: "preset", name }),
      );
    else app.refresh();
  });
  byId("banner-close").addEventListener("click", hideError);
  // An answer shown under a prompt it was not generated for would mislead.
  byId("compare-prompt").addEventListener("input", () => app.clearAnswers());
}

/** Offers to continue a run whose checkpoints survived a reload. */
async function offerResume(app: DemoApp): Promise<void> {
  const run = loadRun();
  const checkpoints = await app.trainer.api.listCheckpoints();
  const last = checkpoints.at(-1);
  if (!run || !last) return;
  const banner = byId("resume");
  byId("resume-text").textContent =
    run.model.kind === "folder"
      ? `A run from ${new Date(run.startedAt).toLocaleString()} has a checkpoint at step ${last.step}; pick the same model folder, then Resume.`
      : `A run from ${new Date(run.startedAt).toLocaleString()} stopped; its checkpoint at step ${last.step} can continue.`;
  banner.hidden = false;
  byId("resume-discard").addEventListener("click", () => {
    banner.hidden = true;
    void app.discardRun();
  });
  byId("resume-run").addEventListener("click", () => {
    banner.hidden = true;
    void app.act("Resuming the saved run…", async () => {
      restoreForm(run.model, run.data);
      restoreValues(run.settings);
      await app.loadModel(
        run.model,
        Array.from(input("model-folder").files ?? []),
      );
      // The run's data, read for the run's task: its settings, not its preset's.
      await app.loadData(run.data, { keepForm: true });
      await app.train({ checkpoint: last, run });
    });
  });
}

function restoreForm(model: ModelChoice, data: DataChoice): void {
  input(`kind-${model.kind}`).checked = true;
  if (model.kind === "hub") input("hub-id").value = model.id;
  const preset = data.kind === "preset" ? data.name : "custom";
  byId<HTMLSelectElement>("preset").value = preset;
  choosePreset(preset);
  if (data.kind === "text") {
    byId<HTMLTextAreaElement>("data-paste").value = data.text;
    input("test-split").value = String(data.testSplit);
    input("skip-bad-rows").checked = data.skipBadRows ?? false;
  }
}

async function main(): Promise<void> {
  renderSettings();
  choosePreset(byId<HTMLSelectElement>("preset").value);
  const app = new DemoApp(createTrainer());
  window.webtuneDemo = app;
  wire(app);
  app.setPhase("busy");
  try {
    showDevice(await app.trainer.api.init());
    setStatus("Ready: load a model (the embedded default is one click).");
    await offerResume(app);
  } catch (error) {
    showError(error);
    setStatus("WebGPU did not start, so webtune cannot train here.");
    return;
  }
  app.setPhase("idle");
}

void main();
