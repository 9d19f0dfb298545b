/**
 * Model folders that are already local: a directory in Node, files picked in a browser (`<input type=file>`),
 * or a directory handle from the File System Access API. No network, no cache.
 */
import {
  blobSource,
  errorCode,
  nodeFileSource,
  nodeFs,
  type ByteSource,
} from "./byte_source.js";
import { FileNotFoundError } from "../errors.js";
import {
  checkFileName,
  ModelFilesBase,
  type FolderKind,
} from "./model_files.js";

/** A directory on disk (Node). */
export class DirectoryFiles extends ModelFilesBase {
  constructor(
    readonly source: string,
    private readonly kind: FolderKind = "model",
  ) {
    super();
  }

  async has(file: string): Promise<boolean> {
    checkFileName(file, this.source);
    const fs = await nodeFs();
    return fs.stat(this.pathOf(file)).then(
      (s) => s.isFile(),
      () => false,
    );
  }

  async bytes(file: string): Promise<ByteSource> {
    checkFileName(file, this.source);
    try {
      return await nodeFileSource(this.pathOf(file));
    } catch (cause) {
      if (!(cause instanceof FileNotFoundError)) throw cause;
      throw this.missing(file, cause);
    }
  }

  override async text(file: string): Promise<string> {
    checkFileName(file, this.source);
    const fs = await nodeFs();
    return fs.readFile(this.pathOf(file), "utf8").catch((cause: unknown) => {
      if (errorCode(cause) !== "ENOENT") throw cause;
      throw this.missing(file, cause);
    });
  }

  private missing(file: string, cause: unknown): FileNotFoundError {
    const where = `directory ${this.source}`;
    return missingFile(this.source, file, where, this.kind, cause);
  }

  private pathOf(file: string): string {
    return `${this.source.replace(/\/+$/, "")}/${file}`;
  }
}

/**
 * Files picked in a browser. With a folder picker (`webkitdirectory`) each file's `webkitRelativePath`
 * starts with the folder's name, which is dropped; single files are known by their name.
 */
export class FileListFiles extends ModelFilesBase {
  readonly source: string;
  private readonly byPath = new Map<string, File>();

  constructor(
    files: readonly File[],
    private readonly kind: FolderKind = "model",
  ) {
    super();
    const paths = files.map(
      (f) =>
        (f as { webkitRelativePath?: string }).webkitRelativePath || f.name,
    );
    const prefix = commonFolder(paths);
    files.forEach((f, i) => this.byPath.set(paths[i]!.slice(prefix.length), f));
    this.source = `the ${files.length} selected file(s)${prefix ? ` in ${prefix.slice(0, -1)}` : ""}`;
  }

  async has(file: string): Promise<boolean> {
    return this.byPath.has(file);
  }

  async bytes(file: string): Promise<ByteSource> {
    const found = this.byPath.get(file);
    if (found) return blobSource(found, file);
    const names = [...this.byPath.keys()];
    const listed =
      names.slice(0, 8).join(", ") + (names.length > 8 ? ", ..." : "");
    throw missingFile(
      this.source,
      file,
      `${this.source} (${listed || "none"})`,
      this.kind,
    );
  }
}

/** The folder shared by every path, with its trailing "/", or "" when the paths are not all in one. */
function commonFolder(paths: string[]): string {
  const first = paths[0];
  if (first === undefined || !first.includes("/")) return "";
  const prefix = first.slice(0, first.indexOf("/") + 1);
  return paths.every((p) => p.startsWith(prefix)) ? prefix : "";
}

/** A directory handle from `showDirectoryPicker()` or the origin private file system. */
export class DirectoryHandleFiles extends ModelFilesBase {
  readonly source: string;

  constructor(
    private readonly root: FileSystemDirectoryHandle,
    private readonly kind: FolderKind = "model",
  ) {
    super();
    this.source = `directory "${root.name}"`;
  }

  async has(file: string): Promise<boolean> {
    checkFileName(file, this.source);
    return (await this.find(file)) !== undefined;
  }

  async bytes(file: string): Promise<ByteSource> {
    checkFileName(file, this.source);
    const handle = await this.find(file);
    if (!handle) throw missingFile(this.source, file, this.source, this.kind);
    return blobSource(await handle.getFile(), file);
  }

  /** Walks the path; a missing part, or a part of the wrong kind, means no such file. */
  private async find(file: string): Promise<FileSystemFileHandle | undefined> {
    const parts = file.split("/");
    const name = parts.pop()!;
    try {
      let dir = this.root;
      for (const part of parts) dir = await dir.getDirectoryHandle(part);
      return await dir.getFileHandle(name);
    } catch (error) {
      const kind = (error as { name?: string } | null)?.name;
      if (kind === "NotFoundError" || kind === "TypeMismatchError")
        return undefined;
      throw error;
    }
  }
}

function missingFile(
  source: string,
  file: string,
  where: string,
  kind: FolderKind,
  cause?: unknown,
): FileNotFoundError {
  return new FileNotFoundError(
    `"${file}" was not found in ${where}. Check that the ${kind} folder is complete and the file name is right.`,
    { source, file, cause },
  );
}
