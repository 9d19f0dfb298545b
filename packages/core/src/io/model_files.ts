/**
 * The files of one model folder, wherever they live. `openModelFiles` (hub.ts) picks the implementation;
 * everything above io/ sees only this interface.
 */
import { ConfigError, FormatError } from "../errors.js";
import type { ByteSource } from "./byte_source.js";

/** What a folder holds, for messages: a model (`config.json`, weights, tokenizer) or a PEFT adapter. */
export type FolderKind = "model" | "adapter";

/**
 * A model folder: `config.json`, `model.safetensors`, `tokenizer.json`, ... File names are relative
 * to the folder and use `/`.
 *
 * @example
 * ```ts
 * const files = await openModelFiles("openai-community/gpt2");
 * const config = await files.json<{ n_layer: number }>("config.json");
 * const weights = await openSafetensors(await files.bytes("model.safetensors"));
 * ```
 */
export interface ModelFiles {
  /** The source as given (hub id, URL, directory, selected files), for messages. */
  readonly source: string;
  /** Whether the folder has the file. Throws only when that cannot be known (network or access errors). */
  has(file: string): Promise<boolean>;
  /** The whole file as UTF-8 text. A missing file throws FileNotFoundError. */
  text(file: string): Promise<string>;
  /** The whole file parsed as JSON; invalid JSON throws FormatError naming the file. */
  json<T = unknown>(file: string): Promise<T>;
  /** Random access to the file, for large ones such as weights. */
  bytes(file: string): Promise<ByteSource>;
}

/** Shared text and JSON reading over `bytes()`; sources that can do better override them. */
export abstract class ModelFilesBase implements ModelFiles {
  abstract readonly source: string;
  abstract has(file: string): Promise<boolean>;
  abstract bytes(file: string): Promise<ByteSource>;

  async text(file: string): Promise<string> {
    const source = await this.bytes(file);
    return new TextDecoder().decode(await source.read(0, source.size));
  }

  async json<T = unknown>(file: string): Promise<T> {
    return parseJson<T>(await this.text(file), file, this.source);
  }
}

export function parseJson<T>(text: string, file: string, source: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (cause) {
    throw new FormatError(
      `${file} from ${source} is not valid JSON (${String(cause)}). Download it again or fix the file.`,
      { cause },
    );
  }
}

/** Refuses names that could leave the model folder: absolute paths, `..`, backslashes, empty parts. */
export function checkFileName(file: string, source: string): void {
  const parts = file.split("/");
  if (
    file.includes("\\") ||
    parts.some((p) => p === "" || p === "." || p === "..")
  ) {
    throw new ConfigError(
      `Invalid file name "${file}" for ${source}: use a relative path inside the model folder, with "/" ` +
        `and no "." or ".." parts, e.g. "config.json" or "onnx/model.onnx".`,
    );
  }
}
