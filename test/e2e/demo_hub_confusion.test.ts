/**
 * The demo page in headless Chromium, driven through its controls as a person would, on one page: a micro Llama
 * loaded from a hub-shaped HTTP server by typing its URL into the model picker (model info, generation), then a
 * classification file scored on the test split, with the confusion matrix checked cell by cell.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { demoSettled, launchChromium, serveDemo } from "../helpers/browser.js";
import { demoState } from "../helpers/demo_page.js";
import { chatModelFolder } from "../helpers/chat_model.js";
import { startHubServer, type HubServer } from "../helpers/hub_server.js";

let browser: Browser;
let site: { url: string; close: () => Promise<void> };
let hub: HubServer;
let page: Page;
const logs: string[] = [];
const scratch = mkdtempSync(join(tmpdir(), "webtune-demo-hub-e2e-"));
const REPO = "webtune-test/chat-llama";
const SHOTS = "dist/e2e-screenshots";

const settle = () => demoSettled(page, 240_000);

/** Reads the page's DemoApp in the page. */
const state = <T>(read: (app: NonNullable<Window["webtuneDemo"]>) => T) =>
  demoState(page, read);

/** Three classes, six rows each; the micro model's byte-level tokenizer reads any text. */
function classes(): string {
  const words: Record<string, string[]> = {
    pet: ["cat", "dog", "hamster", "parrot", "goldfish", "rabbit"],
    farm: ["cow", "pig", "hen", "goat", "sheep", "horse"],
    wild: ["fox", "owl", "wolf", "bear", "deer", "eagle"],
  };
  return Object.entries(words)
    .flatMap(([label, animals]) =>
      animals.map((a) => JSON.stringify({ text: `the ${a} ran`, label })),
    )
    .join("\n");
}

beforeAll(async () => {
  const hubRoot = join(scratch, "hub");
  chatModelFolder(join(hubRoot, REPO, "main"));
  writeFileSync(join(scratch, "classes.jsonl"), classes());
  mkdirSync(SHOTS, { recursive: true });
  [site, hub, browser] = await Promise.all([
    serveDemo(),
    startHubServer(hubRoot),
    launchChromium(),
  ]);
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
  // The page's ?hub= names the hub that hub ids are fetched from: here the local hub-shaped server.
  await page.goto(`${site.url}?hub=${encodeURIComponent(hub.url)}`);
  expect(await settle(), logs.join("\n")).toBe("");
});
afterAll(async () => {
  await browser?.close();
  await hub?.close();
  await site?.close();
});

describe("the demo page", () => {
  it("loads a model by the hub id typed into the model picker (from the page's ?hub= server), shows its info, and generates with it", async () => {
    // Nothing to import an adapter into yet.
    await expect(page.locator("#import-adapter").isDisabled()).resolves.toBe(
      true,
    );
    // "custom": loading the model loads no preset data with it.
    await page.selectOption("#preset", "custom");
    await page.check("#kind-hub");
    await page.fill("#hub-id", REPO);
    await page.click("#load-model");
    expect(await settle(), logs.join("\n")).toBe("");

    const files = hub.requests.map((r) => r.path);
    for (const file of ["config.json", "model.safetensors", "tokenizer.json"])
      expect(files).toContain(`/${REPO}/resolve/main/${file}`);
    const info = await page.locator("#model-info").innerText();
    expect(info).toContain(`"${REPO}" (revision "main" on ${hub.url})`);
    expect(info).toMatch(/architecture\s+llama/);
    expect(info).toMatch(
      /shape\s+2 layers, hidden 32, 4 heads, vocabulary 393/,
    );
    expect(info).toMatch(/tokenizer\s+yes/);
    await expect(page.locator("#status").innerText()).resolves.toMatch(
      /^Loaded /,
    );
    await expect(page.locator("#import-adapter").isDisabled()).resolves.toBe(
      false,
    );
    await page
      .locator("#model-panel")
      .screenshot({ path: join(SHOTS, "demo-hub-model.png") });

    await page.fill("#compare-prompt", "Hello there");
    await page.click("#compare");
    expect(await settle(), logs.join("\n")).toBe("");
    const base = await page.locator("#base-output").innerText();
    expect(base.length).toBeGreaterThan(0);
    expect(await state((app) => app.compared?.base)).toBe(base);
    await expect(page.locator("#tuned-output").innerText()).resolves.toBe(
      "(no adapter yet)",
    );
    // A new prompt clears the answers to the old one.
    await page.fill("#compare-prompt", "Hello again");
    await expect(page.locator("#base-output").innerText()).resolves.toBe("");
    expect(await state((app) => app.compared)).toBeUndefined();
  });

  it("scores a classification file's test split and shows its confusion matrix: labels on both axes, counts that sum to the scored rows, the diagonal marked", async () => {
    await page.setInputFiles("#data-file", join(scratch, "classes.jsonl"));
    await page.fill("#test-split", "0.3");
    await page.click("#load-data");
    expect(await settle(), logs.join("\n")).toBe("");
    const data = await state((app) => app.data!);
    expect(data.format).toBe("classification");
    expect(data.sizes.test).toBeGreaterThan(0);
    const labels = data.labels!;
    expect([...labels].sort()).toEqual(["farm", "pet", "wild"]);
    // Before scoring, the table lists the metrics a classification task has, and no exact match.
    const names = () =>
      page.$$eval("#metrics tbody tr", (rows) =>
        rows.map((r) => r.firstElementChild!.textContent),
      );
    expect(await names()).toEqual([
      "rows",
      "loss",
      "perplexity",
      "accuracy",
      "precision (macro)",
      "recall (macro)",
      "F1 (macro)",
    ]);

    await page.click("#evaluate");
    expect(await settle(), logs.join("\n")).toBe("");
    const scored = await state((app) => app.metrics.base!);
    expect(scored.rows).toBe(data.sizes.test);
    expect(await names()).not.toContain("exact match");
    const cells = await page.$$eval("#confusion table tr", (rows) =>
      rows.map((r) =>
        Array.from(r.children, (c) => ({
          text: c.textContent,
          diagonal: c.classList.contains("diagonal"),
        })),
      ),
    );
    const [header, ...body] = cells;
    expect(header!.map((c) => c.text)).toEqual(["", ...labels]);
    expect(body.map((row) => row[0]!.text)).toEqual(labels);
    let total = 0;
    body.forEach((row, i) => {
      expect(row).toHaveLength(labels.length + 1);
      row.slice(1).forEach((cell, j) => {
        expect(cell.text).toMatch(/^\d+$/);
        total += Number(cell.text);
        expect(cell.diagonal, `row ${i}, column ${j}`).toBe(i === j);
      });
    });
    expect(total).toBe(scored.rows);
    expect(scored.confusionMatrix).toEqual(
      body.map((row) => row.slice(1).map((c) => Number(c.text))),
    );
    await page
      .locator("#metrics-panel")
      .screenshot({ path: join(SHOTS, "demo-confusion.png") });
  });
});
