/**
 * A real HTTP server on 127.0.0.1 with the Hugging Face hub's URL shape, for io tests (no mocked fetch).
 * `GET|HEAD /{id}/resolve/{revision}/{file}` serves `{root}/{id}/{revision}/{file}`, with Range support.
 * Every request is recorded, so tests can prove that a warm cache makes none.
 */
import {
  createServer,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import { readFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { join } from "node:path";

export interface RecordedRequest {
  method: string;
  /** Path and query as requested, still percent-encoded. */
  path: string;
  range: string | undefined;
  authorization: string | undefined;
}

export interface HubServer {
  /** `http://127.0.0.1:<port>`: pass it as `hubUrl`. */
  readonly url: string;
  readonly requests: RecordedRequest[];
  /** Answer these statuses for these paths (as requested, e.g. `/org/m/resolve/main/config.json`). */
  readonly statuses: Map<string, number>;
  /** Serve these paths with their full Content-Length but cut the connection after this many body bytes. */
  readonly truncate: Map<string, number>;
  /** Answer Range requests with the whole file (200), like servers without range support. */
  ignoreRange: boolean;
  /** Answer HEAD with 405, so clients must find the size another way. */
  refuseHead: boolean;
  /** Redirect `*.safetensors` to `/cdn/...`, as the hub does for LFS files. */
  redirectLargeFiles: boolean;
  /** When set, requests need `Authorization: Bearer <token>`: 401 without, 403 with another. */
  requiredToken: string | undefined;
  close(): Promise<void>;
}

/** Starts the server on a free port. Call `close()` in afterAll. */
export async function startHubServer(root: string): Promise<HubServer> {
  const hub: HubServer = {
    url: "",
    requests: [],
    statuses: new Map(),
    truncate: new Map(),
    ignoreRange: false,
    refuseHead: false,
    redirectLargeFiles: false,
    requiredToken: undefined,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = createServer((req, res) => {
    handle(hub, root, req, res).catch((error: unknown) => {
      res.statusCode = 500;
      res.end(String(error));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  (hub as { url: string }).url = `http://127.0.0.1:${port}`;
  return hub;
}

async function handle(
  hub: HubServer,
  root: string,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const path = req.url ?? "/";
  // The real hub answers cross-origin requests, which is how pages on any origin fetch models.
  res.setHeader("Access-Control-Allow-Origin", "*");
  res.setHeader(
    "Access-Control-Expose-Headers",
    "Content-Length, Content-Range, Accept-Ranges",
  );
  if (req.method === "OPTIONS") {
    res
      .writeHead(204, {
        "Access-Control-Allow-Methods": "GET, HEAD",
        "Access-Control-Allow-Headers": "Range, Authorization",
      })
      .end();
    return;
  }
  hub.requests.push({
    method: req.method ?? "GET",
    path,
    range: req.headers.range,
    authorization: req.headers.authorization,
  });
  const status = hub.statuses.get(path);
  if (status !== undefined) return end(res, status);
  if (hub.requiredToken !== undefined) {
    const auth = req.headers.authorization;
    if (auth === undefined) return end(res, 401);
    if (auth !== `Bearer ${hub.requiredToken}`) return end(res, 403);
  }
  const file = filePath(root, path);
  if (file === undefined) return end(res, 404);
  if (
    hub.redirectLargeFiles &&
    file.endsWith(".safetensors") &&
    !path.startsWith("/cdn/")
  ) {
    res.writeHead(302, { Location: `/cdn${path}` }).end();
    return;
  }
  const data = await readFile(file).catch(() => undefined);
  if (data === undefined) return end(res, 404);
  if (req.method === "HEAD") {
    if (hub.refuseHead) return end(res, 405);
    res
      .writeHead(200, {
        "Content-Length": data.length,
        "Accept-Ranges": "bytes",
      })
      .end();
    return;
  }
  sendBody(hub, req, res, path, data);
}

function sendBody(
  hub: HubServer,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  data: Buffer,
): void {
  const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
  if (range && !hub.ignoreRange) {
    const start = Number(range[1]);
    const end =
      range[2] === ""
        ? data.length - 1
        : Math.min(Number(range[2]), data.length - 1);
    if (start >= data.length || end < start) {
      res.writeHead(416, { "Content-Range": `bytes */${data.length}` }).end();
      return;
    }
    res.writeHead(206, {
      "Content-Length": end - start + 1,
      "Content-Range": `bytes ${start}-${end}/${data.length}`,
    });
    res.end(data.subarray(start, end + 1));
    return;
  }
  res.writeHead(200, {
    "Content-Length": data.length,
    "Accept-Ranges": "bytes",
  });
  const cut = hub.truncate.get(path);
  if (cut === undefined) {
    res.end(data);
    return;
  }
  res.write(data.subarray(0, cut), () => res.destroy());
}

/** `/{id}/resolve/{revision}/{file}` or `/cdn/...` -> `{root}/{id}/{revision}/{file}`. */
function filePath(root: string, path: string): string | undefined {
  const parts = path
    .split("?")[0]!
    .replace(/^\/cdn\//, "/")
    .split("/")
    .filter(Boolean);
  const at = parts.indexOf("resolve");
  if (at < 1 || at + 2 >= parts.length) return undefined;
  const decoded = parts.map(decodeURIComponent);
  if (decoded.some((p) => p === ".." || p.includes("\\"))) return undefined;
  return join(
    root,
    ...decoded.slice(0, at),
    decoded[at + 1]!,
    ...decoded.slice(at + 2),
  );
}

function end(res: ServerResponse, status: number): void {
  res.writeHead(status, { "Content-Type": "text/plain" }).end(`HTTP ${status}`);
}

/** A URL on which nothing listens: a port that was free a moment ago. */
export async function closedPortUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}
