/**
 * Where model files come from: the Hugging Face hub, any base URL, a local directory, or files picked in
 * a browser. This is the only file in webtune that calls `fetch`; downloads, caching and progress all
 * happen here (like transformers.js's `hub.js`).
 */
import { ConfigError, FileNotFoundError, NetworkError } from "../errors.js";
import {
  bytesSource,
  checkRange,
  importNode,
  isNode,
  nodeFs,
  type ByteSource,
} from "./byte_source.js";
import { openCache, type FileCache } from "./cache.js";
import {
  interrupted,
  notFound,
  rangeIgnored,
  statusError,
  withProgress,
  describeCause,
  type DownloadProgress,
  type HttpContext,
} from "./http_util.js";
import {
  DirectoryFiles,
  DirectoryHandleFiles,
  FileListFiles,
} from "./local_files.js";
import {
  checkFileName,
  ModelFilesBase,
  type FolderKind,
  type ModelFiles,
} from "./model_files.js";

export type { DownloadProgress } from "./http_util.js";

/**
 * Where a model (or an adapter) lives:
 * - `"https://..."`: a base URL under which the model's files sit by their Hugging Face names;
 * - in Node, a directory: any path that exists, and any string that cannot be a hub id, such as one starting
 *   with `./`, `../`, `/` or `~` (so a missing folder is reported as one, with no request to the hub);
 * - otherwise a hub id, `"org/name"` or `"name"`;
 * - files picked in a browser (a folder picked with `webkitdirectory`, or the files themselves);
 * - a directory handle from `showDirectoryPicker()`.
 */
export type ModelSource =
  string | readonly File[] | FileList | FileSystemDirectoryHandle;

export interface LoadOptions {
  /** Branch, tag or commit on the hub. Default `"main"`. */
  revision?: string;
  /** The hub's address; tests point it at a local server. Default `"https://huggingface.co"`. */
  hubUrl?: string;
  /** Hugging Face access token, for gated or private models. Node also reads `HF_TOKEN` for hub ids. */
  token?: string;
  /**
   * Cache downloads so a second load makes no request. `true` (default): `~/.cache/webtune/hub` in Node,
   * Cache API cache `"webtune-hub"` in browsers; a string names the directory (Node) or cache (browser);
   * `false` downloads every time and range-reads large files over HTTP.
   */
  cache?: boolean | string;
  /** Called as bytes arrive: monotonic per file, ending with `loadedBytes === totalBytes`. */
  onProgress?: (event: DownloadProgress) => void;
  /** Aborts pending requests; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * Opens a model folder from any source. `kind` names the folder in messages ("no adapter folder ./runs/x").
 *
 * @example
 * ```ts
 * const files = await openModelFiles("openai-community/gpt2", {
 *   onProgress: ({ file, loadedBytes, totalBytes }) => console.log(file, loadedBytes, totalBytes),
 * });
 * const config = await files.json("config.json");
 * const weights = await openModelWeights(files);
 * ```
 */
export async function openModelFiles(
  source: ModelSource,
  options: LoadOptions = {},
  kind: FolderKind = "model",
): Promise<ModelFiles> {
  if (typeof source !== "string") {
    if ("getFileHandle" in source)
      return new DirectoryHandleFiles(source, kind);
    return new FileListFiles(Array.from(source), kind);
  }
  if (/^https?:\/\//i.test(source)) {
    const base = source.endsWith("/") ? source : `${source}/`;
    const hint = "check the URL and the file name";
    return openHttpFiles(
      source,
      (file) => base + encodePath(file),
      httpContext(options, hint, source, options.token),
      await openCache(options.cache),
    );
  }
  if (isNode()) return openNodeString(source, options, kind);
  if (isLocalPath(source)) {
    throw new ConfigError(
      `The ${kind} source "${source}" is a local path, which only Node can read. In a browser, pick the folder ` +
        `(a FileList or a directory handle) or serve it over http(s).`,
    );
  }
  if (isHubId(source))
    return openHubFiles(source, options, await openCache(options.cache), kind);
  throw new ConfigError(
    `${kind === "adapter" ? "Adapter" : "Model"} source "${source}" is not an http(s) URL or a hub id such as ` +
      `"openai-community/gpt2". Check the spelling.`,
  );
}

/** In Node a string is a folder when something exists there or it cannot be a hub id, and otherwise a hub id. */
async function openNodeString(
  source: string,
  options: LoadOptions,
  kind: FolderKind,
): Promise<ModelFiles> {
  const local = await localPath(source);
  if (local.kind === "directory") return new DirectoryFiles(local.path, kind);
  if (local.kind === "file") {
    const holds = kind === "adapter" ? "adapter_config.json" : "config.json";
    throw new ConfigError(
      `"${source}" is a file, not ${kind === "adapter" ? "an adapter" : "a model"} folder: pass the folder that ` +
        `holds ${holds} and the weights.`,
    );
  }
  if (!isHubId(source)) {
    const either = isLocalPath(source)
      ? ""
      : ` It is not an http(s) URL or a hub id ("org/name") either.`;
    throw new ConfigError(
      `There is no ${kind} folder ${source} (nothing at ${local.absolute}). Check the path.${either}`,
    );
  }
  const cache = await openCache(options.cache);
  const hub = openHubFiles(source, options, cache, kind);
  return new HubIdFiles(hub, source, local.absolute, kind);
}

function openHubFiles(
  id: string,
  options: LoadOptions,
  cache: FileCache | null,
  kind: FolderKind,
): ModelFiles {
  const revision = options.revision ?? "main";
  const hubUrl = (options.hubUrl ?? "https://huggingface.co").replace(
    /\/+$/,
    "",
  );
  const prefix = `${hubUrl}/${id}/resolve/${encodeURIComponent(revision)}/`;
  const source = `"${id}" (revision "${revision}" on ${hubUrl})`;
  const hint = `check the ${kind} id "${id}", the revision "${revision}" and the file name`;
  // The environment's token goes to the hub only, never to arbitrary base URLs.
  const token = options.token ?? envToken();
  return openHttpFiles(
    source,
    (file) => prefix + encodePath(file),
    httpContext(options, hint, source, token),
    cache,
  );
}

/** Model files over HTTP with a given cache (null: none). Exported for tests of the browser cache. */
export function openHttpFiles(
  source: string,
  urlOf: (file: string) => string,
  context: HttpContext,
  cache: FileCache | null,
): ModelFiles {
  return new HttpFiles(source, urlOf, context, cache);
}

function httpContext(
  options: LoadOptions,
  hint: string,
  source: string,
  token: string | undefined,
): HttpContext {
  return {
    token,
    signal: options.signal,
    onProgress: options.onProgress,
    hint,
    source,
  };
}

class HttpFiles extends ModelFilesBase {
  constructor(
    readonly source: string,
    private readonly urlOf: (file: string) => string,
    private readonly context: HttpContext,
    private readonly cache: FileCache | null,
  ) {
    super();
  }

  async has(file: string): Promise<boolean> {
    checkFileName(file, this.source);
    const url = this.urlOf(file);
    const cached = await this.cache?.get(url);
    if (cached !== undefined) return cached !== "missing";
    const response = await send(
      url,
      file,
      this.context,
      { method: "HEAD" },
      [404],
    );
    if (response.status !== 404) return true;
    await this.cache?.putMissing(url);
    return false;
  }

  /** Cached: downloads once, then range-reads the cached copy. Uncached: range-reads over HTTP. */
  async bytes(file: string): Promise<ByteSource> {
    checkFileName(file, this.source);
    if (!this.cache)
      return openHttpSource(this.urlOf(file), file, this.context);
    return this.download(file);
  }

  override async text(file: string): Promise<string> {
    checkFileName(file, this.source);
    const source = await this.download(file);
    return new TextDecoder().decode(await source.read(0, source.size));
  }

  /** The whole file: from the cache, or downloaded (into the cache, or into memory without one). */
  private async download(file: string): Promise<ByteSource> {
    const url = this.urlOf(file);
    const cached = await this.cache?.get(url);
    if (cached === "missing") throw notFound(url, file, this.context);
    if (cached) {
      this.context.onProgress?.({
        file,
        loadedBytes: cached.size,
        totalBytes: cached.size,
      });
      return cached;
    }
    const response = await send(url, file, this.context, { method: "GET" });
    const body = withProgress(response, file, this.context.onProgress);
    try {
      if (this.cache) return await this.cache.put(url, body);
      return bytesSource(
        new Uint8Array(await new Response(body).arrayBuffer()),
        url,
      );
    } catch (cause) {
      throw interrupted(url, cause, this.context);
    }
  }
}

/**
 * Random access to a file over HTTP with `Range` requests: only the bytes read are downloaded.
 * The server must answer ranges with 206 Partial Content; one that ignores `Range` is refused clearly.
 *
 * @example
 * ```ts
 * const st = await openSafetensors(await httpByteSource("https://example.com/gpt2/model.safetensors"));
 * ```
 */
export async function httpByteSource(
  url: string,
  options: Pick<LoadOptions, "token" | "signal" | "onProgress"> = {},
): Promise<ByteSource> {
  const file = decodeURIComponent(
    new URL(url).pathname.split("/").pop() ?? url,
  );
  return openHttpSource(
    url,
    file,
    httpContext(options, "check the URL", url, options.token),
  );
}

async function openHttpSource(
  url: string,
  file: string,
  context: HttpContext,
): Promise<ByteSource> {
  const size = await remoteSize(url, file, context);
  let loaded = 0;
  const source: ByteSource = {
    name: url,
    size,
    read: async (start, end) => {
      checkRange(source, start, end);
      if (start === end) return new Uint8Array(0);
      const headers = { Range: `bytes=${start}-${end - 1}` };
      const response = await send(url, file, context, {
        method: "GET",
        headers,
      });
      if (response.status !== 206) {
        await response.body?.cancel();
        throw rangeIgnored(url, response.status);
      }
      const bytes = await response.arrayBuffer().then(
        (b) => new Uint8Array(b),
        (cause: unknown) => Promise.reject(interrupted(url, cause, context)),
      );
      if (bytes.length !== end - start) {
        throw new NetworkError(
          `${url} sent ${bytes.length} bytes for the range [${start}, ${end}), expected ${end - start}. ` +
            `The file may have changed on the server; load it again.`,
          { url, status: response.status },
        );
      }
      loaded = Math.min(size, loaded + bytes.length);
      context.onProgress?.({ file, loadedBytes: loaded, totalBytes: size });
      return bytes;
    },
  };
  return source;
}

/** Size from HEAD's Content-Length, else from the Content-Range of a one-byte range request. */
async function remoteSize(
  url: string,
  file: string,
  context: HttpContext,
): Promise<number> {
  const head = await send(url, file, context, { method: "HEAD" }, [405, 501]);
  const length = head.headers.get("content-length");
  if (head.ok && length !== null && !head.headers.has("content-encoding"))
    return Number(length);
  const probe = await send(
    url,
    file,
    context,
    { method: "GET", headers: { Range: "bytes=0-0" } },
    [416],
  );
  await probe.body?.cancel();
  if (probe.status === 200) throw rangeIgnored(url, 200);
  const total = /\/(\d+)\s*$/.exec(
    probe.headers.get("content-range") ?? "",
  )?.[1];
  if (total === undefined) {
    throw new NetworkError(
      `${url} does not say how large it is (no Content-Length on HEAD, no Content-Range on a range request), ` +
        `so it cannot be read in pieces. Enable the cache (cache: true) to download it whole.`,
      { url, status: probe.status },
    );
  }
  return Number(total);
}

/** fetch, with failures turned into typed errors that name the URL. `allowed` statuses are returned. */
async function send(
  url: string,
  file: string,
  context: HttpContext,
  init: { method: "GET" | "HEAD"; headers?: Record<string, string> },
  allowed: number[] = [],
): Promise<Response> {
  const headers: Record<string, string> = { ...init.headers };
  if (context.token) headers["Authorization"] = `Bearer ${context.token}`;
  let response: Response;
  try {
    response = await fetch(url, {
      method: init.method,
      headers,
      signal: context.signal,
    });
  } catch (cause) {
    if (context.signal?.aborted) throw context.signal.reason;
    throw new NetworkError(
      `Could not reach ${url} (${describeCause(cause)}). Check the network connection, and that the server is up ` +
        `and the address is right.`,
      { url, cause },
    );
  }
  if (response.ok || allowed.includes(response.status)) return response;
  await response.body?.cancel().catch(() => {});
  throw statusError(url, file, response, context);
}

function encodePath(file: string): string {
  return file.split("/").map(encodeURIComponent).join("/");
}

/** `name` or `org/name`, with the characters the hub allows. */
function isHubId(value: string): boolean {
  const parts = value.split("/");
  return (
    parts.length <= 2 &&
    parts.every(
      (p) => /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(p) && !p.includes(".."),
    )
  );
}

/** Strings that read as a path (`./x`, `../x`, `/x`, `~/x`, `.`, `..`, Windows' `C:\x`); none is a hub id. */
function isLocalPath(value: string): boolean {
  return /^(~|\.{1,2}(?=$|[\\/])|[\\/]|[A-Za-z]:[\\/])/.test(value);
}

/** What is at a path in Node: the path to read (`~` expanded to the home directory), its absolute form for messages. */
async function localPath(source: string): Promise<{
  path: string;
  absolute: string;
  kind: "directory" | "file" | "none";
}> {
  const { resolve } = await importNode<typeof import("node:path")>("node:path");
  const { homedir } = await importNode<typeof import("node:os")>("node:os");
  const home = /^~(?=$|[\\/])/;
  const path = home.test(source) ? source.replace(home, homedir()) : source;
  const fs = await nodeFs();
  const stats = await fs.stat(path).catch(() => undefined);
  const kind = !stats ? "none" : stats.isDirectory() ? "directory" : "file";
  return { path, absolute: resolve(path), kind };
}

/**
 * A hub id in Node that is not also a local folder. Until the hub has served a file, its failures (no such
 * repository, refused, unreachable) also say that no folder of that name exists here: "runs/x" may have been
 * meant as a path. Once the hub has served one, its errors pass through as they are.
 */
class HubIdFiles implements ModelFiles {
  private served = false;

  constructor(
    private readonly hub: ModelFiles,
    private readonly id: string,
    private readonly path: string,
    private readonly kind: FolderKind,
  ) {}

  get source(): string {
    return this.hub.source;
  }

  has(file: string): Promise<boolean> {
    return this.request(
      () => this.hub.has(file),
      (found) => found,
    );
  }

  text(file: string): Promise<string> {
    return this.request(() => this.hub.text(file));
  }

  json<T = unknown>(file: string): Promise<T> {
    return this.request(() => this.hub.json<T>(file));
  }

  bytes(file: string): Promise<ByteSource> {
    return this.request(() => this.hub.bytes(file));
  }

  private async request<T>(
    send: () => Promise<T>,
    served: (result: T) => boolean = () => true,
  ): Promise<T> {
    try {
      const result = await send();
      this.served ||= served(result);
      return result;
    } catch (error) {
      throw this.served ? error : this.notLocal(error);
    }
  }

  /** The hub's error, same class and fields, with the missing local folder said first. */
  private notLocal(error: unknown): unknown {
    const lead = `There is no ${this.kind} folder "${this.id}" here (nothing at ${this.path}), so it was taken for a hub id, and`;
    const tail = "If you meant a local folder, check the path.";
    if (error instanceof FileNotFoundError) {
      const { source, file } = error;
      return new FileNotFoundError(
        `${lead} the hub has no such repository (or not this file in it): ${error.message} ${tail}`,
        { source, file, cause: error },
      );
    }
    if (!(error instanceof NetworkError)) return error;
    const { url, status } = error;
    const reason =
      status === undefined
        ? "the hub could not be reached"
        : status === 401 || status === 403
          ? "the hub refused it (no such repository, or a gated or private one)"
          : "the hub could not serve it";
    return new NetworkError(`${lead} ${reason}: ${error.message} ${tail}`, {
      url,
      status,
      cause: error,
    });
  }
}

function envToken(): string | undefined {
  const env = (
    globalThis as { process?: { env?: Record<string, string | undefined> } }
  ).process?.env;
  return env?.["HF_TOKEN"] || undefined;
}
