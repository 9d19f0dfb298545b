/**
 * `webtune serve` under load: the server in-process on Dawn, driven by OpenAI's client over HTTP. Measures each
 * request's latency and time to first token (as the client sees them: from sending the request to its end, and
 * to the first streamed text) and the aggregate completion tokens per second, for one request at a time and for
 * N concurrent requests (which the server runs one after another on the GPU). Greedy, streamed, with usage.
 * The baseline, in the same run: core's generate called directly, without the server (its TTFT is its first
 * onToken). Prints a table, then the results as one JSON line.
 *
 * Usage: npm run build --silent && node --import tsx benchmarks/serve.ts [--model <src>] [--tokens 32]
 *        [--concurrency 16] [--runs 8]
 */
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import Table from "cli-table3";
import OpenAI from "openai";
import {
  disposeRuntime,
  gpuInfo,
  initRuntime,
  loadModel,
  type PretrainedModel,
} from "@webtune/core";
import {
  startServer,
  type RequestLogRecord,
} from "../packages/cli/src/serve/index.js";

const EMBEDDED = fileURLToPath(
  new URL("../demo/public/models/webtune-demo-base", import.meta.url),
);
// The embedded model continues this greedily past 48 tokens without an end-of-text, so every request makes
// exactly --tokens tokens.
const PROMPT = "The word";

const opts = new Command("bench-serve")
  .description("latency, time to first token and tokens/s of webtune serve")
  .option("--model <src>", "hub id, URL or local folder", EMBEDDED)
  .option("--tokens <n>", "new tokens per request", "32")
  .option("--concurrency <n>", "requests sent together", "16")
  .option("--runs <n>", "requests one at a time", "8")
  .parse()
  .opts<{ model: string; tokens: string; concurrency: string; runs: string }>();
const TOKENS = Number(opts.tokens);

interface Sample {
  latencyMs: number;
  ttftMs: number;
  tokens: number;
}

/** One streamed greedy completion, timed from the client. */
async function timedRequest(client: OpenAI, model: string): Promise<Sample> {
  const start = performance.now();
  let ttftMs = NaN;
  let tokens = 0;
  const stream = await client.completions.create({
    model,
    prompt: PROMPT,
    max_tokens: TOKENS,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  for await (const chunk of stream) {
    if (Number.isNaN(ttftMs) && chunk.choices[0]?.text)
      ttftMs = performance.now() - start;
    if (chunk.usage) tokens = chunk.usage.completion_tokens;
  }
  return { latencyMs: performance.now() - start, ttftMs, tokens };
}

/** The baseline: the same generation by core directly. */
async function timedGenerate(model: PretrainedModel): Promise<Sample> {
  const start = performance.now();
  let ttftMs = NaN;
  const result = await model.generate(PROMPT, {
    maxNewTokens: TOKENS,
    temperature: 0,
    onToken: () => {
      if (Number.isNaN(ttftMs)) ttftMs = performance.now() - start;
    },
  });
  return {
    latencyMs: performance.now() - start,
    ttftMs,
    tokens: result.ids.length,
  };
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(
    sorted.length - 1,
    Math.ceil((p / 100) * sorted.length) - 1,
  );
  return sorted[Math.max(0, rank)]!;
}

interface ScenarioResult {
  scenario: string;
  requests: number;
  latencyP50Ms: number;
  latencyP95Ms: number;
  ttftP50Ms: number;
  ttftP95Ms: number;
  /** All completion tokens over the scenario's wall time. */
  aggregateTokensPerSecond: number;
  /** The server's own median of each generation's tokens/s (queue excluded); null for the baseline. */
  serverTokensPerSecondP50: number | null;
}

function summarise(
  scenario: string,
  samples: Sample[],
  wallMs: number,
  records: RequestLogRecord[],
): ScenarioResult {
  const round = (x: number) => Math.round(x * 10) / 10;
  const tokens = samples.reduce((n, s) => n + s.tokens, 0);
  return {
    scenario,
    requests: samples.length,
    latencyP50Ms: round(
      percentile(
        samples.map((s) => s.latencyMs),
        50,
      ),
    ),
    latencyP95Ms: round(
      percentile(
        samples.map((s) => s.latencyMs),
        95,
      ),
    ),
    ttftP50Ms: round(
      percentile(
        samples.map((s) => s.ttftMs),
        50,
      ),
    ),
    ttftP95Ms: round(
      percentile(
        samples.map((s) => s.ttftMs),
        95,
      ),
    ),
    aggregateTokensPerSecond: round(tokens / (wallMs / 1000)),
    serverTokensPerSecondP50:
      records.length > 0
        ? round(
            percentile(
              records.map((r) => r.tokens_per_s ?? 0),
              50,
            ),
          )
        : null,
  };
}

await initRuntime();
const model = await loadModel(opts.model);
const records: RequestLogRecord[] = [];
const server = await startServer({
  model,
  port: 0,
  log: (r) => {
    if (r.route === "/v1/completions") records.push(r);
  },
});
const client = new OpenAI({
  baseURL: `${server.url}/v1`,
  apiKey: "unused",
  maxRetries: 0,
});
const baseId = server.models[0]!.id;
try {
  // Compiles the shaders and fills the buffer pool, as a server's first request does.
  await timedRequest(client, baseId);
  const results: ScenarioResult[] = [];

  const direct: Sample[] = [];
  let start = performance.now();
  for (let i = 0; i < Number(opts.runs); i++)
    direct.push(await timedGenerate(model));
  results.push(
    summarise(
      "baseline: core generate, no server",
      direct,
      performance.now() - start,
      [],
    ),
  );

  records.length = 0;
  const sequential: Sample[] = [];
  start = performance.now();
  for (let i = 0; i < Number(opts.runs); i++)
    sequential.push(await timedRequest(client, baseId));
  results.push(
    summarise(
      "1 at a time",
      sequential,
      performance.now() - start,
      records.splice(0),
    ),
  );

  start = performance.now();
  const concurrent = await Promise.all(
    Array.from({ length: Number(opts.concurrency) }, () =>
      timedRequest(client, baseId),
    ),
  );
  results.push(
    summarise(
      `${opts.concurrency} concurrent`,
      concurrent,
      performance.now() - start,
      records.splice(0),
    ),
  );

  const gpu = gpuInfo();
  const device = `${gpu?.description ?? "unknown"}${gpu?.software ? " (software)" : ""}`;
  const table = new Table({
    head: [
      "scenario",
      "requests",
      "latency p50 ms",
      "latency p95 ms",
      "TTFT p50 ms",
      "TTFT p95 ms",
      "aggregate tok/s",
      "server tok/s p50",
    ],
  });
  for (const r of results)
    table.push([
      r.scenario,
      r.requests,
      r.latencyP50Ms,
      r.latencyP95Ms,
      r.ttftP50Ms,
      r.ttftP95Ms,
      r.aggregateTokensPerSecond,
      r.serverTokensPerSecondP50 ?? "-",
    ]);
  console.log(
    `webtune serve: ${baseId}, ${TOKENS} new tokens per request, greedy, streamed; device: ${device}`,
  );
  console.log(table.toString());
  console.log(
    JSON.stringify({
      model: baseId,
      tokens: TOKENS,
      device,
      node: process.version,
      results,
    }),
  );
} finally {
  await server.close();
  model.dispose();
  disposeRuntime();
}
