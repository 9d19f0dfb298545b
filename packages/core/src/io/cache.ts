/**
 * Download caches: a directory in Node, the Cache API in browsers. Entries are keyed by the full URL
 * (hub URL, model id, revision and file), and a cached file is range-read in place, never loaded whole.
 * Misses that the server confirmed (HTTP 404) are remembered too, so a warm load makes no request at all.
 */
import {
  blobSource,
  importNode,
  isNode,
  nodeFileSource,
  nodeFs,
  type ByteSource,
} from "./byte_source.js";
import { WebtuneError } from "../errors.js";
import { FileNotFoundError } from "../errors.js";

export interface FileCache {
  /** Where entries live, for messages. */
  readonly location: string;
  /** The cached file, "missing" when the server said 404 before, or undefined when nothing is known. */
  get(url: string): Promise<ByteSource | "missing" | undefined>;
  /** Stores a download. An interrupted stream stores nothing. */
  put(url: string, body: ReadableStream<Uint8Array>): Promise<ByteSource>;
  /** Remembers that the server has no such file. */
  putMissing(url: string): Promise<void>;
}

/** `cache` option -> cache: false disables; a string is a directory (Node) or a Cache API name (browser). */
export async function openCache(
  option: boolean | string | undefined,
): Promise<FileCache | null> {
  if (option === false) return null;
  if (isNode()) {
    return nodeDirCache(
      typeof option === "string" ? option : await defaultNodeCacheDir(),
    );
  }
  const storage = (globalThis as { caches?: CacheStorage }).caches;
  if (!storage) {
    warnOnce(
      "webtune: the Cache API is unavailable (it needs a secure context: https or localhost), " +
        "so model files will be downloaded again on every load.",
    );
    return null;
  }
  return browserCache(
    typeof option === "string" ? option : "webtune-hub",
    storage,
  );
}

/** `$XDG_CACHE_HOME/webtune/hub`, or `~/.cache/webtune/hub`. */
export async function defaultNodeCacheDir(): Promise<string> {
  return nodeCacheDir("hub");
}

/** `$XDG_CACHE_HOME/webtune/<name>`, or `~/.cache/webtune/<name>`: one of webtune's caches in Node. */
export async function nodeCacheDir(name: string): Promise<string> {
  const os = await importNode<typeof import("node:os")>("node:os");
  const env = (
    globalThis as { process?: { env?: Record<string, string | undefined> } }
  ).process?.env;
  const base = env?.["XDG_CACHE_HOME"] || `${os.homedir()}/.cache`;
  return `${base}/webtune/${name}`;
}

/**
 * A cache directory. Files land under `<dir>/<protocol>/<host>/<url path>`; downloads are written to a
 * temporary name and renamed, so an interrupted download never leaves a partial file under the real name.
 */
export function nodeDirCache(dir: string): FileCache {
  const root = dir.replace(/\/+$/, "");
  const pathOf = (url: string, kind = "") =>
    [root, kind, ...urlParts(url)].filter(Boolean).join("/");
  return {
    location: root,
    async get(url) {
      const path = pathOf(url);
      try {
        return await nodeFileSource(path, `${url} (cached at ${path})`);
      } catch (error) {
        if (!(error instanceof FileNotFoundError)) throw error;
      }
      const fs = await nodeFs();
      const missing = await fs.stat(pathOf(url, ".no_exist")).then(
        () => true,
        () => false,
      );
      return missing ? "missing" : undefined;
    },
    async put(url, body) {
      const path = pathOf(url);
      await writeAtomically(path, body);
      const fs = await nodeFs();
      await fs.rm(pathOf(url, ".no_exist"), { force: true });
      return nodeFileSource(path, `${url} (cached at ${path})`);
    },
    async putMissing(url) {
      const marker = pathOf(url, ".no_exist");
      const fs = await nodeFs();
      await fs.mkdir(parentOf(marker), { recursive: true });
      await fs.writeFile(marker, "");
    },
  };
}

async function writeAtomically(
  path: string,
  body: ReadableStream<Uint8Array>,
): Promise<void> {
  const fs = await nodeFs();
  await fs.mkdir(parentOf(path), { recursive: true });
  const temp = `${path}.${Date.now().toString(36)}${Math.random().toString(36).slice(2)}.part`;
  const handle = await fs.open(temp, "wx");
  let complete = false;
  try {
    const reader = body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      for (let at = 0; at < value.length;) {
        at += (await handle.write(value, at, value.length - at)).bytesWritten;
      }
    }
    complete = true;
  } finally {
    await handle.close();
    if (!complete) await fs.rm(temp, { force: true });
  }
  await fs.rename(temp, path);
}

/** URL -> path parts: protocol, host, then each path segment, with characters unsafe in file names replaced. */
function urlParts(url: string): string[] {
  const u = new URL(url);
  const parts = [
    u.protocol.replace(/:$/, ""),
    u.host,
    ...u.pathname.split("/").filter(Boolean),
  ];
  return parts.map((p) =>
    p
      .replace(/[^A-Za-z0-9._%-]/g, "_")
      .replace(/^\.+$/, (dots) => "_".repeat(dots.length)),
  );
}

function parentOf(path: string): string {
  return path.slice(0, path.lastIndexOf("/"));
}

/** A Cache API cache. Browsers keep cached bodies on disk, and the Blob of a match reads from there. */
export function browserCache(name: string, storage: CacheStorage): FileCache {
  const missingKey = (url: string) =>
    `${url}${url.includes("?") ? "&" : "?"}webtune-missing=1`;
  const open = () => storage.open(name);
  return {
    location: `Cache API cache "${name}"`,
    async get(url) {
      const cache = await open();
      const hit = await cache.match(url);
      if (hit) return blobSource(await hit.blob(), url);
      return (await cache.match(missingKey(url))) ? "missing" : undefined;
    },
    async put(url, body) {
      const cache = await open();
      // put() stores nothing when the body stream fails, so a broken download is never cached.
      await cache.put(url, new Response(body));
      await cache.delete(missingKey(url));
      const hit = await cache.match(url);
      if (!hit)
        throw new WebtuneError(
          `Cache API cache "${name}" lost ${url} right after storing it; the browser may be out of storage.`,
        );
      return blobSource(await hit.blob(), url);
    },
    async putMissing(url) {
      await (await open()).put(missingKey(url), new Response(""));
    },
  };
}

const warned = new Set<string>();
function warnOnce(message: string): void {
  if (warned.has(message)) return;
  warned.add(message);
  console.warn(message);
}
