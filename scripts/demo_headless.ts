/**
 * `npm run demo:headless`: drives the demo page in headless Chromium as a person would. It loads the embedded
 * default model and a preset task, trains for a fixed number of steps, evaluates base and adapter on the test
 * split, compares one prompt, saves a screenshot, and prints the metrics with a JSON summary as the last line.
 */
import { mkdirSync } from "node:fs";
import { Command, InvalidArgumentError } from "commander";
import type { Page } from "playwright-core";
import type { EvaluationResult } from "@webtune/core";
import { demoSettled, launchChromium, serveDemo } from "./browser.js";

const positive = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0)
    throw new InvalidArgumentError("must be a whole number above 0.");
  return n;
};

const options = new Command("demo:headless")
  .description("train the demo page's preset task in headless Chromium")
  .option("--task <name>", "dates | fortunes | kjv", "dates")
  .option("--steps <n>", "optimizer steps (default: the preset's)", positive)
  .option("--batch <n>", "examples per step (default: the preset's)", positive)
  .option("--test-rows <n>", "test rows to score", positive, 50)
  .option("--val-rows <n>", "rows each validation check scores", positive, 32)
  .option("--out <dir>", "where the screenshot goes", "runs/demo-headless")
  .parse()
  .opts<{
    task: string;
    steps?: number;
    batch?: number;
    testRows: number;
    valRows: number;
    out: string;
  }>();

if (!["dates", "fortunes", "kjv"].includes(options.task)) {
  console.error(
    `--task must be dates, fortunes or kjv, got "${options.task}".`,
  );
  process.exit(2);
}

/** Echoes the page's status line and progress to stderr while waiting. */
function echoProgress(page: Page): () => void {
  let last = "";
  const timer = setInterval(() => {
    void page
      .evaluate(() =>
        [
          document.querySelector("#status")?.textContent,
          document.querySelector("#eta")?.textContent,
        ].join("  "),
      )
      .then((line) => {
        if (line !== last)
          process.stderr.write(
            `  [${Math.round(performance.now() / 1000)} s] ${(last = line)}\n`,
          );
      })
      .catch(() => undefined);
  }, 5000);
  return () => clearInterval(timer);
}

/** Waits until the page is idle again and fails with the banner's text if an error was shown. */
async function settle(page: Page, timeout: number): Promise<void> {
  const stop = echoProgress(page);
  try {
    await waitIdle(page, timeout);
  } finally {
    stop();
  }
}

async function waitIdle(page: Page, timeout: number): Promise<void> {
  const banner = await demoSettled(page, timeout);
  if (banner) throw new Error(`the demo showed: ${banner}`);
}

async function run(): Promise<void> {
  const started = performance.now();
  const site = await serveDemo();
  // WebGPU on lavapipe when it is installed (about ten times faster than SwiftShader); WEBTUNE_WEBGPU=swiftshader
  // asks for SwiftShader.
  const browser = await launchChromium([], { lavapipe: true });
  try {
    const page = await browser.newPage({
      viewport: { width: 1280, height: 900 },
    });
    page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
    await page.goto(site.url);
    await settle(page, 120_000);
    const device = await page.locator("#device").innerText();
    await page.selectOption("#preset", options.task);
    await page.click("#load-model");
    await settle(page, 300_000);
    // The preset's recipe as it is, unless the flags change it; fewer test rows, and no checkpoints.
    if (options.steps !== undefined) {
      await page.fill("#setting-maxSteps", String(options.steps));
      await page.fill("#setting-warmup", String(Math.ceil(options.steps / 10)));
      await page.fill(
        "#setting-evalEvery",
        String(Math.max(1, Math.round(options.steps / 4))),
      );
    }
    if (options.batch !== undefined)
      await page.fill("#setting-batch", String(options.batch));
    await page.fill("#setting-testRows", String(options.testRows));
    await page.fill("#setting-valRows", String(options.valRows));
    await page.fill("#setting-checkpointEvery", "0");
    await page.dispatchEvent("#settings", "input");
    process.stderr.write(`${await page.locator("#job-line").innerText()}\n`);
    await page.click("#train");
    await settle(page, 3_600_000);
    mkdirSync(options.out, { recursive: true });
    const screenshot = `${options.out}/screenshot.png`;
    await page.screenshot({ path: screenshot, fullPage: true });
    const state = await page.evaluate(() => {
      const app = window.webtuneDemo!;
      return {
        metrics: app.metrics,
        compared: app.compared,
        events: app.events,
        prompt:
          document.querySelector<HTMLTextAreaElement>("#compare-prompt")!.value,
      };
    });
    report(state, device, screenshot, (performance.now() - started) / 1000);
  } finally {
    await browser.close();
    await site.close();
  }
}

function report(
  state: {
    metrics: { base?: EvaluationResult; tuned?: EvaluationResult };
    compared?: { base: string; tuned: string };
    events: { type: string; loss: number }[];
    prompt: string;
  },
  device: string,
  screenshot: string,
  seconds: number,
): void {
  const { base, tuned } = state.metrics;
  if (!base || !tuned) throw new Error("the demo reported no test metrics");
  const steps = state.events.filter((e) => e.type === "step");
  const evals = state.events.filter((e) => e.type === "eval");
  const names = ["loss", "perplexity", "accuracy", "f1", "exactMatch"] as const;
  const out: Record<string, number | string> = {
    task: options.task,
    steps: steps.length,
    train_loss_first: steps[0]!.loss,
    train_loss_last: steps.at(-1)!.loss,
    val_loss_last: evals.at(-1)?.loss ?? NaN,
  };
  console.log(`device\n${device}\n`);
  console.log(
    `metric            base        adapter   (${tuned.rows} test rows)`,
  );
  for (const name of names) {
    if (base[name] === undefined || tuned[name] === undefined) continue;
    console.log(
      `${name.padEnd(16)}  ${base[name]!.toFixed(4).padStart(10)}  ${tuned[name]!.toFixed(4).padStart(10)}`,
    );
    out[`test_base_${name}`] = base[name]!;
    out[`test_${name}`] = tuned[name]!;
  }
  console.log(
    `\nprompt   ${JSON.stringify(state.prompt)}\nbase     ${JSON.stringify(state.compared?.base)}\nadapter  ${JSON.stringify(state.compared?.tuned)}`,
  );
  console.log(`screenshot ${screenshot}\n`);
  out["seconds"] = Math.round(seconds);
  console.log(JSON.stringify(out));
}

run().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : String(error));
  process.exit(1);
});
