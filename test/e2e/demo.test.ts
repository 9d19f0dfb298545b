/**
 * The demo page in headless Chromium (WebGPU on SwiftShader), driven through its controls as a person would, on a
 * micro Llama (2 layers, hidden 32) picked as a local folder: upload data, train with live charts, pause and resume,
 * see metrics and the before/after panel, export the adapter (checked against PEFT's key names and shapes) and the
 * merged model, both also as GGUF files for llama.cpp, import the adapter back (same test loss), stop a run, resume
 * it from its OPFS checkpoint after a reload, and show a bad file in the error banner. Long tasks on the main thread
 * are watched while training.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { strFromU8, unzipSync } from "fflate";
import { gguf } from "@huggingface/gguf";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EvaluationResult } from "@webtune/core";
import {
  openSafetensors,
  writeSafetensors,
} from "../../packages/core/src/io/safetensors.js";
import { demoSettled, launchChromium, serveDemo } from "../helpers/browser.js";
import { bannerText as pageBanner, demoState } from "../helpers/demo_page.js";
import { chatModelFolder } from "../helpers/chat_model.js";

let browser: Browser;
let site: { url: string; close: () => Promise<void> };
let page: Page;
const logs: string[] = [];
const workers: string[] = [];
const scratch = mkdtempSync(join(tmpdir(), "webtune-demo-e2e-"));
const modelDir = chatModelFolder(join(scratch, "model"));
/** The micro model's sizes (test/helpers/chat_model.ts). */
const HIDDEN = 32;
const R = 4;

/** Instruction rows the micro model's tokenizer covers; one blank and one duplicate for the cleaning report. */
function dataset(): string {
  const rows = ["cat", "dog", "bird", "fox", "cow", "pig", "hen", "owl"]
    .flatMap((a) =>
      ["mat", "rug", "bed", "box"].map((p) =>
        JSON.stringify({ prompt: `the ${a} sat on the`, completion: ` ${p}.` }),
      ),
    )
    .concat(
      JSON.stringify({ prompt: "the cat sat on the", completion: " mat." }),
      JSON.stringify({ prompt: " ", completion: " " }),
    );
  return rows.join("\n");
}

/** What the page records while training (see the responsiveness test). */
interface Watch {
  longTasks: number[];
  scriptMs: number[];
  timeline: string[];
}

/** A PerformanceLongAnimationFrameTiming, which @types do not have yet. */
interface LongFrame {
  startTime: number;
  duration: number;
  scripts: { duration: number; invoker: string; sourceURL: string }[];
}

/** Reads the page's DemoApp in the page. */
const state = <T>(read: (app: NonNullable<Window["webtuneDemo"]>) => T) =>
  demoState(page, read);

const settle = (timeout = 240_000) => demoSettled(page, timeout);

/** Lowers the CPU priority of Chromium's GPU process (SwiftShader), if there is one. */
function niceGpuProcess(): void {
  const pids = execFileSync("pgrep", ["-f", "--", "--type=gpu-process"], {
    encoding: "utf8",
  })
    .split("\n")
    .filter(Boolean);
  expect(pids.length).toBeGreaterThan(0);
  for (const pid of pids) execFileSync("renice", ["-n", "10", "-p", pid]);
}

const bannerText = () => pageBanner(page);

async function openDemo(): Promise<void> {
  await page.goto(site.url);
  await settle();
  expect(await bannerText(), logs.join("\n")).toBe("");
}

async function pickModelFolder(): Promise<void> {
  await page.check("#kind-folder");
  await page.setInputFiles("#model-folder", modelDir);
}

async function setSettings(values: Record<string, number>): Promise<void> {
  for (const [name, value] of Object.entries(values))
    await page.fill(`#setting-${name}`, String(value));
}

/** Clicks a download button and saves what it downloads; the file's name and where it was saved. */
async function downloadFile(
  button: string,
): Promise<{ name: string; path: string }> {
  const [file] = await Promise.all([
    page.waitForEvent("download"),
    page.click(button),
  ]);
  const path = join(scratch, file.suggestedFilename());
  await file.saveAs(path);
  return { name: file.suggestedFilename(), path };
}

async function download(button: string): Promise<Record<string, Uint8Array>> {
  const { path } = await downloadFile(button);
  return unzipSync(new Uint8Array(await readFile(path)));
}

/** A downloaded GGUF: "GGUF", version 3, and its metadata as @huggingface/gguf reads it. */
async function ggufMetadata(path: string): Promise<Record<string, unknown>> {
  const head = new Uint8Array(await readFile(path)).subarray(0, 8);
  expect(new TextDecoder().decode(head.subarray(0, 4))).toBe("GGUF");
  expect(new DataView(head.buffer, head.byteOffset).getUint32(4, true)).toBe(3);
  return (await gguf(path, { allowLocalFile: true })).metadata as Record<
    string,
    unknown
  >;
}

beforeAll(async () => {
  site = await serveDemo();
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
  page.on("worker", (w) => workers.push(w.url()));
  writeFileSync(join(scratch, "animals.jsonl"), dataset());
  writeFileSync(
    join(scratch, "bad.jsonl"),
    '{"prompt": "a", "completion": " b"}\n{"prompt": 3, "completion": " c"}\n',
  );
  await openDemo();
});
afterAll(async () => {
  await browser?.close();
  await site?.close();
});

describe("the demo page", () => {
  it("checks the kernels on the browser's adapter from the device panel", async () => {
    await page.click("#check-kernels");
    await settle();
    const report = await page.evaluate(() => window.webtuneCheck!);
    expect("error" in report ? report.error : "").toBe("");
    if ("error" in report) return;
    expect(report.results.length).toBeGreaterThanOrEqual(2);
    for (const r of report.results)
      for (const [name, err] of Object.entries(r.errors))
        expect(err, `${JSON.stringify(r.case)} ${name}`).toBeLessThanOrEqual(
          1e-4,
        );
    await expect(page.locator("#check tbody .pass").count()).resolves.toBe(
      report.results.length,
    );
    // The page imports only types from @webtune/core: the kernels ran in the one worker it started.
    expect(workers).toHaveLength(1);
    expect(report.info.backend).toBe("webgpu");
    console.log(
      `browser adapter: ${report.info.vendor} / ${report.info.architecture}; features: ${report.info.features.join(", ")}`,
    );
  });

  it("shows a bad data file in the error banner, naming the file and line, and stays usable", async () => {
    await pickModelFolder();
    await page.selectOption("#preset", "custom");
    await page.click("#load-model");
    await settle();
    expect(await bannerText(), logs.join("\n")).toBe("");
    await page.setInputFiles("#data-file", join(scratch, "bad.jsonl"));
    await page.click("#load-data");
    await settle();
    const text = await bannerText();
    expect(text).toMatch(/RowFormatError/);
    expect(text).toMatch(/bad\.jsonl.*line 2/);
    // The advice names the page's own control, not the API's option.
    expect(text).toMatch(
      /Fix the row, or tick "Skip rows that cannot be read" \(with your own file\) to drop such rows/,
    );
    expect(text).not.toMatch(/onError/);
    expect(await state((app) => app.data)).toBeUndefined();
    await expect(page.locator("#train").isDisabled()).resolves.toBe(true);
    // Nothing trained, nothing to export.
    for (const button of [
      "#export-merged",
      "#export-gguf",
      "#export-adapter-gguf",
    ])
      await expect(page.locator(button).isDisabled()).resolves.toBe(true);
  });

  it("reads an uploaded file with a cleaning report and a preview", async () => {
    await page.setInputFiles("#data-file", join(scratch, "animals.jsonl"));
    await page.fill("#test-split", "0.2");
    await page.click("#load-data");
    await settle();
    expect(await bannerText()).toBe("");
    const report = await page.locator("#data-report").innerText();
    expect(report).toMatch(/instruction data/);
    expect(report).toMatch(
      /Kept 32 of 34 rows \(dropped 1 empty, 1 duplicate\)/,
    );
    const data = await state((app) => app.data!);
    expect(data.sizes.train + data.sizes.val + data.sizes.test).toBe(32);
    expect(data.sizes.test).toBeGreaterThan(0);
    await expect(page.locator("#data-preview tbody tr").count()).resolves.toBe(
      5,
    );
    expect(await page.inputValue("#compare-prompt")).toMatch(
      /^the \w+ sat on the$/,
    );
  });

  it("trains with live chart points, pauses and resumes, then shows test metrics and before/after text; its scripts never hold the main thread 100 ms", async () => {
    // Here the "GPU" is SwiftShader: shaders run on the same two CPU cores as the page. Its process is niced so
    // that the long tasks measured are the page's own, as with a hardware GPU, not the rasterizer's preemption.
    niceGpuProcess();
    await setSettings({
      r: R,
      alpha: 2 * R,
      lr: 0.02,
      batch: 6,
      maxSteps: 12,
      warmup: 0,
      evalEvery: 4,
      checkpointEvery: 0,
      maxLength: 32,
      testRows: 8,
    });
    // Long tasks, long animation frames with the script time in them (what the page's own code ran, by source),
    // and the status line's changes, with their times, so that a failure says what was running.
    await page.evaluate(() => {
      const w = window as unknown as Watch;
      w.longTasks = [];
      w.scriptMs = [];
      w.timeline = [];
      const at = (t: number) => `${t.toFixed(0)} ms:`;
      new PerformanceObserver((list) => {
        for (const e of list.getEntries()) {
          w.longTasks.push(e.duration);
          w.timeline.push(
            `${at(e.startTime)} long task of ${e.duration.toFixed(0)} ms`,
          );
        }
      }).observe({ type: "longtask" });
      new PerformanceObserver((list) => {
        for (const e of list.getEntries() as unknown as LongFrame[]) {
          const ms = e.scripts.reduce((n, s) => n + s.duration, 0);
          w.scriptMs.push(ms);
          w.timeline.push(
            `${at(e.startTime)} frame of ${e.duration.toFixed(0)} ms, scripts ${ms.toFixed(0)} ms: ` +
              e.scripts
                .map(
                  (s) =>
                    `${s.invoker} ${s.sourceURL.split("/").at(-1)} ${s.duration.toFixed(0)} ms`,
                )
                .join(", "),
          );
        }
      }).observe({ type: "long-animation-frame" });
      for (const id of ["#status", "#eta", "#overfit"])
        new MutationObserver(() =>
          w.timeline.push(
            `${at(performance.now())} ${document.querySelector(id)!.textContent}`,
          ),
        ).observe(document.querySelector(id)!, {
          childList: true,
          characterData: true,
          subtree: true,
        });
    });
    await page.click("#train");
    await page.waitForFunction(
      () => (window.webtuneDemo?.charts?.points.train ?? 0) >= 3,
      undefined,
      { timeout: 120_000, polling: 50 },
    );
    await page.click("#pause");
    await page.waitForFunction(() => window.webtuneDemo?.phase === "paused");
    await expect(page.locator("#pause").innerText()).resolves.toBe("Resume");
    // A step in flight finishes; then nothing moves while paused.
    await page.waitForTimeout(1500);
    const pausedAt = await state((app) => app.events.length);
    await page.waitForTimeout(1500);
    expect(await state((app) => app.events.length)).toBe(pausedAt);
    await page.click("#pause");
    await settle();
    expect(await bannerText(), logs.join("\n")).toBe("");

    const result = await state((app) => ({
      steps: app.events.filter((e) => e.type === "step").map((e) => e.step),
      evals: app.events.filter((e) => e.type === "eval").length,
      points: app.charts!.points,
      metrics: app.metrics,
      compared: app.compared,
      train: app.lastTrain!,
    }));
    expect(result.steps).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect(result.points).toEqual({
      train: 12,
      val: result.evals,
      lr: 12,
      tps: 12,
    });
    expect(result.evals).toBeGreaterThanOrEqual(3);
    expect(result.train.aborted).toBe(false);
    expect(await page.locator("#chart-loss canvas").count()).toBe(1);
    await expect(page.locator("#progress").getAttribute("value")).resolves.toBe(
      "1",
    );
    // The adapter learnt the data: test loss well below the base model's.
    const { base, tuned } = result.metrics;
    expect(base!.rows).toBe(tuned!.rows);
    expect(tuned!.loss).toBeLessThan(base!.loss - 0.2);
    expect(tuned!.exactMatch).toBeTypeOf("number");
    const table = await page.locator("#metrics tbody").innerText();
    expect(table).toMatch(/exact match/);
    expect(result.compared!.base).toBe(
      await page.locator("#base-output").innerText(),
    );
    expect(result.compared!.tuned).toBe(
      await page.locator("#tuned-output").innerText(),
    );
    expect(result.compared!.tuned).not.toBe(result.compared!.base);

    const watch = await page.evaluate(() => {
      const w = window as unknown as Watch;
      return {
        longTasks: w.longTasks,
        scriptMs: w.scriptMs,
        timeline: w.timeline,
      };
    });
    const timeline = watch.timeline.join("\n");
    if (process.env["WEBTUNE_LONGTASK_LOG"]) console.log(timeline);
    // webtune's own main-thread work: no frame spends 100 ms or more in the page's scripts. (On this machine the
    // browser's software rendering can still make a frame long; the long tasks are in the timeline.)
    expect(Math.max(0, ...watch.scriptMs), timeline).toBeLessThan(100);
    // The observers do see a long task and attribute its script: a 150 ms busy loop in a timer of the page.
    await page.evaluate(() => {
      setTimeout(() => {
        const end = performance.now() + 150;
        while (performance.now() < end);
      });
    });
    await page.waitForFunction(
      () => {
        const w = window as unknown as Watch;
        return (
          w.longTasks.some((d) => d >= 150) && w.scriptMs.some((d) => d >= 150)
        );
      },
      undefined,
      { timeout: 5000 },
    );
    mkdirSync("dist/e2e-screenshots", { recursive: true });
    await page.screenshot({
      path: "dist/e2e-screenshots/demo-trained.png",
      fullPage: true,
    });
  });

  let adapterZip: Record<string, Uint8Array>;
  let tunedLoss: number;

  it("exports the adapter with PEFT's file names, keys and shapes, a merged model folder, and both as GGUF", async () => {
    tunedLoss = (await state((app) => app.metrics.tuned!)).loss;
    adapterZip = await download("#export-adapter");
    expect(Object.keys(adapterZip).sort()).toEqual([
      "adapter_config.json",
      "adapter_model.safetensors",
    ]);
    const config = JSON.parse(strFromU8(adapterZip["adapter_config.json"]!));
    expect(config).toMatchObject({
      peft_type: "LORA",
      r: R,
      lora_alpha: 2 * R,
    });
    const weights = await openSafetensors(
      adapterZip["adapter_model.safetensors"]!,
    );
    const q = "base_model.model.model.layers.0.self_attn.q_proj";
    expect((await weights.info(`${q}.lora_A.weight`)).shape).toEqual([
      R,
      HIDDEN,
    ]);
    expect((await weights.info(`${q}.lora_B.weight`)).shape).toEqual([
      HIDDEN,
      R,
    ]);
    // all-linear: 7 projections in each of 2 layers, an A and a B each.
    expect(weights.names).toHaveLength(2 * 7 * 2);
    expect(
      weights.names.every((n) =>
        /^base_model\.model\.model\.layers\.\d\.(self_attn|mlp)\.\w+_proj\.lora_[AB]\.weight$/.test(
          n,
        ),
      ),
    ).toBe(true);

    const merged = await download("#export-merged");
    expect(Object.keys(merged)).toEqual(
      expect.arrayContaining([
        "config.json",
        "model.safetensors",
        "tokenizer.json",
      ]),
    );
    const mergedWeights = await openSafetensors(merged["model.safetensors"]!);
    expect(mergedWeights.names.some((n) => n.includes("lora"))).toBe(false);
    expect(mergedWeights.has("model.layers.0.self_attn.q_proj.weight")).toBe(
      true,
    );

    // GGUF for llama.cpp: the merged model (f16 unless chosen otherwise) and the adapter alone.
    await settle();
    await page.selectOption("#gguf-dtype", "q8_0");
    const model = await downloadFile("#export-gguf");
    await settle();
    expect(model.name).toBe("webtune-merged-q8_0.gguf");
    expect(await ggufMetadata(model.path)).toMatchObject({
      "general.architecture": "llama",
      "general.type": "model",
      "general.file_type": 7,
    });
    expect(await page.locator("#status").innerText()).toMatch(
      /^Saved webtune-merged-q8_0\.gguf .*llama-cli -m webtune-merged-q8_0\.gguf/,
    );
    const adapter = await downloadFile("#export-adapter-gguf");
    await settle();
    expect(adapter.name).toBe("webtune-adapter.gguf");
    expect(await ggufMetadata(adapter.path)).toMatchObject({
      "general.type": "adapter",
      "adapter.type": "lora",
      "adapter.lora.alpha": 2 * R,
    });
    expect(await page.locator("#status").innerText()).toMatch(
      /--lora webtune-adapter\.gguf/,
    );
    expect(await bannerText()).toBe("");
  });

  it("refuses an incomplete upload and an adapter of another model in the banner, naming the file or module", async () => {
    writeFileSync(join(scratch, "adapter_config.json"), "{}");
    await page.setInputFiles(
      "#import-adapter",
      join(scratch, "adapter_config.json"),
    );
    await settle();
    expect(await bannerText()).toMatch(
      /AdapterUploadError: adapter_config\.json: no adapter_model\.safetensors/,
    );
    // The exported adapter with q_proj's A widened to 64 inputs: a different base model.
    const q = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
    const foreign = join(scratch, "foreign");
    mkdirSync(foreign, { recursive: true });
    writeFileSync(
      join(foreign, "adapter_config.json"),
      adapterZip["adapter_config.json"]!,
    );
    const weights = await openSafetensors(
      adapterZip["adapter_model.safetensors"]!,
    );
    const tensors: Record<
      string,
      { dtype: "F32"; shape: number[]; data: Float32Array }
    > = {};
    for (const name of weights.names) {
      const t = await weights.read(name);
      tensors[name] =
        name === q
          ? { dtype: "F32", shape: [R, 64], data: new Float32Array(R * 64) }
          : { dtype: "F32", shape: t.shape, data: t.data as Float32Array };
    }
    writeFileSync(
      join(foreign, "adapter_model.safetensors"),
      writeSafetensors(tensors),
    );
    await page.setInputFiles("#import-adapter", [
      join(foreign, "adapter_config.json"),
      join(foreign, "adapter_model.safetensors"),
    ]);
    await settle();
    const text = await bannerText();
    expect(text).toMatch(/ShapeError/);
    expect(text).toMatch(
      /layers\.0\.self_attn\.q_proj\.lora_A.*\[4, 64\].*\[4, 32\]/,
    );
  });

  it("imports the exported adapter back, and it scores the same test loss", async () => {
    const zipPath = join(scratch, "webtune-adapter.zip");
    expect(readdirSync(scratch)).toContain("webtune-adapter.zip");
    await page.setInputFiles("#import-adapter", zipPath);
    await settle();
    expect(await bannerText(), logs.join("\n")).toBe("");
    await expect(page.locator("#status").innerText()).resolves.toMatch(
      /Imported an adapter: r 4/,
    );
    await page.click("#evaluate");
    await settle();
    const tuned = await state((app) => app.metrics.tuned as EvaluationResult);
    expect(Math.abs(tuned.loss - tunedLoss) / tunedLoss).toBeLessThan(1e-5);
  });

  it("stops a run on Stop, and after a reload resumes it from the last OPFS checkpoint", async () => {
    await setSettings({ maxSteps: 12, checkpointEvery: 2, evalEvery: 0 });
    await page.click("#train");
    // Stop is enabled once this run has reset the charts: before that they still show the previous run's points.
    await page.waitForSelector("#stop:not([disabled])", { timeout: 120_000 });
    await page.waitForFunction(
      () => (window.webtuneDemo?.charts?.points.train ?? 0) >= 5,
      undefined,
      { timeout: 120_000, polling: 50 },
    );
    await page.click("#stop");
    await settle();
    const stopped = await state((app) => app.lastTrain!);
    expect(stopped.aborted).toBe(true);
    expect(stopped.steps).toBeLessThan(12);

    await page.reload();
    await settle();
    await expect(page.locator("#resume").isVisible()).resolves.toBe(true);
    const offer = await page.locator("#resume-text").innerText();
    const step = Number(/step (\d+)/.exec(offer)?.[1]);
    expect(step % 2).toBe(0);
    expect(step).toBeGreaterThanOrEqual(4);
    expect(offer).toMatch(/pick the same model folder/);
    await pickModelFolder();
    await page.click("#resume-run");
    await settle();
    expect(await bannerText(), logs.join("\n")).toBe("");
    const resumed = await state((app) => ({
      steps: app.events.filter((e) => e.type === "step").map((e) => e.step),
      train: app.lastTrain!,
    }));
    // The chart keeps the steps up to the checkpoint, and training went on from the step after it.
    expect(resumed.steps).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect(resumed.train.steps).toBe(12);
    expect(resumed.train.history[0]!.step).toBe(step + 1);
  });

  it("trains on an NF4 base with gradient checkpointing when the panels say so, and reports the compact weights and peak memory", async () => {
    // A preset, so that loading the model loads its data too (the run before left a custom upload selected).
    await page.selectOption("#preset", "dates");
    await pickModelFolder();
    await page.selectOption("#weight-storage", "nf4");
    await page.click("#load-model");
    await settle();
    expect(await bannerText(), logs.join("\n")).toBe("");
    const info = await page.locator("#model-info").innerText();
    expect(info).toMatch(
      /weights on the GPU\s+[\d.]+ [kM]B \(projections nf4\)/,
    );
    await page.check("#setting-gradientCheckpointing");
    await setSettings({
      maxSteps: 3,
      batch: 4,
      evalEvery: 0,
      checkpointEvery: 0,
      maxLength: 32,
      testRows: 4,
    });
    await page.click("#train");
    await settle();
    expect(await bannerText(), logs.join("\n")).toBe("");
    const steps = await state((app) =>
      app.lastTrain!.history.filter((e) => e.type === "step"),
    );
    expect(steps).toHaveLength(3);
    for (const e of steps) {
      expect(Number.isFinite(e.loss)).toBe(true);
      expect(e.peakGpuBytes).toBeGreaterThan(0);
    }
  });

  it("warns beside the data report when a separate test file repeats training rows, and scores every test row", async () => {
    await page.selectOption("#preset", "custom");
    await pickModelFolder();
    await page.selectOption("#weight-storage", "float32");
    await page.click("#load-model");
    await settle();
    expect(await bannerText(), logs.join("\n")).toBe("");
    const rows = dataset().split("\n");
    const testFile = join(scratch, "overlapping-test.jsonl");
    writeFileSync(
      testFile,
      [
        rows[0],
        JSON.stringify({ prompt: "the yak sat on the", completion: " mat." }),
        rows[5],
        rows[0],
      ].join("\n"),
    );
    await page.setInputFiles("#data-file", join(scratch, "animals.jsonl"));
    await page.setInputFiles("#test-file", testFile);
    await page.click("#load-data");
    await settle();
    expect(await bannerText(), logs.join("\n")).toBe("");
    const warning = page.locator("#data-overlap");
    await expect(warning.isVisible()).resolves.toBe(true);
    expect(await warning.innerText()).toMatch(
      /^Warning: 3 of 4 test rows are also in the training data \(test file lines 1, 3, 4\)\./,
    );
    // The repeated test row is scored twice, as any other tool scores the file.
    expect((await state((app) => app.data!)).sizes.test).toBe(4);
    await page
      .locator("#data-panel")
      .screenshot({ path: join(scratch, "demo-contamination.png") });
    console.log(`screenshot: ${join(scratch, "demo-contamination.png")}`);

    // A split of the one cleaned file cannot overlap: the warning goes away.
    await page.setInputFiles("#test-file", []);
    await page.click("#load-data");
    await settle();
    await expect(warning.isVisible()).resolves.toBe(false);
  });

  it("stops a diverging run in the banner, naming the step and a learning rate to try, and stays usable", async () => {
    await setSettings({
      lr: 10000,
      maxSteps: 6,
      warmup: 0,
      evalEvery: 0,
      checkpointEvery: 0,
      testRows: 2,
    });
    await page.click("#train");
    await settle();
    const text = await bannerText();
    expect(text, logs.join("\n")).toMatch(
      /DivergenceError.*Training diverged at step \d+: the loss is \S+ and the gradient norm \S+\..*run again with "learning rate" at 1000 \(a tenth of 10000\), and a warmup \("warm-up steps" at about 5% of the steps\)/s,
    );
    // Seen from the Train panel: the banner stays in view, and the progress line says the run stopped.
    await page.locator("#train-panel").scrollIntoViewIfNeeded();
    await expect(page.locator("#banner").isVisible()).resolves.toBe(true);
    const top = await page.locator("#banner").boundingBox();
    expect(top!.y).toBeGreaterThanOrEqual(0);
    expect(top!.y).toBeLessThan(100);
    expect(await page.locator("#eta").innerText()).toMatch(
      /^Stopped after step \d+: DivergenceError, explained in the banner above\.$/,
    );
    await page.screenshot({ path: join(scratch, "demo-divergence.png") });
    console.log(`screenshot: ${join(scratch, "demo-divergence.png")}`);
    await expect(page.locator("#train").isDisabled()).resolves.toBe(false);
  });
});
