/**
 * What the server answers, by route and method: OpenAI's /v1/models, /v1/completions and /v1/chat/completions,
 * Prometheus' /metrics and a /health check.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { ServedModel } from "./catalog.js";
import {
  CHAT_COMPLETIONS,
  COMPLETIONS,
  handleGeneration,
  type ServingState,
} from "./endpoints.js";
import { sendJson } from "./http_io.js";
import type { ServerMetrics } from "./metrics.js";
import type { RequestTrace } from "./trace.js";

/** Answers one request; `id` is the {id} of /v1/models/{id}. */
export type Handler = (
  req: IncomingMessage,
  res: ServerResponse,
  trace: RequestTrace,
  id: string,
) => Promise<void> | void;

/** Handlers by route, then by method. */
export type Routes = Record<string, Partial<Record<string, Handler>>>;

export function routeTable(
  state: ServingState,
  metrics: ServerMetrics,
): Routes {
  const { catalog } = state;
  const created = Math.floor(Date.now() / 1000);
  const modelObject = (m: ServedModel) => ({
    id: m.id,
    object: "model",
    created,
    owned_by: "webtune",
  });
  return {
    "/v1/models": {
      GET: (_req, res) =>
        sendJson(res, 200, {
          object: "list",
          data: catalog.models.map(modelObject),
        }),
    },
    "/v1/models/{id}": {
      GET: (_req, res, _trace, id) =>
        sendJson(res, 200, modelObject(catalog.require(id))),
    },
    "/v1/completions": {
      POST: (req, res, trace) =>
        handleGeneration(state, COMPLETIONS, req, res, trace),
    },
    "/v1/chat/completions": {
      POST: (req, res, trace) =>
        handleGeneration(state, CHAT_COMPLETIONS, req, res, trace),
    },
    "/metrics": {
      GET: async (_req, res) => {
        const text = await metrics.registry.metrics();
        res.writeHead(200, { "Content-Type": metrics.registry.contentType });
        res.end(text);
      },
    },
    "/health": { GET: (_req, res) => sendJson(res, 200, { status: "ok" }) },
  };
}

/** The request's path without its query, and without a trailing slash. */
export function pathOf(url: string | undefined): string {
  const path = new URL(url ?? "/", "http://localhost").pathname;
  return path.length > 1 ? path.replace(/\/+$/, "") : path;
}

/** The route of a path: itself, or /v1/models/{id} with the id. */
export function matchRoute(path: string): { route: string; id: string } {
  const model = /^\/v1\/models\/([^/]+)$/.exec(path);
  if (model)
    return { route: "/v1/models/{id}", id: decodeURIComponent(model[1]!) };
  return { route: path, id: "" };
}
