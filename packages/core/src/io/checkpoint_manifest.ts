/**
 * Reading a checkpoint back without trusting it: its name and the file names its manifest (checkpoint.json) lists
 * must be plain names inside its folder (a manifest listing "../../dev/zero" was read), the manifest must have its
 * JSON shape, and in Node only regular files are read (a device or a FIFO would never end, or never start).
 */
import { ConfigError, FileNotFoundError, FormatError } from "../errors.js";
import { errorCode } from "./byte_source.js";

/** The manifest each checkpoint folder holds, written last: `{"files": [names]}`. */
export const MANIFEST = "checkpoint.json";

/** webtune's manifests list a few names; a larger one is not a manifest. */
export const MAX_MANIFEST_BYTES = 1 << 20;

/** Why a name is not a plain file name, or undefined when it is one. */
function nameProblem(name: string): string | undefined {
  if (name === "" || name === "." || name === "..")
    return `it is ${JSON.stringify(name)}`;
  if (name.length > 255) return `it is ${name.length} characters long`;
  // eslint-disable-next-line no-control-regex
  const bad = /[/\\:\u0000-\u001f]/.exec(name);
  if (bad)
    return `it holds ${JSON.stringify(bad[0])}, so it would name a path outside the checkpoint's folder or no file`;
  return undefined;
}

const shown = (name: string) =>
  JSON.stringify(name.length > 100 ? `${name.slice(0, 100)}...` : name);

/** Refuses a checkpoint name (a caller's argument) that is not a plain folder name. */
export function checkCheckpointName(name: string, store: string): void {
  const problem = typeof name === "string" ? nameProblem(name) : "not a string";
  if (problem)
    throw new ConfigError(
      `Checkpoint name ${shown(String(name))} in ${store} is not a plain folder name (${problem}); use a name such ` +
        `as "step-000042", as the store's list() gives them.`,
    );
}

/**
 * The file names a manifest lists, checked: a JSON object whose `files` is a list of distinct plain file names
 * (no "/", "\\" or ":", not "." or "..", no control characters). `checkpoint` names the folder in messages.
 */
export function parseManifest(text: string, checkpoint: string): string[] {
  const damaged = `The checkpoint is damaged: resume from an earlier one, or start again.`;
  if (text.length > MAX_MANIFEST_BYTES)
    throw new FormatError(
      `Checkpoint ${checkpoint}: ${MANIFEST} is ${text.length} characters long, not a manifest. ${damaged}`,
    );
  let manifest: unknown;
  try {
    manifest = JSON.parse(text);
  } catch (cause) {
    throw new FormatError(
      `Checkpoint ${checkpoint}: ${MANIFEST} is not valid JSON (${String(cause)}). ${damaged}`,
      { cause },
    );
  }
  const files =
    typeof manifest === "object" &&
    manifest !== null &&
    !Array.isArray(manifest)
      ? (manifest as { files?: unknown }).files
      : undefined;
  if (!Array.isArray(files) || !files.every((f) => typeof f === "string"))
    throw new FormatError(
      `Checkpoint ${checkpoint}: ${MANIFEST} must be {"files": [file names]}, but its "files" is ` +
        `${Array.isArray(files) ? "a list holding something other than names" : "missing or not a list"}. ${damaged}`,
    );
  const seen = new Set<string>();
  for (const file of files as string[]) {
    const problem = nameProblem(file);
    if (problem)
      throw new FormatError(
        `Checkpoint ${checkpoint}: ${MANIFEST} lists the file ${shown(file)}, which is not a plain file name in ` +
          `the checkpoint's folder (${problem}). ${damaged}`,
      );
    if (seen.has(file))
      throw new FormatError(
        `Checkpoint ${checkpoint}: ${MANIFEST} lists the file ${shown(file)} twice. ${damaged}`,
      );
    seen.add(file);
  }
  return files as string[];
}

/** Files by name, each an own property (a file named "__proto__" is a file, not the object's prototype). */
export function filesRecord(
  entries: [string, Uint8Array][],
): Record<string, Uint8Array> {
  const out: Record<string, Uint8Array> = {};
  for (const [name, bytes] of entries)
    Object.defineProperty(out, name, {
      value: bytes,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  return out;
}

/**
 * A regular file's bytes (Node). Opened without blocking, so a FIFO cannot hang the open, and refused unless it is
 * a regular file; a missing file is a FileNotFoundError, any other failure a FormatError naming the file.
 */
export async function readCheckpointFile(
  fs: typeof import("node:fs/promises"),
  path: string,
  checkpoint: string,
  file: string,
  maxBytes = Number.POSITIVE_INFINITY,
): Promise<Uint8Array> {
  let handle: import("node:fs/promises").FileHandle;
  try {
    handle = await fs.open(
      path,
      fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0),
    );
  } catch (cause) {
    if (errorCode(cause) === "ENOENT" || errorCode(cause) === "ENOTDIR")
      throw new FileNotFoundError(
        `Checkpoint ${checkpoint} has no ${file}, which its ${MANIFEST} lists; the checkpoint is incomplete: ` +
          `resume from an earlier one.`,
        { source: checkpoint, file, cause },
      );
    throw new FormatError(
      `Checkpoint ${checkpoint}: ${file} cannot be opened (${String(cause)}).`,
      { cause },
    );
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile())
      throw new FormatError(
        `Checkpoint ${checkpoint}: ${file} is not a regular file (a device, a pipe or a folder), so it is not ` +
          `one webtune wrote; the checkpoint is damaged: resume from an earlier one.`,
      );
    if (stats.size > maxBytes)
      throw new FormatError(
        `Checkpoint ${checkpoint}: ${file} is ${stats.size} bytes, more than the ${maxBytes} it can be.`,
      );
    return new Uint8Array(await handle.readFile());
  } catch (cause) {
    if (cause instanceof FormatError) throw cause;
    throw new FormatError(
      `Checkpoint ${checkpoint}: ${file} cannot be read (${String(cause)}).`,
      { cause },
    );
  } finally {
    await handle.close();
  }
}
