/**
 * The demo's job, in headless Chromium on the embedded model: a preset is one choice (data, settings and prompt
 * change together), Stop answers at once while the base model is scored and leaves nothing half-done, Skip
 * scoring goes straight to training, a job file downloads and loads back, and full fine-tuning runs from the form.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FineTuneJobSpec } from "@webtune/core";
import { demoSettled, launchChromium, serveDemo } from "../helpers/browser.js";
import { bannerText as pageBanner, demoState } from "../helpers/demo_page.js";

let browser: Browser;
let site: { url: string; close: () => Promise<void> };
let page: Page;
const logs: string[] = [];
const scratch = mkdtempSync(join(tmpdir(), "webtune-demo-job-"));
const settle = (timeout = 240_000) => demoSettled(page, timeout);

const bannerText = () => pageBanner(page);

/** Reads the page's DemoApp in the page. */
const state = <T>(read: (app: NonNullable<Window["webtuneDemo"]>) => T) =>
  demoState(page, read);

/**
 * Clicks `button` the moment the status line starts with `status` (from inside the page, so no scoring can end
 * first), and returns how long the page took to say something else, and to go idle, in ms.
 */
async function clickWhen(
  status: string,
  button: string,
  timeout?: number,
): Promise<{ answeredMs: number; idleMs: number }> {
  await page.evaluate(
    ([status, button]) => {
      const line = document.querySelector("#status")!;
      const w = window as unknown as { clicked?: number; answered?: number };
      w.clicked = w.answered = undefined;
      new MutationObserver((_, observer) => {
        const text = line.textContent ?? "";
        if (w.clicked === undefined && text.startsWith(status)) {
          w.clicked = performance.now();
          document.querySelector<HTMLButtonElement>(button)!.click();
        } else if (w.clicked !== undefined && !text.startsWith(status)) {
          w.answered = performance.now();
          observer.disconnect();
        }
      }).observe(line, { childList: true, characterData: true, subtree: true });
    },
    [status, button] as const,
  );
  await page.click("#train");
  await page.waitForFunction(
    () => (window as unknown as { answered?: number }).answered !== undefined,
    undefined,
    { timeout: 120_000, polling: 20 },
  );
  await settle(timeout);
  return page.evaluate(() => {
    const w = window as unknown as { clicked: number; answered: number };
    return {
      answeredMs: w.answered - w.clicked,
      idleMs: performance.now() - w.clicked,
    };
  });
}

beforeAll(async () => {
  site = await serveDemo();
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
  await page.goto(site.url);
  await settle();
  await page.selectOption("#preset", "dates");
  await page.click("#load-model");
  await settle();
  expect(await bannerText(), logs.join("\n")).toBe("");
});
afterAll(async () => {
  await browser?.close();
  await site?.close();
});

describe("the demo's job", () => {
  it("is one choice per preset: the data, the settings and the prompt change together", async () => {
    expect(await page.locator("#job-line").innerText()).toMatch(
      /on data\/dates\/train\.jsonl \(2700 training rows\), 200 steps of batch 16/,
    );
    await page.fill("#setting-lr", "0.01");
    await page.selectOption("#preset", "fortunes");
    await settle();
    expect(await bannerText(), logs.join("\n")).toBe("");
    expect(await state((app) => app.data!.format)).toBe("classification");
    expect(await page.inputValue("#setting-lr")).toBe("0.003");
    expect(await page.inputValue("#setting-evalEvery")).toBe("20");
    expect(await page.inputValue("#compare-prompt")).toMatch(/\nLabel:$/);
    expect(await page.locator("#job-line").innerText()).toMatch(
      /on data\/fortunes\/train\.jsonl/,
    );
    await page.selectOption("#preset", "dates");
    await settle();
    expect(await page.inputValue("#compare-prompt")).toMatch(
      /^Date: \d{4}-\d\d-\d\d\nWritten out:$/,
    );
  });

  it("stops at once while the base model is scored, and keeps nothing half-done", async () => {
    for (const [name, value] of Object.entries({
      maxSteps: 20,
      testRows: 200,
      checkpointEvery: 0,
      evalEvery: 0,
    }))
      await page.fill(`#setting-${name}`, String(value));
    const timing = await clickWhen("Scoring the base model", "#stop");
    expect(timing.answeredMs).toBeLessThan(1000);
    // The scoring stops after the forward pass in flight (16 rows at most): seconds on SwiftShader, where scoring
    // all 200 rows takes minutes.
    expect(timing.idleMs).toBeLessThan(30_000);
    expect(await bannerText(), logs.join("\n")).toBe("");
    const after = await state((app) => ({
      train: app.lastTrain!,
      metrics: app.metrics,
      steps: app.events.filter((e) => e.type === "step").length,
    }));
    expect(after.train.aborted).toBe(true);
    expect(after.train.steps).toBe(0);
    expect(after.steps).toBe(0);
    expect(after.metrics).toEqual({});
    expect(await page.locator("#eta").innerText()).toMatch(
      /^Stopped after step 0/,
    );
    await expect(page.locator("#train").isDisabled()).resolves.toBe(false);
  });

  it("skips the base scoring on request and trains", async () => {
    await page.fill("#setting-maxSteps", "2");
    await page.fill("#setting-testRows", "16");
    // Dates take 16 tokens; the reference text is cut to 48, so that its forgetting check takes seconds, not minutes.
    await page.fill("#setting-maxLength", "48");
    // The preset checks forgetting too: the 197 reference rows are scored before and after (minutes on SwiftShader).
    const timing = await clickWhen(
      "Scoring the base model",
      "#skip-scoring",
      480_000,
    );
    expect(timing.answeredMs).toBeLessThan(1000);
    expect(await bannerText(), logs.join("\n")).toBe("");
    const after = await state((app) => ({
      train: app.lastTrain!,
      metrics: app.metrics,
    }));
    expect(after.train.aborted).toBe(false);
    expect(after.train.steps).toBe(2);
    expect(after.metrics.base).toBeUndefined();
    expect(after.metrics.tuned!.rows).toBe(16);
    // The preset checks forgetting: the general text's loss beside the task's metric, and both on one chart.
    const forgetting = after.metrics.forgetting!;
    expect(forgetting.tuned_loss - forgetting.base_loss).toBeCloseTo(
      forgetting.loss_delta,
      9,
    );
    expect(await page.locator("#metrics").innerText()).toContain(
      `general-text loss (${forgetting.loss_delta >= 0 ? "+" : ""}${forgetting.loss_delta.toFixed(2)})\t${forgetting.base_loss.toFixed(4)}\t${forgetting.tuned_loss.toFixed(4)}`,
    );
    await expect(page.locator("#tradeoff").isVisible()).resolves.toBe(true);
    expect(await page.locator("#tradeoff canvas").count()).toBe(1);
  });

  it("downloads the page's job, and loading it back restores the settings and the data", async () => {
    await page.fill("#setting-lr", "0.005");
    await page.fill("#setting-replay", "0.2");
    const [file] = await Promise.all([
      page.waitForEvent("download"),
      page.click("#download-job"),
    ]);
    const path = join(scratch, file.suggestedFilename());
    await file.saveAs(path);
    const job = JSON.parse(await readFile(path, "utf8")) as FineTuneJobSpec;
    expect(job.webtuneJob).toBe(1);
    expect(job.model.source).toMatch(/\/models\/webtune-demo-base\/$/);
    expect(job.data).toMatchObject({
      train: "data/dates/train.jsonl",
      test: "data/dates/test.jsonl",
      // The template the last run derived from this data.
      promptTemplate: "Date: {input}\nWritten out:",
    });
    expect(job.training).toMatchObject({ learningRate: 0.005, maxSteps: 2 });
    // Replay names the demo's general text; the forgetting check its held-out reference.
    expect(job.replay).toEqual({ source: "data/replay.jsonl", ratio: 0.2 });
    expect(job.evaluation.reference).toBe("data/reference.jsonl");

    await page.selectOption("#preset", "fortunes");
    await settle();
    await page.setInputFiles("#load-job", path);
    await settle();
    expect(await bannerText(), logs.join("\n")).toBe("");
    expect(await page.inputValue("#preset")).toBe("dates");
    expect(await state((app) => app.data!.format)).toBe("instruction");
    expect(await page.inputValue("#setting-lr")).toBe("0.005");
    expect(await page.inputValue("#setting-maxSteps")).toBe("2");
    expect(await page.inputValue("#setting-replay")).toBe("0.2");
    expect(await page.isChecked("#setting-checkForgetting")).toBe(true);
    await page.fill("#setting-replay", "0");

    // A job file with a bad field is named in the banner, and the form is left as it was.
    const bad = join(scratch, "bad-job.json");
    writeFileSync(
      bad,
      JSON.stringify({ ...job, training: { ...job.training, lerningRate: 1 } }),
    );
    await page.setInputFiles("#load-job", bad);
    await settle();
    expect(await bannerText()).toMatch(
      /job\.training\.lerningRate is not a field of job\.training: did you mean learningRate\?/,
    );
    expect(await page.inputValue("#setting-lr")).toBe("0.005");

    // A multitask job is the CLI's: refused by name, the form left as it was.
    const multitask = join(scratch, "multitask-job.json");
    writeFileSync(
      multitask,
      JSON.stringify({
        ...job,
        data: { ...job.data, train: ["a.jsonl", "b.jsonl"], test: null },
        training: { ...job.training, learningRate: 0.02 },
      }),
    );
    await page.setInputFiles("#load-job", multitask);
    await settle();
    expect(await bannerText()).toMatch(
      /multitask-job\.json trains on several files at once \(a\.jsonl, b\.jsonl\): this page trains one file into a new adapter\. Run it with webtune train --job/,
    );
    expect(await page.inputValue("#setting-lr")).toBe("0.005");
  });

  it("fine-tunes every weight when the form says so, and offers the tuned model", async () => {
    await page.locator("#banner-close").click();
    await page.selectOption("#setting-method", "full");
    await page.fill("#setting-testRows", "4");
    await page.uncheck("#setting-checkForgetting");
    await page.fill("#setting-lr", "0.0005");
    await page.click("#train");
    await settle();
    expect(await bannerText(), logs.join("\n")).toBe("");
    const after = await state((app) => ({
      train: app.lastTrain!,
      fullyTuned: app.fullyTuned,
      hasAdapter: app.hasAdapter,
      job: app.lastJob!,
    }));
    expect(after.job.method).toBe("full");
    expect(after.train.steps).toBe(2);
    expect(after.fullyTuned).toBe(true);
    expect(after.hasAdapter).toBe(false);
    await expect(page.locator("#export-adapter").isDisabled()).resolves.toBe(
      true,
    );
    expect(await page.locator("#export-merged").innerText()).toBe(
      "Download tuned model",
    );
    expect(await page.locator("#base-output").innerText()).toMatch(
      /full fine-tuning changed the base weights/,
    );
    await page.screenshot({
      path: join(scratch, "full-fine-tune.png"),
      fullPage: true,
    });
  });
});
