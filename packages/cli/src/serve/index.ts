/**
 * `webtune serve`: an OpenAI-compatible HTTP server for a model and its LoRA adapters (GET /v1/models,
 * POST /v1/completions, POST /v1/chat/completions), with Prometheus metrics at GET /metrics. The request's
 * `model` picks the adapter; one generation runs at a time on the GPU, the others wait in order.
 */
export { startServer } from "./server.js";
export type { RunningServer, ServerOptions } from "./server.js";
export { BASE_ALIAS, baseModelId } from "./catalog.js";
export type { ServedModel } from "./catalog.js";
export type { RequestLogRecord } from "./trace.js";
export { sendableLength, StreamedText } from "./holdback.js";
export { collectAdapter, serveCommand } from "./command.js";
export type { ServeFlags } from "./command.js";
