/**
 * The demo's classification heads, in headless Chromium on the embedded model: the ner preset's data is read by the
 * worker for a token-classification head (its rows previewed with their entities marked), and its job trains that
 * head (the form says so; the before/after panel tags the prompt's words with the head once trained, and the
 * few-shot button says why it does not prompt; the test metrics show an entity table per type); a change of task
 * or of the subwords tagged reads the data again, which Evaluate then scores through the head; its job file keeps
 * the head's task and loads back, and a sequence-classification head on fortunes shows accuracy, the confusion
 * matrix and each label's probability for the prompt, and its GGUF downloads are off, saying llama.cpp runs no head. Runs are a
 * few steps long.
 * Screenshots go to $WEBTUNE_DEMO_SHOTS when it is set.
 */
import { mkdirSync, mkdtempSync } from "node:fs";
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
const scratch = mkdtempSync(join(tmpdir(), "webtune-demo-heads-"));
const shots = process.env["WEBTUNE_DEMO_SHOTS"] ?? scratch;
const settle = (timeout = 240_000) => demoSettled(page, timeout);
const bannerText = () => pageBanner(page);
const state = <T>(read: (app: NonNullable<Window["webtuneDemo"]>) => T) =>
  demoState(page, read);

/** A run of a few steps: few rows scored, short rows, no checkpoints and no forgetting check. */
async function shortRun(): Promise<void> {
  for (const [name, value] of Object.entries({
    maxSteps: 3,
    testRows: 16,
    valRows: 8,
    evalEvery: 0,
    checkpointEvery: 0,
    maxLength: 48,
  }))
    await page.fill(`#setting-${name}`, String(value));
  await page.uncheck("#setting-checkForgetting");
}

const shoot = (name: string, selector?: string) =>
  selector
    ? page.locator(selector).screenshot({ path: join(shots, name) })
    : page.screenshot({ path: join(shots, name), fullPage: true });

beforeAll(async () => {
  mkdirSync(shots, { recursive: true });
  site = await serveDemo();
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
  await page.goto(site.url);
  await settle();
  await page.selectOption("#preset", "ner");
  await page.click("#load-model");
  await settle();
  expect(await bannerText(), logs.join("\n")).toBe("");
});
afterAll(async () => {
  await browser?.close();
  await site?.close();
});

describe("the demo's classification heads", () => {
  it("trains the ner preset's token-classification head and scores each entity type", async () => {
    expect(await page.inputValue("#setting-task")).toBe("token-cls");
    await expect(
      page.locator("#setting-labelSubwords").isVisible(),
    ).resolves.toBe(true);
    expect(await page.locator("#data-report").innerText()).toMatch(
      // The worker's reading: 4 rows are longer than the preset's 96 tokens; the test file is the preset's.
      /^data\/ner\/train\.jsonl: tagged data with labels O, B-LOC, I-LOC, B-PER, I-PER\. Kept 1500 of 1500 rows, 4 truncated\. Splits: 1350 train, 150 validation, 300 test\.$/,
    );
    expect(await page.locator("#job-line").innerText()).toMatch(
      /^Train runs LoRA r 16 with a token-classification head on data\/ner\/train\.jsonl/,
    );
    // The worker's reading: each previewed row is its words, each entity in brackets with its type after.
    const preview = await state((app) => app.data!.preview.train);
    expect(preview).toHaveLength(5);
    const cells = await page
      .locator("#data-preview tbody tr td:first-child")
      .allInnerTexts();
    expect(
      (await page.locator("#data-preview thead").innerText()).trim(),
    ).toMatch(
      /^sentence, entities marked \(what the head learns\)\twords\ttokens$/,
    );
    for (const [i, row] of preview.entries()) {
      expect(row.tags).toHaveLength(row.words!.length);
      expect(cells[i]!.replace(/\[|\](PER|LOC)/g, "")).toBe(
        row.words!.join(" "),
      );
      expect(cells[i]!.match(/\](PER|LOC)/g) ?? []).toHaveLength(
        row.tags!.filter((t) => t.startsWith("B-")).length,
      );
    }
    expect(cells.join(" ")).toMatch(/\[[^\]]+\](PER|LOC)/);
    await expect(page.locator("#data-stale").isVisible()).resolves.toBe(false);
    // The rows are read for a head no job has trained yet: nothing to score them with.
    await expect(page.locator("#evaluate").isDisabled()).resolves.toBe(true);
    expect(await page.getAttribute("#evaluate", "title")).toMatch(
      /read for a token-classification head, which a job trains: train first/,
    );
    await shoot("ner-data.png", "#data-panel");
    // A head answers with tags: nothing to ask before it is trained, no few-shot prompt, and each says why.
    expect(await page.locator("#compare-note").innerText()).toMatch(
      /trains a head that answers with a tag for each word .* once trained, this panel will tag the prompt's words/,
    );
    await expect(page.locator("#compare").isDisabled()).resolves.toBe(true);
    await expect(page.locator("#compare-sides").isVisible()).resolves.toBe(
      false,
    );
    await expect(page.locator("#few-shot").isDisabled()).resolves.toBe(true);
    expect(await page.getAttribute("#few-shot", "title")).toMatch(
      /answers with labels, not text/,
    );
    await shortRun();
    await shoot("settings-head.png", "#settings-panel");
    await shoot("compare-before-training.png", "#compare-panel");

    await page.click("#train");
    await settle(300_000);
    expect(await bannerText(), logs.join("\n")).toBe("");
    const metrics = await state((app) => app.metrics);
    expect(metrics.base!.rows).toBe(16);
    expect(Object.keys(metrics.tuned!.entities!.perType)).toEqual(
      expect.arrayContaining(["LOC", "PER"]),
    );
    const rows = await page.locator("#entity-table tbody tr").allInnerTexts();
    const score = "\\d\\.\\d{3} → \\d\\.\\d{3}";
    for (const [i, type] of ["LOC", "PER", "all \\(micro\\)"].entries())
      expect(rows[i]).toMatch(
        new RegExp(`^${type}\\t\\d+\\t${score}\\t${score}\\t${score}$`),
      );
    expect(await page.locator("#metrics").innerText()).toMatch(
      /word accuracy\t\d+\.\d %\t\d+\.\d %/,
    );
    // The history keeps the head's task and its entity F1.
    expect(await page.locator("#history tbody tr").first().innerText()).toMatch(
      /\ttoken-cls\t.*\tentity F1 \d+\.\d % → \d+\.\d %\t/,
    );
    // The panel tags the prompt's words through the head: the base model's weights, then the adapter's.
    expect(await page.locator("#compare-note").innerText()).toMatch(
      /^This adapter answers with a tag for each word .* both sides tag the prompt's words with its head/,
    );
    expect(await page.locator("#compare").innerText()).toBe("Tag with both");
    const compared = await state((app) => app.compared!);
    for (const side of ["base", "tuned"] as const) {
      // The prompt's words, each entity in brackets with its type after; then the entities listed.
      const [marked, listed] = compared[side].split("\n");
      expect(marked!.replace(/\[|\](PER|LOC)/g, "")).toBe(
        "And Moses went up from the plains of Moab unto the mountain of Nebo .",
      );
      expect(listed).toMatch(
        /^entities: (none|(PER|LOC) [^·]+( · (PER|LOC) [^·]+)*)$/,
      );
      expect(await page.locator(`#${side}-output`).innerText()).toBe(
        compared[side],
      );
    }
    await shoot("entity-table.png", "#metrics-panel");
    await shoot("compare-tags.png", "#compare-panel");
    await shoot("ner-after-run.png");
  });

  it("reads the data again for every subword tagged, and Evaluate scores it through the trained head", async () => {
    await page.selectOption("#setting-labelSubwords", "all");
    await settle();
    expect(await bannerText(), logs.join("\n")).toBe("");
    expect(await page.locator("#status").innerText()).toMatch(
      /^Read the data again for a token-classification head: \d+ training, \d+ validation and 300 test rows\.$/,
    );
    await expect(page.locator("#data-stale").isVisible()).resolves.toBe(false);
    // Scores of other rows are cleared; Evaluate scores these through the head, base weights and adapter.
    expect(await state((app) => app.metrics)).toEqual({});
    await page.click("#evaluate");
    await settle();
    expect(await bannerText(), logs.join("\n")).toBe("");
    const metrics = await state((app) => app.metrics);
    for (const side of [metrics.base!, metrics.tuned!]) {
      expect(side.rows).toBe(16);
      expect(Object.keys(side.entities!.perType)).toEqual(
        expect.arrayContaining(["LOC", "PER"]),
      );
    }
    expect(await page.locator("#entity-table tbody tr").count()).toBe(3);
  });

  it("downloads the head's task in the job, and loading it back restores it", async () => {
    const [file] = await Promise.all([
      page.waitForEvent("download"),
      page.click("#download-job"),
    ]);
    const path = join(scratch, file.suggestedFilename());
    await file.saveAs(path);
    const job = JSON.parse(await readFile(path, "utf8")) as FineTuneJobSpec;
    expect(job.adapter.task).toBe("token-cls");
    expect(job.data).toMatchObject({
      train: "data/ner/train.jsonl",
      labelSubwords: "all",
    });

    // Another preset is another task: fortunes answers with the language model.
    await page.selectOption("#preset", "fortunes");
    await settle();
    expect(await bannerText(), logs.join("\n")).toBe("");
    expect(await page.inputValue("#setting-task")).toBe("causal-lm");
    await expect(
      page.locator("#setting-labelSubwords").isVisible(),
    ).resolves.toBe(false);
    await expect(page.locator("#compare-note").isVisible()).resolves.toBe(true); // the adapter is still ner's

    await page.setInputFiles("#load-job", path);
    await settle();
    expect(await bannerText(), logs.join("\n")).toBe("");
    expect(await page.inputValue("#preset")).toBe("ner");
    expect(await page.inputValue("#setting-task")).toBe("token-cls");
    expect(await page.inputValue("#setting-labelSubwords")).toBe("all");
  });

  it("trains a sequence-classification head on fortunes, scored by accuracy and a confusion matrix", async () => {
    await page.selectOption("#preset", "fortunes");
    await settle();
    await page.selectOption("#setting-task", "seq-cls");
    await settle();
    // Read again for the head: the text alone, and its label.
    expect(await bannerText(), logs.join("\n")).toBe("");
    expect((await page.locator("#data-preview thead").innerText()).trim()).toBe(
      "text\tlabel (what the head learns)\ttokens",
    );
    const prompt = await page.inputValue("#compare-prompt");
    expect(prompt).not.toMatch(/Label:/);
    expect(prompt).toBe(
      await state((app) => app.data!.preview.test[0]!.prompt),
    );
    await shortRun();
    await page.click("#train");
    await settle(300_000);
    expect(await bannerText(), logs.join("\n")).toBe("");
    const tuned = await state((app) => app.metrics.tuned!);
    expect(tuned.entities).toBeUndefined();
    expect(tuned.labels).toHaveLength(4);
    const table = await page.locator("#metrics").innerText();
    for (const row of ["accuracy", "F1 \\(macro\\)"])
      expect(table).toMatch(new RegExp(`\\n${row}\\t[\\d.]+( %)?\\t[\\d.]+`));
    expect(await page.locator("#confusion table tr").count()).toBe(5);
    expect(await page.locator("#entities").innerText()).toBe("");
    expect(await page.locator("#compare-note").innerText()).toMatch(
      /answers with a label for each text .* both sides classify the prompt .* the confusion matrix/,
    );
    // Each label's probability, most likely first, from each side.
    const compared = await state((app) => app.compared!);
    for (const side of ["base", "tuned"] as const) {
      const lines = compared[side].split("\n");
      expect(lines.map((l) => l.split(" ")[0]).sort()).toEqual(
        [...tuned.labels!].sort(),
      );
      const p = lines.map((l) => Number(/ ([\d.]+) %$/.exec(l)![1]));
      expect(p).toEqual([...p].sort((a, b) => b - a));
      expect(p.reduce((a, b) => a + b)).toBeCloseTo(100, 0);
    }
    await shoot("seq-cls-metrics.png", "#metrics-panel");
    await shoot("seq-cls-compare.png", "#compare-panel");

    // llama.cpp runs no head: both GGUF downloads are off and say why.
    for (const id of ["#export-adapter-gguf", "#export-gguf"]) {
      await expect(page.locator(id).isDisabled()).resolves.toBe(true);
      expect(await page.getAttribute(id, "title")).toMatch(
        /classification head, which llama\.cpp cannot run/,
      );
    }
    await shoot("seq-cls-gguf-off.png", "#export-panel");
  });
});
