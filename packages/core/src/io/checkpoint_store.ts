/**
 * Where training checkpoints live: a directory in Node, the Origin Private File System in browsers. A store
 * holds named files per checkpoint; a checkpoint is written to a temporary name, fsynced and renamed (Node) or written
 * completely before its manifest (OPFS), so a crash never leaves a half checkpoint that looks whole.
 */
import { FileNotFoundError } from "../errors.js";
import { syncDirectory, writeError, writeFileSynced } from "./atomic_write.js";
import { isNode, nodeFs } from "./byte_source.js";
import {
  checkCheckpointName,
  filesRecord,
  MANIFEST,
  MAX_MANIFEST_BYTES,
  parseManifest,
  readCheckpointFile,
} from "./checkpoint_manifest.js";

export type CheckpointFiles = Record<string, Uint8Array | string>;

export interface CheckpointStore {
  /** For messages. */
  readonly description: string;
  save(name: string, files: CheckpointFiles): Promise<void>;
  /** The files of a saved checkpoint, as bytes. */
  load(name: string): Promise<Record<string, Uint8Array>>;
  /** Names of complete checkpoints, oldest first. */
  list(): Promise<string[]>;
  /** Deletes every checkpoint, so that a new run starts with none. */
  clear(): Promise<void>;
}

/** A directory of checkpoint folders (Node). */
export function directoryStore(dir: string): CheckpointStore {
  return {
    description: dir,
    async save(name, files) {
      const fs = await nodeFs();
      const tmp = `${dir}/.${name}.partial`;
      try {
        await fs.rm(tmp, { recursive: true, force: true });
        await fs.mkdir(tmp, { recursive: true });
        // Every file fsynced, then the folder, before the rename makes the checkpoint visible.
        for (const [file, data] of Object.entries(files))
          await writeFileSynced(`${tmp}/${file}`, data);
        await writeFileSynced(
          `${tmp}/${MANIFEST}`,
          JSON.stringify({ files: Object.keys(files) }),
        );
        await syncDirectory(tmp);
      } catch (error) {
        await fs.rm(tmp, { recursive: true, force: true });
        throw writeError(error, dir, `checkpoint ${name}`);
      }
      await fs.rm(`${dir}/${name}`, { recursive: true, force: true });
      await fs.rename(tmp, `${dir}/${name}`);
      await syncDirectory(dir);
    },
    async load(name) {
      checkCheckpointName(name, dir);
      const fs = await nodeFs();
      const checkpoint = `${dir}/${name}`;
      const manifest = await readCheckpointFile(
        fs,
        `${checkpoint}/${MANIFEST}`,
        checkpoint,
        MANIFEST,
        MAX_MANIFEST_BYTES,
      ).catch((cause: unknown) => {
        if (!(cause instanceof FileNotFoundError)) throw cause;
        throw new FileNotFoundError(
          `No complete checkpoint "${name}" in ${dir}.`,
          { source: dir, file: name, cause },
        );
      });
      // Every name is checked before any file is opened.
      const names = parseManifest(
        new TextDecoder().decode(manifest),
        checkpoint,
      );
      const files: [string, Uint8Array][] = [];
      for (const file of names)
        files.push([
          file,
          await readCheckpointFile(
            fs,
            `${checkpoint}/${file}`,
            checkpoint,
            file,
          ),
        ]);
      return filesRecord(files);
    },
    async list() {
      const fs = await nodeFs();
      const entries = await fs.readdir(dir).catch(() => [] as string[]);
      const complete: string[] = [];
      for (const e of entries.filter((n) => !n.startsWith(".")).sort()) {
        if (
          await fs.stat(`${dir}/${e}/${MANIFEST}`).then(
            () => true,
            () => false,
          )
        )
          complete.push(e);
      }
      return complete;
    },
    async clear() {
      const fs = await nodeFs();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

/** A folder in the browser's Origin Private File System. */
export function opfsStore(folder = "webtune-checkpoints"): CheckpointStore {
  const root = async () => {
    const storage = (globalThis as { navigator?: { storage?: StorageManager } })
      .navigator?.storage;
    if (!storage?.getDirectory)
      throw new FileNotFoundError(
        "This browser has no Origin Private File System.",
        { source: "OPFS", file: folder },
      );
    return (await storage.getDirectory()).getDirectoryHandle(folder, {
      create: true,
    });
  };
  return {
    description: `OPFS:${folder}`,
    async save(name, files) {
      const dir = await (
        await root()
      ).getDirectoryHandle(name, { create: true });
      await dir.removeEntry(MANIFEST).catch(() => undefined);
      for (const [file, data] of [
        ...Object.entries(files),
        [MANIFEST, JSON.stringify({ files: Object.keys(files) })] as const,
      ]) {
        const writable = await (
          await dir.getFileHandle(file, { create: true })
        ).createWritable();
        await writable.write(data as FileSystemWriteChunkType);
        await writable.close();
      }
    },
    async load(name) {
      checkCheckpointName(name, `OPFS:${folder}`);
      const dir = await (await root()).getDirectoryHandle(name);
      const names = parseManifest(
        await (await (await dir.getFileHandle(MANIFEST)).getFile()).text(),
        `OPFS:${folder}/${name}`,
      );
      const files: [string, Uint8Array][] = [];
      for (const file of names)
        files.push([
          file,
          new Uint8Array(
            await (
              await (await dir.getFileHandle(file)).getFile()
            ).arrayBuffer(),
          ),
        ]);
      return filesRecord(files);
    },
    async list() {
      const names: string[] = [];
      const dir = await root();
      for await (const [name, handle] of (
        dir as unknown as {
          entries(): AsyncIterable<[string, FileSystemHandle]>;
        }
      ).entries()) {
        // A checkpoint cut off before its manifest was written is not complete.
        if (handle.kind !== "directory") continue;
        const manifest = await (handle as FileSystemDirectoryHandle)
          .getFileHandle(MANIFEST)
          .then(
            () => true,
            () => false,
          );
        if (manifest) names.push(name);
      }
      return names.sort();
    },
    async clear() {
      const storage = (
        globalThis as { navigator?: { storage?: StorageManager } }
      ).navigator?.storage;
      await (
        await storage?.getDirectory()
      )
        ?.removeEntry(folder, { recursive: true })
        .catch(() => undefined);
    },
  };
}

/** The platform's default store: a directory in Node, OPFS in browsers. */
export function defaultCheckpointStore(dirOrFolder: string): CheckpointStore {
  return isNode() ? directoryStore(dirOrFolder) : opfsStore(dirOrFolder);
}
