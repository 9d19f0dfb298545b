/**
 * The browser's sources, in Node: picked files (`File[]`), a directory handle, and the Cache API.
 * Node has File but no FileSystemDirectoryHandle or CacheStorage, so small in-memory stand-ins play them;
 * the HTTP side is still the real local server.
 */
import { rm } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  FileNotFoundError,
  openModelFiles,
  openModelWeights,
} from "../../../packages/core/src/io/index.js";
import { browserCache } from "../../../packages/core/src/io/cache.js";
import { openHttpFiles } from "../../../packages/core/src/io/hub.js";
import { startHubServer, type HubServer } from "../../helpers/hub_server.js";
import { CONFIG, makeHubFixture, WEIGHTS } from "./model_fixture.js";

/** A File as a folder picker gives it: `webkitRelativePath` starts with the picked folder's name. */
function picked(path: string, data: string | Uint8Array<ArrayBuffer>): File {
  const file = new File([data], path.split("/").pop()!);
  Object.defineProperty(file, "webkitRelativePath", { value: path });
  return file;
}

describe("picked files", () => {
  it("a picked folder: paths are relative to it", async () => {
    const files = await openModelFiles([
      picked("tiny/config.json", JSON.stringify(CONFIG)),
      picked("tiny/model.safetensors", WEIGHTS),
      picked("tiny/onnx/model.onnx", "x"),
    ]);
    expect(files.source).toBe("the 3 selected file(s) in tiny");
    expect(await files.json("config.json")).toEqual(CONFIG);
    expect(await files.has("onnx/model.onnx")).toBe(true);
    const weights = await openModelWeights(files);
    expect(Array.from((await weights.read("ln_f.bias")).data)).toEqual([
      1, 2, 3, 4,
    ]);
  });

  it("single files by name, and a clear error for a missing one", async () => {
    const files = await openModelFiles([
      new File([JSON.stringify(CONFIG)], "config.json"),
    ]);
    expect(await files.json("config.json")).toEqual(CONFIG);
    expect(await files.has("tokenizer.json")).toBe(false);
    await expect(files.json("tokenizer.json")).rejects.toThrow(
      FileNotFoundError,
    );
    await expect(files.json("tokenizer.json")).rejects.toThrow(
      '"tokenizer.json" was not found in the 1 selected file(s) (config.json). Check that the model folder is complete',
    );
  });
});

/** The part of FileSystemDirectoryHandle that model loading uses, over nested maps. */
type Tree = { [name: string]: Tree | Uint8Array<ArrayBuffer> | string };
function directoryHandle(name: string, tree: Tree): FileSystemDirectoryHandle {
  const notFound = () =>
    Object.assign(new Error("not found"), { name: "NotFoundError" });
  const mismatch = () =>
    Object.assign(new Error("wrong kind"), { name: "TypeMismatchError" });
  return {
    kind: "directory",
    name,
    async getDirectoryHandle(child: string) {
      const entry = tree[child];
      if (entry === undefined) throw notFound();
      if (typeof entry === "string" || entry instanceof Uint8Array)
        throw mismatch();
      return directoryHandle(child, entry);
    },
    async getFileHandle(child: string) {
      const entry = tree[child];
      if (entry === undefined) throw notFound();
      if (typeof entry !== "string" && !(entry instanceof Uint8Array))
        throw mismatch();
      return {
        kind: "file",
        name: child,
        getFile: async () => new File([entry], child),
      };
    },
  } as unknown as FileSystemDirectoryHandle;
}

describe("directory handle", () => {
  it("reads files and nested files, and reports missing ones", async () => {
    const handle = directoryHandle("tiny", {
      "config.json": JSON.stringify(CONFIG),
      "model.safetensors": WEIGHTS,
      onnx: { "model.onnx": "x" },
    });
    const files = await openModelFiles(handle);
    expect(files.source).toBe('directory "tiny"');
    expect(await files.json("config.json")).toEqual(CONFIG);
    expect(await files.text("onnx/model.onnx")).toBe("x");
    expect(await files.has("onnx")).toBe(false);
    expect(await files.has("config.json/x")).toBe(false);
    const weights = await openModelWeights(files);
    expect((await weights.read("wte.weight")).shape).toEqual([128, 128]);
    await expect(files.bytes("tokenizer.json")).rejects.toThrow(
      '"tokenizer.json" was not found in directory "tiny"',
    );
  });
});

/** CacheStorage over maps: enough of the Cache API for put, match and delete by URL. */
function memoryCacheStorage(): CacheStorage {
  const caches = new Map<
    string,
    Map<string, { body: Uint8Array; status: number }>
  >();
  const open = async (name: string) => {
    const entries =
      caches.get(name) ??
      new Map<string, { body: Uint8Array; status: number }>();
    caches.set(name, entries);
    return {
      async match(key: string) {
        const hit = entries.get(String(key));
        return hit && new Response(hit.body.slice(), { status: hit.status });
      },
      async put(key: string, response: Response) {
        const body = new Uint8Array(await response.arrayBuffer());
        entries.set(String(key), { body, status: response.status });
      },
      async delete(key: string) {
        return entries.delete(String(key));
      },
    } as unknown as Cache;
  };
  return { open } as unknown as CacheStorage;
}

describe("Cache API cache", () => {
  let root: string;
  let hub: HubServer;
  beforeAll(async () => {
    root = await makeHubFixture();
    hub = await startHubServer(root);
  });
  afterAll(async () => {
    await hub.close();
    await rm(root, { recursive: true, force: true });
  });

  it("a second load makes no request, and cached files are range-read from Blobs", async () => {
    const storage = memoryCacheStorage();
    const open = () =>
      openHttpFiles(
        "org/tiny",
        (file) => `${hub.url}/org/tiny/resolve/main/${file}`,
        {
          token: undefined,
          signal: undefined,
          onProgress: undefined,
          hint: "check",
          source: "org/tiny",
        },
        browserCache("webtune-test", storage),
      );
    const load = async () => {
      const files = open();
      const weights = await openModelWeights(files);
      return {
        config: await files.json("config.json"),
        generation: await files.has("generation_config.json"),
        bias: Array.from((await weights.read("ln_f.bias")).data),
      };
    };
    const first = await load();
    expect(hub.requests.length).toBeGreaterThan(0);
    hub.requests.length = 0;
    expect(await load()).toEqual(first);
    expect(first).toEqual({
      config: CONFIG,
      generation: false,
      bias: [1, 2, 3, 4],
    });
    expect(hub.requests).toEqual([]);
  });
});
