/**
 * The fused LoRA kernels in a dedicated Web Worker in headless Chromium (WebGPU on SwiftShader), against the CPU
 * reference computed in the same worker. Tolerance: 1e-4 relative, as in the Node tests.
 */
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium, serveDemo } from "../helpers/browser.js";

let browser: Browser;
let site: { url: string; close: () => Promise<void> };

beforeAll(async () => {
  site = await serveDemo();
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await site?.close();
});

describe("kernels in a browser worker", () => {
  it("match the CPU reference on the browser WebGPU adapter", async () => {
    const page = await browser.newPage();
    const logs: string[] = [];
    page.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
    const workers: string[] = [];
    page.on("worker", (w) => workers.push(w.url()));
    await page.goto(site.url);
    await page.waitForFunction(
      () => window.webtuneCheck !== undefined,
      undefined,
      { timeout: 240_000 },
    );
    const report = await page.evaluate(() => window.webtuneCheck!);
    expect("error" in report ? report.error : "", logs.join("\n")).toBe("");
    if ("error" in report) return;
    // The page imports only types from @webtune/core: the kernels ran in the worker it started.
    expect(workers).toHaveLength(1);
    expect(report.info.backend).toBe("webgpu");
    expect(report.results.length).toBeGreaterThanOrEqual(2);
    for (const r of report.results) {
      for (const [name, err] of Object.entries(r.errors)) {
        expect(
          err,
          `${JSON.stringify(r.case)} ${name} on ${report.info.description}`,
        ).toBeLessThanOrEqual(1e-4);
      }
    }
    // The page shows the same verdicts a person would read.
    await expect(page.locator("#check tbody tr .pass").count()).resolves.toBe(
      report.results.length,
    );
    console.log(
      `browser adapter: ${report.info.vendor} / ${report.info.architecture}; features: ${report.info.features.join(", ")}`,
    );
    await page.close();
  });
});
