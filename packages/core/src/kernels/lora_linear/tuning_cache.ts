/**
 * Where the matmul autotuner keeps its choices: one small JSON document per GPU and build, in a file in Node
 * (`~/.cache/webtune/tuning/matmul-<digest>.json`, written atomically) or in the Origin Private File System in
 * browsers (`webtune-tuning/matmul-<digest>.json`). The digest is of the identity: the adapter's vendor,
 * architecture, device and description, webtune's version, and a digest of the matmul shaders' source; another
 * driver, release or kernel source reads another document, so a stale choice is never applied.
 *
 * A document that does not parse, names another identity, or holds an unknown variant is ignored with one log
 * line (and replaced by the next tuning): `readTable` says why.
 */
import { keyDigest } from "../../hash.js";
import { nodeCacheDir } from "../../io/cache.js";
import { writeFilesAtomically } from "../../io/atomic_write.js";
import { errorCode, isNode, nodeFs } from "../../io/byte_source.js";
import { WEBTUNE_VERSION } from "../../version.js";
import { isVariantName, type TileTable } from "./variant.js";

/** The format of the document; another number is an unknown document. */
const FORMAT = 1;

/** Which GPU and which build a table belongs to. */
export interface TuningIdentity {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  version: string;
  /** A digest of every matmul variant's WGSL. */
  shaders: string;
}

/** One document of tuned choices, read and written whole. */
export interface TuningStore {
  /** Where it lives, for messages. */
  readonly location: string;
  /** The document's text, or undefined when there is none yet. */
  read(): Promise<string | undefined>;
  write(text: string): Promise<void>;
}

/** The identity of `device` for this build; `shaders` is `shaderDigest()`. */
export function tuningIdentity(
  info: Pick<
    GPUAdapterInfo,
    "vendor" | "architecture" | "device" | "description"
  >,
  shaders: string,
): TuningIdentity {
  return {
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
    version: WEBTUNE_VERSION,
    shaders,
  };
}

/** The document's file name: one per identity. */
export function tuningFileName(identity: TuningIdentity): string {
  return `matmul-${keyDigest(JSON.stringify(identity))}.json`;
}

export function writeTable(identity: TuningIdentity, table: TileTable): string {
  return `${JSON.stringify({ webtuneMatmulTuning: FORMAT, identity, table }, null, 1)}\n`;
}

/** The table a document holds for `identity`, or why it is not usable. */
export function readTable(
  text: string,
  identity: TuningIdentity,
): { table: TileTable } | { reason: string } {
  let doc: {
    webtuneMatmulTuning?: unknown;
    identity?: unknown;
    table?: unknown;
  };
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch (error) {
    return { reason: `it is not JSON (${(error as Error).message})` };
  }
  if (doc?.webtuneMatmulTuning !== FORMAT)
    return {
      reason: `its format is ${JSON.stringify(doc?.webtuneMatmulTuning)}, not ${FORMAT}`,
    };
  if (JSON.stringify(doc.identity) !== JSON.stringify(identity))
    return {
      reason:
        "it was tuned for another adapter, webtune version or shader source",
    };
  const table = doc.table;
  if (typeof table !== "object" || table === null)
    return { reason: "it holds no table" };
  for (const [shape, choice] of Object.entries(
    table as Record<string, unknown>,
  )) {
    const { variant, tileK } = (choice ?? {}) as Record<string, unknown>;
    if (!isVariantName(variant) || ![4, 8, 16, 32].includes(tileK as number))
      return {
        reason: `its entry ${shape} names an unknown choice ${JSON.stringify(choice)}`,
      };
  }
  return { table: table as TileTable };
}

/**
 * The store for `identity`: `option` a folder (Node) or a store of the caller's; undefined for the platform's
 * default (a file under ~/.cache/webtune/tuning, or OPFS); false for none. Without OPFS, none, said once in `log`.
 */
export async function openTuningStore(
  option: string | false | TuningStore | undefined,
  identity: TuningIdentity,
  log: (line: string) => void,
): Promise<TuningStore | undefined> {
  if (option === false) return undefined;
  if (typeof option === "object") return option;
  const name = tuningFileName(identity);
  if (isNode())
    return nodeTuningStore(option ?? (await nodeCacheDir("tuning")), name);
  const storage = (globalThis as { navigator?: { storage?: StorageManager } })
    .navigator?.storage;
  if (!storage?.getDirectory) {
    log(
      "webtune: this browser has no Origin Private File System, so the matmul autotuner's choices are not kept; " +
        "it will time the kernels again on the next load.",
    );
    return undefined;
  }
  return opfsTuningStore(storage, option ?? "webtune-tuning", name);
}

/** A document in a folder, replaced atomically. */
export function nodeTuningStore(dir: string, name: string): TuningStore {
  const path = `${dir}/${name}`;
  return {
    location: path,
    async read() {
      const fs = await nodeFs();
      return fs.readFile(path, "utf8").catch((error: unknown) => {
        if (errorCode(error) === "ENOENT") return undefined;
        throw error;
      });
    },
    write: (text) =>
      writeFilesAtomically(dir, [[name, text]], "the matmul tuning"),
  };
}

function opfsTuningStore(
  storage: StorageManager,
  folder: string,
  name: string,
): TuningStore {
  const dir = async () =>
    (await storage.getDirectory()).getDirectoryHandle(folder, { create: true });
  return {
    location: `OPFS:${folder}/${name}`,
    async read() {
      const handle = await (
        await dir()
      )
        .getFileHandle(name)
        .catch(() => undefined);
      return handle ? (await handle.getFile()).text() : undefined;
    },
    async write(text) {
      const writable = await (
        await (await dir()).getFileHandle(name, { create: true })
      ).createWritable();
      await writable.write(text);
      await writable.close();
    },
  };
}
