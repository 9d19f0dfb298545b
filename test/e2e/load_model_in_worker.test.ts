/**
 * Loading models inside a Web Worker in headless Chromium: from the Files of a picked folder (the golden tiny
 * models: loss against the plain-torch oracle), with a tokenizer for text generation, the embedded demo base model
 * by URL from the served demo folder, and from a hub-shaped HTTP server, where a second load is served by the
 * Cache API with no request.
 */
import { cpSync, mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium, serveDemo } from "../helpers/browser.js";
import { GOLDEN_DIR, readGolden } from "../helpers/golden.js";
import { startHubServer, type HubServer } from "../helpers/hub_server.js";
import { chatModelFolder } from "../helpers/chat_model.js";

let browser: Browser;
let site: { url: string; close: () => Promise<void> };
let hub: HubServer;
const hubRoot = mkdtempSync(join(tmpdir(), "webtune-e2e-hub-"));
let page: Page;
const logs: string[] = [];

beforeAll(async () => {
  site = await serveDemo(fileURLToPath(new URL("./pages", import.meta.url)));
  hub = await startHubServer(hubRoot);
  browser = await launchChromium();
  page = await browser.newPage();
  page.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
  await page.goto(site.url);
  await page.waitForFunction(() => window.trainer !== undefined);
});
afterAll(async () => {
  await page?.evaluate(() => window.trainer.terminate()).catch(() => undefined);
  await browser?.close();
  await hub?.close();
  await site?.close();
});

/** Picks a folder's files in the page's file input and loads them in the worker. */
async function loadFolder(dir: string) {
  await page.setInputFiles(
    "#folder",
    readdirSync(dir).map((f) => join(dir, f)),
  );
  return page.evaluate(async () => {
    const input = document.querySelector<HTMLInputElement>("#folder")!;
    await window.trainer.api.init();
    return window.trainer.api.loadModel(Array.from(input.files!));
  });
}

describe("models in a browser worker", () => {
  for (const name of ["gpt2", "llama3_rope", "qwen2", "gemma3_text"]) {
    it(`${name}: loads from picked Files and matches the oracle's loss`, async () => {
      const dir = `${GOLDEN_DIR}tiny/${name}`;
      const info = await loadFolder(dir);
      expect(info.source, logs.join("\n")).toMatch(/selected file/);
      const golden = readGolden(dir);
      const loss = await page.evaluate(
        (ids) => window.trainer.api.loss(ids),
        golden.input_ids,
      );
      expect(
        Math.abs(loss - golden.loss) / golden.loss,
        `${name}: ${loss} vs ${golden.loss}`,
      ).toBeLessThan(1e-5);
    });
  }

  it("generates text with the folder's tokenizer, reproducibly from a seed, streaming tokens", async () => {
    const info = await loadFolder(chatModelFolder());
    expect(info.hasTokenizer).toBe(true);
    expect(info.hasChatTemplate).toBe(true);
    const run = () =>
      page.evaluate(async () => {
        const streamed: string[] = [];
        const result = await window.trainer.api.generate(
          "Hello there",
          { maxNewTokens: 8, temperature: 0.9, seed: 42 },
          window.comlinkProxy(
            (t: { text: string }) => void streamed.push(t.text),
          ),
        );
        return { result, streamed };
      });
    const a = await run();
    const b = await run();
    expect(a.result.ids.length).toBeGreaterThan(0);
    expect(a.result.ids.length).toBeLessThanOrEqual(8);
    expect(b.result).toEqual(a.result);
    expect(a.streamed.length).toBe(a.result.ids.length);
    expect(a.streamed.at(-1)).toBe(a.result.text);
  });

  it("loads the embedded demo base model from the served demo folder by URL, and matches the oracle", async () => {
    const golden = readGolden(`${GOLDEN_DIR}demo_base`);
    const out = await page.evaluate(
      async ({ url, ids }) => {
        const info = await window.trainer.api.loadModel(url, { cache: false });
        return { info, loss: await window.trainer.api.loss(ids) };
      },
      { url: `${site.url}models/webtune-demo-base`, ids: golden.input_ids },
    );
    expect(out.info.hasTokenizer).toBe(true);
    expect(
      Math.abs(out.loss - golden.loss) / golden.loss,
      `${out.loss} vs ${golden.loss}`,
    ).toBeLessThan(1e-5);
  });

  it("loads from a hub-shaped server, then again from the browser cache with no request", async () => {
    const name = "qwen2";
    cpSync(
      `${GOLDEN_DIR}tiny/${name}`,
      join(hubRoot, "webtune-test", name, "main"),
      { recursive: true },
    );
    const golden = readGolden(`${GOLDEN_DIR}tiny/${name}`);
    const load = () =>
      page.evaluate(
        async ({ hubUrl, ids }) => {
          const info = await window.trainer.api.loadModel(
            "webtune-test/qwen2",
            { hubUrl, cache: "webtune-e2e" },
          );
          return { info, loss: await window.trainer.api.loss(ids) };
        },
        { hubUrl: hub.url, ids: golden.input_ids },
      );
    const first = await load();
    const requests = hub.requests.length;
    expect(requests).toBeGreaterThan(0);
    const second = await load();
    expect(hub.requests.length, "requests on a warm cache").toBe(requests);
    expect(second.loss).toBe(first.loss);
    expect(Math.abs(first.loss - golden.loss) / golden.loss).toBeLessThan(1e-5);
  });
});

describe("training in a browser worker", () => {
  it("trains through comlink with live events, pauses and resumes, saves the adapter by transfer, and reports typed errors", async () => {
    const { source } = await loadFolder(chatModelFolder());
    const rows = ["cat", "dog", "bird", "fox", "cow", "pig"]
      .flatMap((a) =>
        ["mat", "rug", "bed", "box"].map((p) =>
          JSON.stringify({ text: `the ${a} sat on the ${p}.` }),
        ),
      )
      .join("\n");
    const out = await page.evaluate(
      async ({ text, source }) => {
        const api = window.trainer.api;
        const bad = await api
          .loadData('{"text": "ok"}\n{"text": 3}', { source: "bad.jsonl" })
          .catch((e: Error) => e);
        await api.loadData(text, {
          source: "animals.jsonl",
          valSplit: 0.25,
          seed: 1,
        });
        const before = await api.evaluate("val");
        const steps: number[] = [];
        let paused = false;
        const training = api.runJob(
          {
            // The picked folder's model, loaded already: the job runs on it.
            model: { source },
            data: { train: "animals.jsonl", valSplit: 0.25 },
            adapter: { r: 8, alpha: 16 },
            training: { learningRate: 2e-2, batchSize: 6, epochs: 4, seed: 1 },
          },
          { "animals.jsonl": text },
          window.comlinkProxy((e: { type: string; step?: number }) => {
            if (e.type !== "step" || e.step === undefined) return;
            steps.push(e.step);
            if (e.step === 3 && !paused) {
              paused = true;
              void api
                .pause()
                .then(() => setTimeout(() => void api.resume(), 200));
            }
          }),
        );
        const result = await training;
        const after = await api.evaluate("val");
        const files = await api.saveAdapter();
        return {
          badName: bad instanceof Error ? bad.name : "none",
          badMessage: bad instanceof Error ? bad.message : "",
          steps,
          resultSteps: result.train.steps,
          before: before.loss,
          after: after.loss,
          weightsIsBytes:
            files["adapter_model.safetensors"] instanceof Uint8Array,
          weightsLength: files["adapter_model.safetensors"].byteLength,
          config: JSON.parse(files["adapter_config.json"]).peft_type as string,
        };
      },
      { text: rows, source },
    );
    expect(out.badName).toBe("RowFormatError");
    expect(out.badMessage).toMatch(/bad\.jsonl.*line 2/);
    expect(out.steps).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect(out.resultSteps).toBe(12);
    expect(out.after).toBeLessThan(out.before - 0.2);
    expect(out.weightsIsBytes && out.weightsLength > 1000).toBe(true);
    expect(out.config).toBe("LORA");
  });
});
