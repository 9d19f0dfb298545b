/**
 * Byte sources: random access to a file's bytes wherever it lives, so readers take one tensor at a time
 * and a large file is never held twice in memory. HTTP sources live in `hub.ts`, the one file that fetches.
 */
import { FormatError } from "../errors.js";
import { FileNotFoundError } from "../errors.js";

/**
 * A file that can be read in pieces.
 *
 * @example
 * ```ts
 * const source = blobSource(file);
 * const header = await source.read(0, 8);
 * ```
 */
export interface ByteSource {
  /** File name, path or URL; errors about the file quote it. */
  readonly name: string;
  /** Size of the whole file in bytes. */
  readonly size: number;
  /** Bytes `[start, end)`. The returned array is the caller's: it never aliases the source. */
  read(start: number, end: number): Promise<Uint8Array>;
}

/** Rejects a range outside the file; a file that shrank since it was opened ends up here too. */
export function checkRange(source: ByteSource, start: number, end: number) {
  if (
    !Number.isSafeInteger(start) ||
    !Number.isSafeInteger(end) ||
    start < 0 ||
    end < start ||
    end > source.size
  ) {
    throw new FormatError(
      `Cannot read bytes [${start}, ${end}) of ${source.name}: it has ${source.size} bytes. ` +
        `If the file changed after it was opened, open it again.`,
    );
  }
}

/**
 * A source over bytes already in memory.
 *
 * @example
 * ```ts
 * const reader = await openSafetensors(bytesSource(await response.arrayBuffer(), "adapter.safetensors"));
 * ```
 */
export function bytesSource(
  data: ArrayBuffer | Uint8Array,
  name = "<memory>",
): ByteSource {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  const source: ByteSource = {
    name,
    size: bytes.byteLength,
    read: async (start, end) => {
      checkRange(source, start, end);
      return bytes.slice(start, end);
    },
  };
  return source;
}

/**
 * A source over a `Blob` or `File`; only the slices read are loaded into memory.
 *
 * @example
 * ```ts
 * const reader = await openSafetensors(blobSource(input.files[0]));
 * ```
 */
export function blobSource(blob: Blob, name?: string): ByteSource {
  const source: ByteSource = {
    name: name ?? (blob as Partial<File>).name ?? "<blob>",
    size: blob.size,
    read: async (start, end) => {
      checkRange(source, start, end);
      return new Uint8Array(await blob.slice(start, end).arrayBuffer());
    },
  };
  return source;
}

/**
 * A source over a file on disk (Node only). The file is opened per read, so nothing needs closing.
 *
 * @example
 * ```ts
 * const reader = await openSafetensors(await nodeFileSource("/models/gpt2/model.safetensors"));
 * ```
 */
export async function nodeFileSource(
  path: string,
  name = path,
): Promise<ByteSource> {
  const fs = await nodeFs();
  const stats = await fs.stat(path).catch((cause: unknown) => {
    if (errorCode(cause) !== "ENOENT") throw cause;
    throw new FileNotFoundError(`File not found: ${path}.`, {
      source: path,
      file: path,
      cause,
    });
  });
  const source: ByteSource = {
    name,
    size: stats.size,
    read: async (start, end) => {
      checkRange(source, start, end);
      const out = new Uint8Array(end - start);
      const handle = await fs.open(path, "r");
      try {
        let done = 0;
        while (done < out.length) {
          const { bytesRead } = await handle.read(
            out,
            done,
            out.length - done,
            start + done,
          );
          if (bytesRead === 0) {
            throw new FormatError(
              `${name} is shorter than when it was opened (${source.size} bytes): reading bytes [${start}, ${end}) ` +
                `stopped at byte ${start + done}. It changed on disk; open it again.`,
            );
          }
          done += bytesRead;
        }
      } finally {
        await handle.close();
      }
      return out;
    },
  };
  return source;
}

export { isNode } from "../runtime/device.js";

/** Imports a Node built-in behind a computed specifier, so browser bundles never try to resolve it. */
export async function importNode<T>(specifier: string): Promise<T> {
  return (await import(/* @vite-ignore */ specifier)) as T;
}

export function nodeFs(): Promise<typeof import("node:fs/promises")> {
  return importNode("node:fs/promises");
}

export function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}
