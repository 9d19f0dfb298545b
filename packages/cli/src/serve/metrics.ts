/**
 * GET /metrics: Prometheus text from prom-client, in a registry of the server's own (not prom-client's global
 * one), so that two servers in one process, as in tests, count apart. Fed by each request's log record.
 */
import {
  collectDefaultMetrics,
  Counter,
  Gauge,
  Histogram,
  Registry,
} from "prom-client";
import type { GenerationQueue } from "./queue.js";
import type { RequestLogRecord } from "./trace.js";

/** Seconds, from a local request (a few ms) to a long generation on a slow GPU (minutes). */
const SECONDS = [
  0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
];
const TOKENS_PER_SECOND = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];

export class ServerMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<"route" | "model" | "status">;
  private readonly duration: Histogram<"route">;
  private readonly timeToFirstToken: Histogram<"route" | "model">;
  private readonly generatedTokens: Counter<"model">;
  private readonly promptTokens: Counter<"model">;
  private readonly tokensPerSecond: Histogram<"model">;

  constructor(queue: GenerationQueue) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.requests = new Counter({
      name: "webtune_requests_total",
      help: "HTTP requests answered, by route, model and status (499: the client left before the end)",
      labelNames: ["route", "model", "status"],
      registers,
    });
    this.duration = new Histogram({
      name: "webtune_request_duration_seconds",
      help: "From a request's arrival to its response's end",
      labelNames: ["route"],
      buckets: SECONDS,
      registers,
    });
    this.timeToFirstToken = new Histogram({
      name: "webtune_time_to_first_token_seconds",
      help: "From a generation request's arrival (queueing included) to its first generated token",
      labelNames: ["route", "model"],
      buckets: SECONDS,
      registers,
    });
    this.generatedTokens = new Counter({
      name: "webtune_generated_tokens_total",
      help: "Completion tokens generated",
      labelNames: ["model"],
      registers,
    });
    this.promptTokens = new Counter({
      name: "webtune_prompt_tokens_total",
      help: "Prompt tokens of the generations that ran (prefilled on the GPU)",
      labelNames: ["model"],
      registers,
    });
    this.tokensPerSecond = new Histogram({
      name: "webtune_tokens_per_second",
      help: "Each generation's completion tokens per second, from leaving the queue to its last token",
      labelNames: ["model"],
      buckets: TOKENS_PER_SECOND,
      registers,
    });
    new Gauge({
      name: "webtune_queue_depth",
      help: "Generation requests waiting for the GPU",
      registers,
      collect() {
        this.set(queue.waiting);
      },
    });
    new Gauge({
      name: "webtune_requests_in_flight",
      help: "Generations running on the GPU now (one at a time)",
      registers,
      collect() {
        this.set(queue.running);
      },
    });
  }

  /** Counts one finished request. */
  observe(record: RequestLogRecord): void {
    const model = record.model ?? "";
    this.requests.inc({
      route: record.route,
      model,
      status: String(record.status),
    });
    this.duration.observe({ route: record.route }, record.latency_ms / 1000);
    if (record.ttft_ms !== null)
      this.timeToFirstToken.observe(
        { route: record.route, model },
        record.ttft_ms / 1000,
      );
    if (record.prompt_tokens !== null && record.queue_ms !== null)
      this.promptTokens.inc({ model }, record.prompt_tokens);
    if (record.completion_tokens)
      this.generatedTokens.inc({ model }, record.completion_tokens);
    if (record.tokens_per_s !== null)
      this.tokensPerSecond.observe({ model }, record.tokens_per_s);
  }
}
