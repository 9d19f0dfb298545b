/**
 * Model files from a real local HTTP server with the hub's URL shape: hub ids, base URLs, revisions,
 * progress, the cache (proven by counting requests), and errors that name the URL and say what to do.
 */
import { readdir, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import {
  afterAll,
  afterEach,
  beforeAll,
  beforeEach,
  describe,
  expect,
  it,
} from "vitest";
import { ConfigError, FormatError } from "../../../packages/core/src/errors.js";
import {
  FileNotFoundError,
  NetworkError,
  openModelFiles,
  openModelWeights,
  openSafetensors,
  type DownloadProgress,
  type LoadOptions,
} from "../../../packages/core/src/io/index.js";
import {
  closedPortUrl,
  startHubServer,
  type HubServer,
} from "../../helpers/hub_server.js";
import { CONFIG, makeHubFixture, WEIGHTS } from "./model_fixture.js";

let root: string;
let hub: HubServer;
let cacheDir: string;
let cacheCount = 0;

beforeAll(async () => {
  root = await makeHubFixture();
  hub = await startHubServer(join(root));
});
afterAll(async () => {
  await hub.close();
  await rm(root, { recursive: true, force: true });
});
beforeEach(() => {
  hub.requests.length = 0;
  cacheDir = join(root, `.cache-${cacheCount++}`);
});
afterEach(() => {
  hub.statuses.clear();
  hub.truncate.clear();
  hub.requiredToken = undefined;
});

const hubOptions = (extra: LoadOptions = {}): LoadOptions => ({
  hubUrl: hub.url,
  cache: false,
  ...extra,
});
const paths = () => hub.requests.map((r) => r.path);

describe("sources", () => {
  it("a hub id resolves files under {hubUrl}/{id}/resolve/{revision}/", async () => {
    const files = await openModelFiles("org/tiny", hubOptions());
    expect(await files.json("config.json")).toEqual(CONFIG);
    expect(paths()).toEqual(["/org/tiny/resolve/main/config.json"]);
    expect(await files.has("tokenizer.json")).toBe(true);
    expect(await files.has("generation_config.json")).toBe(false);
    const single = await openModelFiles("gpt2", hubOptions());
    expect(await single.json("config.json")).toMatchObject({ n_layer: 12 });
  });

  it("the revision is part of the URL, URL-encoded", async () => {
    const v1 = await openModelFiles(
      "org/tiny",
      hubOptions({ revision: "v1.0" }),
    );
    expect(await v1.json("config.json")).toMatchObject({ n_layer: 1 });
    const pr = await openModelFiles(
      "org/tiny",
      hubOptions({ revision: "refs/pr/1" }),
    );
    expect(await pr.json("config.json")).toMatchObject({ n_layer: 3 });
    expect(paths()).toEqual([
      "/org/tiny/resolve/v1.0/config.json",
      "/org/tiny/resolve/refs%2Fpr%2F1/config.json",
    ]);
  });

  it("a base URL serves files by their Hugging Face names", async () => {
    const files = await openModelFiles(`${hub.url}/org/tiny/resolve/main`, {
      cache: false,
    });
    expect(files.source).toBe(`${hub.url}/org/tiny/resolve/main`);
    expect(await files.json("config.json")).toEqual(CONFIG);
    const weights = await openModelWeights(files);
    expect(Array.from((await weights.read("ln_f.bias")).data)).toEqual([
      1, 2, 3, 4,
    ]);
    // Without a cache, weights are range-read: no request downloads the whole file.
    const weightGets = hub.requests.filter(
      (r) => r.method === "GET" && r.path.endsWith(".safetensors"),
    );
    expect(weightGets.every((r) => r.range !== undefined)).toBe(true);
  });

  it("a local directory in Node", async () => {
    const dir = join(root, "org/tiny/main");
    const files = await openModelFiles(dir);
    expect(await files.json("config.json")).toEqual(CONFIG);
    expect(await files.has("model.safetensors")).toBe(true);
    expect(await files.has("nope.json")).toBe(false);
    const st = await openSafetensors(await files.bytes("model.safetensors"));
    expect(st.names).toContain("wte.weight");
    await expect(files.json("missing.json")).rejects.toThrow(FileNotFoundError);
    await expect(files.bytes("missing.json")).rejects.toThrow(
      `"missing.json" was not found in directory ${dir}`,
    );
    await expect(files.json("bad.json")).rejects.toThrow(FormatError);
    await expect(files.json("bad.json")).rejects.toThrow(
      `bad.json from ${dir} is not valid JSON`,
    );
    await expect(files.text("../main/config.json")).rejects.toThrow(
      ConfigError,
    );
    expect(hub.requests).toEqual([]);
  });

  it("refuses a string that is no URL, directory or hub id", async () => {
    await expect(openModelFiles("a/b/c")).rejects.toThrow(ConfigError);
    await expect(openModelFiles("a/b/c", {}, "adapter")).rejects.toThrow(
      `There is no adapter folder a/b/c (nothing at ${resolve("a/b/c")}). Check the path. It is not an http(s) ` +
        `URL or a hub id ("org/name") either.`,
    );
    // A run folder that does not exist (runs/kjv/ would, after `npm run task:kjv`).
    await expect(openModelFiles("runs/no-such-run/")).rejects.toThrow(
      /^There is no model folder runs\/no-such-run\/ /,
    );
  });
});

describe("a string is a local folder or a hub id", () => {
  /** Runs `body` in the fixture root, where "org/tiny" is a folder (holding main/, v1.0/, ...). */
  async function inRoot<T>(body: () => Promise<T>): Promise<T> {
    const before = process.cwd();
    process.chdir(root);
    try {
      return await body();
    } finally {
      process.chdir(before);
    }
  }
  const messageOf = (error: unknown) => (error as Error).message;

  it("./, ../ and / always mean a folder: a missing one is named as one, and the hub is never asked", async () => {
    await inRoot(async () => {
      for (const source of [
        "./runs/kjv",
        "../no-such-webtune-folder",
        "/no/such/webtune/folder",
      ]) {
        const error = await openModelFiles(source, hubOptions(), "adapter")
          .then(() => undefined)
          .catch((e: unknown) => e);
        expect(error).toBeInstanceOf(ConfigError);
        expect(messageOf(error)).toBe(
          `There is no adapter folder ${source} (nothing at ${resolve(source)}). Check the path.`,
        );
      }
      await expect(openModelFiles("./runs/kjv", hubOptions())).rejects.toThrow(
        /^There is no model folder \.\/runs\/kjv \(nothing at /,
      );
    });
    expect(hub.requests).toEqual([]);
  });

  it("~ is the home directory", async () => {
    const home = process.env["HOME"];
    process.env["HOME"] = root;
    try {
      const files = await openModelFiles("~/org/tiny/main", hubOptions());
      expect(await files.json("config.json")).toEqual(CONFIG);
      await expect(
        openModelFiles("~/runs/kjv", hubOptions(), "adapter"),
      ).rejects.toThrow(
        `There is no adapter folder ~/runs/kjv (nothing at ${join(root, "runs/kjv")}).`,
      );
    } finally {
      if (home === undefined) delete process.env["HOME"];
      else process.env["HOME"] = home;
    }
    expect(hub.requests).toEqual([]);
  });

  it("an existing path is local even when it reads like a hub id, and a file is not a folder", async () => {
    await inRoot(async () => {
      const files = await openModelFiles("org/tiny", hubOptions(), "adapter");
      expect(await files.has("main/config.json")).toBe(true);
      await expect(files.json("adapter_config.json")).rejects.toThrow(
        `"adapter_config.json" was not found in directory org/tiny. Check that the adapter folder is complete`,
      );
      await expect(
        openModelFiles("org/tiny/main/config.json", hubOptions(), "adapter"),
      ).rejects.toThrow(
        '"org/tiny/main/config.json" is a file, not an adapter folder: pass the folder that holds adapter_config.json',
      );
    });
    expect(hub.requests).toEqual([]);
  });

  it("a hub id with no folder of that name: the hub's failure also says that there is no such folder", async () => {
    await inRoot(async () => {
      const lead = `There is no adapter folder "runs/kjv" here (nothing at ${resolve("runs/kjv")}), so it was taken for a hub id, and`;
      const files = await openModelFiles("runs/kjv", hubOptions(), "adapter");
      const missing = await files
        .json("adapter_config.json")
        .catch((e: unknown) => e);
      expect(missing).toBeInstanceOf(FileNotFoundError);
      expect(missing).toMatchObject({
        file: "adapter_config.json",
        source: `"runs/kjv" (revision "main" on ${hub.url})`,
      });
      expect((missing as Error).cause).toBeInstanceOf(FileNotFoundError);
      expect(messageOf(missing)).toBe(
        `${lead} the hub has no such repository (or not this file in it): "adapter_config.json" was not found at ` +
          `${hub.url}/runs/kjv/resolve/main/adapter_config.json (HTTP 404); check the adapter id "runs/kjv", the ` +
          `revision "main" and the file name. If you meant a local folder, check the path.`,
      );

      // The real hub answers 401 for a repository that does not exist, when no token is sent.
      hub.statuses.set("/runs/kjv/resolve/main/adapter_config.json", 401);
      const refused = await files.has("adapter_config.json").catch((e) => e);
      expect(refused).toBeInstanceOf(NetworkError);
      expect(refused).toMatchObject({ status: 401 });
      expect(messageOf(refused)).toContain(
        `${lead} the hub refused it (no such repository, or a gated or private one): ${hub.url}/runs/kjv/`,
      );

      const down = await closedPortUrl();
      const offline = await openModelFiles(
        "runs/kjv",
        { hubUrl: down, cache: false },
        "adapter",
      );
      const unreachable = await offline
        .bytes("adapter_model.safetensors")
        .catch((e: unknown) => e);
      expect(unreachable).toBeInstanceOf(NetworkError);
      expect(unreachable).toMatchObject({
        url: `${down}/runs/kjv/resolve/main/adapter_model.safetensors`,
        status: undefined,
      });
      expect(messageOf(unreachable)).toMatch(
        /the hub could not be reached: Could not reach .*ECONNREFUSED.* If you meant a local folder, check the path\.$/,
      );
      expect(messageOf(unreachable).startsWith(lead)).toBe(true);
    });
  });
});

describe("progress", () => {
  function recorder() {
    const events: DownloadProgress[] = [];
    return {
      events,
      onProgress: (e: DownloadProgress) => void events.push({ ...e }),
    };
  }

  function expectMonotonicToTotal(
    events: DownloadProgress[],
    file: string,
    total: number,
  ) {
    const mine = events.filter((e) => e.file === file);
    expect(mine.length).toBeGreaterThan(0);
    for (let i = 1; i < mine.length; i++)
      expect(mine[i]!.loadedBytes).toBeGreaterThanOrEqual(
        mine[i - 1]!.loadedBytes,
      );
    expect(mine.every((e) => e.loadedBytes <= e.totalBytes)).toBe(true);
    expect(mine.at(-1)).toEqual({
      file,
      loadedBytes: total,
      totalBytes: total,
    });
  }

  it("reports each download, monotonic and ending at the total", async () => {
    const { events, onProgress } = recorder();
    const files = await openModelFiles(
      "org/tiny",
      hubOptions({ cache: cacheDir, onProgress }),
    );
    await files.json("config.json");
    await files.bytes("model.safetensors");
    expectMonotonicToTotal(
      events,
      "config.json",
      JSON.stringify(CONFIG, null, 2).length,
    );
    expectMonotonicToTotal(events, "model.safetensors", WEIGHTS.length);
    expect(
      events.filter((e) => e.file === "model.safetensors").length,
    ).toBeGreaterThan(1);
  });

  it("reports range reads without a cache, and cache hits as complete", async () => {
    const { events, onProgress } = recorder();
    const files = await openModelFiles("org/tiny", hubOptions({ onProgress }));
    const st = await openSafetensors(await files.bytes("model.safetensors"));
    for (const name of st.names) await st.read(name);
    const last = events.filter((e) => e.file === "model.safetensors").at(-1)!;
    expect(last.totalBytes).toBe(WEIGHTS.length);
    expect(last.loadedBytes).toBeGreaterThan(WEIGHTS.length * 0.9);

    await (
      await openModelFiles("org/tiny", hubOptions({ cache: cacheDir }))
    ).json("config.json");
    const requests = hub.requests.length;
    const warm = recorder();
    await (
      await openModelFiles(
        "org/tiny",
        hubOptions({ cache: cacheDir, onProgress: warm.onProgress }),
      )
    ).json("config.json");
    const size = JSON.stringify(CONFIG, null, 2).length;
    expect(warm.events).toEqual([
      { file: "config.json", loadedBytes: size, totalBytes: size },
    ]);
    expect(hub.requests.length).toBe(requests);
  });
});

describe("cache", () => {
  async function loadTiny(options: LoadOptions) {
    const files = await openModelFiles("org/tiny", hubOptions(options));
    const config = await files.json("config.json");
    const hasGenerationConfig = await files.has("generation_config.json");
    const weights = await openModelWeights(files);
    const wte = await weights.read("wte.weight");
    return { config, hasGenerationConfig, wte: wte.data };
  }

  it("a second load of the same model makes no network request", async () => {
    const first = await loadTiny({ cache: cacheDir });
    expect(hub.requests.length).toBeGreaterThan(0);
    hub.requests.length = 0;
    const second = await loadTiny({ cache: cacheDir });
    expect(hub.requests).toEqual([]);
    expect(second).toEqual(first);
    expect(second.hasGenerationConfig).toBe(false);
  });

  it("the default cache lives under $XDG_CACHE_HOME/webtune/hub", async () => {
    const saved = process.env["XDG_CACHE_HOME"];
    process.env["XDG_CACHE_HOME"] = cacheDir;
    try {
      await loadTiny({ cache: true });
      hub.requests.length = 0;
      await loadTiny({ cache: undefined });
      expect(hub.requests).toEqual([]);
      const host = new URL(hub.url).host.replace(":", "_");
      const cached = await readdir(
        join(cacheDir, "webtune/hub/http", host, "org/tiny/resolve/main"),
      );
      expect(cached.sort()).toEqual(["config.json", "model.safetensors"]);
    } finally {
      if (saved === undefined) delete process.env["XDG_CACHE_HOME"];
      else process.env["XDG_CACHE_HOME"] = saved;
    }
  });

  it("keys entries by revision and hub URL", async () => {
    await loadTiny({ cache: cacheDir });
    hub.requests.length = 0;
    const v1 = await openModelFiles(
      "org/tiny",
      hubOptions({ cache: cacheDir, revision: "v1.0" }),
    );
    expect(await v1.json("config.json")).toMatchObject({ n_layer: 1 });
    expect(paths()).toEqual(["/org/tiny/resolve/v1.0/config.json"]);
  });

  it("without a cache, every load downloads again", async () => {
    await loadTiny({ cache: false });
    const first = hub.requests.length;
    await loadTiny({ cache: false });
    expect(hub.requests.length).toBe(2 * first);
  });

  it("an interrupted download leaves nothing in the cache, and the next load succeeds", async () => {
    hub.truncate.set("/org/tiny/resolve/main/model.safetensors", 1000);
    const files = await openModelFiles(
      "org/tiny",
      hubOptions({ cache: cacheDir }),
    );
    const error = await files
      .bytes("model.safetensors")
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NetworkError);
    expect((error as Error).message).toMatch(
      new RegExp(
        `The download of ${hub.url}/org/tiny/resolve/main/model.safetensors was interrupted`,
      ),
    );
    const dir = join(
      cacheDir,
      "http",
      new URL(hub.url).host.replace(":", "_"),
      "org/tiny/resolve/main",
    );
    expect(await readdir(dir)).toEqual([]);
    hub.truncate.clear();
    const st = await openSafetensors(await files.bytes("model.safetensors"));
    expect(st.names).toContain("wte.weight");
    expect(await readdir(dir)).toEqual(["model.safetensors"]);
  });
});

describe("errors name the URL and say what to do", () => {
  const url = (file: string) => `${hub.url}/org/tiny/resolve/main/${file}`;

  it("404", async () => {
    const files = await openModelFiles("org/tiny", hubOptions());
    await files.json("config.json"); // once the hub has served the repository, its errors are its own
    const error = await files.json("nope.json").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FileNotFoundError);
    expect((error as Error).message).toBe(
      `"nope.json" was not found at ${url("nope.json")} (HTTP 404); check the model id "org/tiny", the revision "main" and the file name.`,
    );
    await expect(
      (await openModelFiles("org/nope", hubOptions())).json("config.json"),
    ).rejects.toThrow(FileNotFoundError);
  });

  it("401 and 403: gated or private, pass a token", async () => {
    hub.statuses.set("/org/tiny/resolve/main/config.json", 401);
    const files = await openModelFiles("org/tiny", hubOptions());
    const error = await files.json("config.json").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NetworkError);
    expect(error).toMatchObject({ url: url("config.json"), status: 401 });
    expect((error as Error).message).toMatch(
      /refused access \(HTTP 401\): the model is gated or private, or does not exist. Accept its license on the hub and pass a token/,
    );
    hub.statuses.set("/org/tiny/resolve/main/config.json", 403);
    await expect(files.has("config.json")).rejects.toThrow(
      `${url("config.json")} refused access (HTTP 403)`,
    );
  });

  it("sends the token, and says when it is refused", async () => {
    hub.requiredToken = "hf_right";
    await expect(
      (await openModelFiles("org/tiny", hubOptions())).json("config.json"),
    ).rejects.toThrow(/HTTP 401/);
    const wrong = await openModelFiles(
      "org/tiny",
      hubOptions({ token: "hf_wrong" }),
    );
    await expect(wrong.json("config.json")).rejects.toThrow(
      /HTTP 403.*The token was sent but does not grant access/,
    );
    const right = await openModelFiles(
      "org/tiny",
      hubOptions({ token: "hf_right" }),
    );
    expect(await right.json("config.json")).toEqual(CONFIG);
    expect(hub.requests.at(-1)!.authorization).toBe("Bearer hf_right");
  });

  it("other statuses", async () => {
    hub.statuses.set("/org/tiny/resolve/main/config.json", 503);
    const files = await openModelFiles("org/tiny", hubOptions());
    await expect(files.json("config.json")).rejects.toThrow(
      `${url("config.json")} answered HTTP 503 Service Unavailable. The server failed; try again later.`,
    );
  });

  it("a server that is down", async () => {
    const down = await closedPortUrl();
    const files = await openModelFiles("org/tiny", {
      hubUrl: down,
      cache: false,
    });
    const error = await files.json("config.json").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NetworkError);
    expect((error as Error).message).toMatch(
      new RegExp(
        `the hub could not be reached: Could not reach ${down}/org/tiny/resolve/main/config.json \\(fetch failed: .*ECONNREFUSED.*\\)\\. Check the network`,
      ),
    );
  });

  it("an aborted load rejects with the signal's reason", async () => {
    const controller = new AbortController();
    controller.abort(new Error("user cancelled"));
    const files = await openModelFiles(
      "org/tiny",
      hubOptions({ signal: controller.signal }),
    );
    await expect(files.json("config.json")).rejects.toThrow("user cancelled");
  });
});
