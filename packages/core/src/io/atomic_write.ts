/**
 * Writing results in Node so that a crash or a full disk never destroys the previous good result. Each file is
 * written to a temporary name in the same folder (`.<name>.<pid>-<random>.tmp`), fsynced, and renamed over the real
 * name; the folder is then fsynced so that the renames survive a power cut. A result of several files is written
 * completely (every temporary file, fsynced) before the first rename, and renamed in the order given.
 *
 * Order: the file that describes the others goes last (adapter_model.safetensors before adapter_config.json,
 * model.safetensors before config.json). Two renames cannot be one atomic step, so a crash in the microseconds
 * between them leaves the new data under the previous description; it never leaves a description of data that is
 * missing or cut short, and every file is always either its complete old or its complete new version.
 *
 * A failure removes the temporary files; before the first rename nothing was replaced. A full disk (ENOSPC,
 * EDQUOT) is a WebtuneError naming the folder and saying that the disk is full.
 */
import { WebtuneError } from "../errors.js";
import { errorCode, nodeFs } from "./byte_source.js";

/** A file's contents: text, bytes, or bytes in parts written one after another (a GGUF file of a few hundred MB). */
export type FileData = Uint8Array | string | readonly Uint8Array[];

/** `.<name>.<pid>-<random>.tmp`: the temporary file of `name`, written by process `pid`. */
const TEMP = /^\.(.+)\.(\d+)-[0-9a-z]+\.tmp$/;

/**
 * Writes `files` into `dir` (created if needed), each under a temporary name first, then renamed over its real
 * name in the order given (see the file comment for why the describing file goes last).
 *
 * @example
 * ```ts
 * await writeFilesAtomically("runs/a", [
 *   ["adapter_model.safetensors", weights],
 *   ["adapter_config.json", config], // renamed last
 * ]);
 * ```
 */
export async function writeFilesAtomically(
  dir: string,
  files: ReadonlyArray<readonly [string, FileData]>,
  what = files.map(([name]) => name).join(", "),
): Promise<void> {
  const fs = await nodeFs();
  const temps: string[] = [];
  const renamed: string[] = [];
  try {
    await fs.mkdir(dir, { recursive: true });
    await removeStaleTemps(
      dir,
      files.map(([name]) => name),
    );
    for (const [name, data] of files) {
      const temp = `${dir}/.${name}.${process.pid}-${Math.random().toString(36).slice(2, 10)}.tmp`;
      temps.push(temp);
      await writeFileSynced(temp, data, "wx");
    }
    for (const [i, [name]] of files.entries()) {
      await fs.rename(temps[i]!, `${dir}/${name}`);
      renamed.push(name);
    }
    await syncDirectory(dir);
  } catch (error) {
    await Promise.all(temps.map((t) => fs.rm(t, { force: true })));
    throw writeError(error, dir, what, renamed);
  }
}

/** Writes `data` to `path` and fsyncs it before closing. `flags` "wx" refuses an existing file. */
export async function writeFileSynced(
  path: string,
  data: FileData,
  flags = "w",
): Promise<void> {
  const fs = await nodeFs();
  const handle = await fs.open(path, flags);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** fsyncs a folder, so that the files created, renamed or removed in it stay so after a power cut. */
export async function syncDirectory(dir: string): Promise<void> {
  const fs = await nodeFs();
  const handle = await fs.open(dir, "r");
  try {
    await handle.sync();
  } catch (error) {
    // Some platforms (Windows) and file systems cannot fsync a folder; the renames are then as safe as they get.
    if (!["EINVAL", "EISDIR", "EPERM", "ENOTSUP"].includes(errorCode(error)!))
      throw error;
  } finally {
    await handle.close();
  }
}

/** Whether `error` says that the disk (or the user's quota) is full. */
export function isDiskFull(error: unknown): boolean {
  const code = errorCode(error);
  return code === "ENOSPC" || code === "EDQUOT";
}

/**
 * The error for a failed save of `what` in `dir`, saying whether anything was replaced. `renamed` lists the files
 * already renamed over their real names when it failed (none unless a rename itself failed).
 */
export function writeError(
  error: unknown,
  dir: string,
  what: string,
  renamed: readonly string[] = [],
): WebtuneError {
  const kept =
    renamed.length === 0
      ? `The files already in ${dir} are unchanged.`
      : `${renamed.join(", ")} ${renamed.length === 1 ? "was" : "were"} already replaced; the other files in ${dir} are unchanged.`;
  if (isDiskFull(error)) {
    return new WebtuneError(
      `Cannot save ${what} in ${dir}: the disk is full (${errorCode(error)}). ${kept} Free some space, or save to ` +
        "a folder on another disk.",
      { cause: error },
    );
  }
  const reason = error instanceof Error ? error.message : String(error);
  return new WebtuneError(
    `Cannot save ${what} in ${dir}: ${reason.replace(/\.$/, "")}. ${kept}`,
    { cause: error },
  );
}

/** Removes temporary files of `names` left in `dir` by processes that are gone (a crash mid-save). */
async function removeStaleTemps(dir: string, names: string[]): Promise<void> {
  const fs = await nodeFs();
  for (const entry of await fs.readdir(dir)) {
    const m = TEMP.exec(entry);
    if (!m || !names.includes(m[1]!)) continue;
    const pid = Number(m[2]);
    if (pid !== process.pid && !alive(pid))
      await fs.rm(`${dir}/${entry}`, { force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errorCode(error) !== "ESRCH";
  }
}
