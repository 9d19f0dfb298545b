/**
 * The demo's retrieval baseline and its monitor panel, in headless Chromium on the embedded model and the dates
 * preset (WebGPU on lavapipe where it is installed, for time; else SwiftShader): the panel says why it waits, a
 * short run's adapter is read against the retrieval baseline, new rows are checked for drift (the shipped shifted
 * dates, and dates in longer prompts, whose length is flagged), the adapter is retrained on them with replay and
 * shown before → after, and a file of another format is named in the banner.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { demoSettled, launchChromium, serveDemo } from "../helpers/browser.js";
import { bannerText as pageBanner, demoState } from "../helpers/demo_page.js";

const SHIFTED = "demo/public/data/dates/shifted.jsonl";
/** Rows each scoring pass reads: the test split's, the new file's and the held-out ones. */
const ROWS = 8;

let browser: Browser;
let site: { url: string; close: () => Promise<void> };
let page: Page;
const logs: string[] = [];
const scratch = mkdtempSync(join(tmpdir(), "webtune-demo-monitor-"));
const settle = () => demoSettled(page, 240_000);
const bannerText = () => pageBanner(page);
const state = <T>(read: (app: NonNullable<Window["webtuneDemo"]>) => T) =>
  demoState(page, read);
const title = (id: string) => page.getAttribute(`#${id}`, "title");

/** The shipped shifted dates with a longer prompt (still the adapter's template): their inputs are longer. */
function longerPrompts(): string {
  const path = join(scratch, "longer.jsonl");
  const rows = readFileSync(SHIFTED, "utf8")
    .trim()
    .split("\n")
    .slice(0, ROWS)
    .map((line) => {
      const row = JSON.parse(line) as { prompt: string; completion: string };
      const date = /\d{4}-\d\d-\d\d/.exec(row.prompt)![0];
      return JSON.stringify({
        ...row,
        prompt: `Date: ${date}, as the parish register of the old church wrote it down\nWritten out:`,
      });
    });
  writeFileSync(path, rows.join("\n"));
  return path;
}

beforeAll(async () => {
  site = await serveDemo();
  browser = await launchChromium([], { lavapipe: true });
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

describe("the demo's monitor panel", () => {
  it("waits for an adapter's row scores, and says why", async () => {
    expect(await page.isDisabled("#check-drift")).toBe(true);
    expect(await title("check-drift")).toMatch(/^Train first/);
    expect(await page.locator("#monitor-why").innerText()).toMatch(
      /^Train first/,
    );
    expect(await page.isDisabled("#retrain")).toBe(true);
    expect(await title("retrain")).toMatch(/^Train first/);
    // The baselines need no adapter: the base model is prompted.
    expect(await page.isDisabled("#retrieval")).toBe(false);
  });

  it("trains, then scores the retrieval baseline on the same test rows", async () => {
    for (const [name, value] of Object.entries({
      maxSteps: 3,
      warmup: 1,
      evalEvery: 0,
      testRows: ROWS,
      valRows: ROWS,
      checkpointEvery: 0,
      maxLength: 48,
    }))
      await page.fill(`#setting-${name}`, String(value));
    await page.uncheck("#setting-checkForgetting");
    await page.uncheck("#setting-scoreBase");
    await page.click("#train");
    await settle();
    expect(await bannerText(), logs.join("\n")).toBe("");
    const tuned = await state((app) => app.metrics.tuned!);
    expect(tuned.rowScores).toHaveLength(ROWS);
    expect(tuned.rowScores!.every((r) => r.inputTokens > 0)).toBe(true);

    await page.fill("#retrieval-k", "2");
    await page.click("#retrieval");
    await settle();
    expect(await bannerText(), logs.join("\n")).toBe("");
    const box = await page.locator("#retrieval-result").innerText();
    expect(box).toMatch(/retrieval baseline\s+base, k 2 by bm25/);
    expect(box).toMatch(new RegExp(`rows\\s+${ROWS}\\n`));
    expect(box).toMatch(/exact match\s+\d+\.\d %/);
    expect(box).toMatch(/prompt tokens\s+\d+ mean, \d+ max/);
    expect(box).toContain("the nearest last");
  });

  it("checks new rows for drift, and flags inputs that grew", async () => {
    expect(await title("check-drift")).toBe("Pick a file of new rows first.");
    await page.setInputFiles("#monitor-file", SHIFTED);
    expect(await page.isDisabled("#check-drift")).toBe(false);
    expect(await title("retrain")).toMatch(/^Check this file for drift first/);
    await page.fill("#monitor-rows", String(ROWS));
    await page.click("#check-drift");
    await settle();
    expect(await bannerText(), logs.join("\n")).toBe("");
    const table = await page.locator("#drift-table").innerText();
    expect(table).toMatch(new RegExp(`rows\\s+${ROWS}\\s+${ROWS}`));
    expect(table).toMatch(/exact match\s+[\d.]+ %\s+[\d.]+ %\s+.*95 % CI/);
    // The shifted dates are as long as the task's: the lengths did not move.
    expect(table).toMatch(/input tokens, mean\s+20\.0\s+20\.0\s+KS D = 0\.000/);
    await expect(page.locator("#drift-flags").count()).resolves.toBe(1);
    expect(await page.isDisabled("#retrain")).toBe(false);

    await page.setInputFiles("#monitor-file", longerPrompts());
    await page.click("#check-drift");
    await settle();
    expect(await bannerText(), logs.join("\n")).toBe("");
    const flags = page.locator("#drift-flags.warning");
    expect(await flags.innerText()).toMatch(
      /Drift detected:\s+input length moved: mean 20\.0 → \d+\.\d tokens/,
    );
    const moved = page.locator("#drift-table tr.moved", {
      hasText: "input tokens, mean",
    });
    expect(await moved.count()).toBe(1);
    const drift = await state((app) => app.drift!.result.report);
    expect(drift.inputLength.ks.d).toBe(1);
    expect(drift.driftFlagged).toBe(true);
  });

  it("retrains on the new rows with replay, and shows before → after", async () => {
    await page.fill("#retrain-steps", "2");
    await page.click("#retrain");
    await settle();
    expect(await bannerText(), logs.join("\n")).toBe("");
    const outcome = await state((app) => app.retrained!);
    expect(outcome.train.steps).toBe(2);
    expect(outcome.job.replay).toEqual({
      source: "data/dates/train.jsonl",
      ratio: 0.25,
    });
    expect(outcome.job.adapter.continueFrom).not.toBeNull();
    // 8 new rows: 30 % held out (2 rows), the rest trained on, less the validation share.
    expect(outcome.sizes.heldOut).toBe(2);
    expect(outcome.heldOut!.rows).toBe(2);
    expect(outcome.test!.rows).toBe(ROWS);
    const table = await page.locator("#retrain-table").innerText();
    expect(table).toMatch(/held-out new rows: exact match\s+2\s/);
    expect(table).toMatch(new RegExp(`test rows: exact match\\s+${ROWS}\\s`));
    // The retrained adapter's test scores are the adapter column's now, and the next check's baseline.
    const tuned = await state((app) => app.metrics.tuned!);
    expect(tuned).toEqual(outcome.test!.after);
    expect(tuned.rowScores).toHaveLength(ROWS);
    expect(await title("retrain")).toMatch(/^The adapter changed since/);
    expect(await page.isDisabled("#check-drift")).toBe(false);
  });

  it("names a file of another format in the banner", async () => {
    const path = join(scratch, "fortunes.jsonl");
    writeFileSync(
      path,
      JSON.stringify({ text: "You will eat well today.", label: "food" }),
    );
    await page.setInputFiles("#monitor-file", path);
    await page.click("#check-drift");
    await settle();
    expect(await bannerText()).toMatch(
      /RowFormatError: fortunes\.jsonl, line 1: field "prompt" is missing.*fortunes\.jsonl must be instruction data like the loaded data \(\{"prompt", "completion"\} rows\)/s,
    );
    expect(await page.locator("#drift-result").innerText()).toBe("");
  });
});
