/**
 * Sharded checkpoints: `model.safetensors.index.json` maps each tensor to a shard file. One reader serves
 * them all and opens each shard's header the first time one of its tensors is asked for.
 */
import { FormatError } from "../errors.js";
import type { ByteSource } from "./byte_source.js";
import { FileNotFoundError } from "../errors.js";
import type { ModelFiles } from "./model_files.js";
import {
  missingTensor,
  openSafetensors,
  type CpuTensor,
  type SafetensorsFile,
  type SafetensorsReader,
  type TensorInfo,
} from "./safetensors.js";

export interface ShardedOptions {
  /** The index file's name, for messages. */
  indexName: string;
  /** Opens a shard by the file name the index gives; a FileNotFoundError means the shard is missing. */
  openShard: (file: string) => Promise<ByteSource>;
}

/**
 * A reader over the shards of a sharded checkpoint, given its parsed index JSON.
 *
 * @example
 * ```ts
 * const index = await files.json("model.safetensors.index.json");
 * const st = openShardedSafetensors(index, {
 *   indexName: "model.safetensors.index.json",
 *   openShard: (file) => files.bytes(file),
 * });
 * const embed = await st.read("model.embed_tokens.weight");
 * ```
 */
export function openShardedSafetensors(
  index: unknown,
  options: ShardedOptions,
): SafetensorsReader {
  const { weightMap, metadata } = parseIndex(index, options.indexName);
  return new ShardedSafetensors(weightMap, metadata, options);
}

function parseIndex(
  index: unknown,
  indexName: string,
): { weightMap: Map<string, string>; metadata: Record<string, string> } {
  const bad = (problem: string) =>
    new FormatError(
      `${indexName} is not a valid safetensors index: ${problem}. Expected {"metadata": {...}, "weight_map": {tensor: shard file}}.`,
    );
  if (typeof index !== "object" || index === null || Array.isArray(index))
    throw bad("it is not a JSON object");
  const { weight_map: map, metadata } = index as Record<string, unknown>;
  if (typeof map !== "object" || map === null || Array.isArray(map))
    throw bad(`"weight_map" is missing or not an object`);
  const weightMap = new Map<string, string>();
  for (const [name, file] of Object.entries(map)) {
    if (typeof file !== "string" || file === "")
      throw bad(
        `"weight_map" gives tensor "${name}" the shard ${JSON.stringify(file)}`,
      );
    weightMap.set(name, file);
  }
  if (
    metadata !== undefined &&
    (typeof metadata !== "object" ||
      metadata === null ||
      Array.isArray(metadata))
  )
    throw bad(`"metadata" is not an object`);
  // Index metadata holds numbers (total_size); strings keep one metadata type across readers.
  const strings = Object.entries(metadata ?? {}).map(([k, v]) => [
    k,
    typeof v === "string" ? v : JSON.stringify(v),
  ]);
  return { weightMap, metadata: Object.fromEntries(strings) };
}

class ShardedSafetensors implements SafetensorsReader {
  readonly names: readonly string[];
  readonly source: string;
  private readonly shards = new Map<string, Promise<SafetensorsFile>>();

  constructor(
    private readonly weightMap: ReadonlyMap<string, string>,
    readonly metadata: Readonly<Record<string, string>>,
    private readonly options: ShardedOptions,
  ) {
    this.names = [...weightMap.keys()];
    this.source = options.indexName;
  }

  has(name: string): boolean {
    return this.weightMap.has(name);
  }

  async info(name: string): Promise<TensorInfo> {
    return (await this.shardOf(name)).info(name);
  }

  async read(name: string): Promise<CpuTensor> {
    return (await this.shardOf(name)).read(name);
  }

  async readUint16(name: string): Promise<Uint16Array> {
    return (await this.shardOf(name)).readUint16(name);
  }

  async readBytes(name: string): Promise<Uint8Array> {
    return (await this.shardOf(name)).readBytes(name);
  }

  private async shardOf(name: string): Promise<SafetensorsFile> {
    const file = this.weightMap.get(name);
    if (file === undefined) throw missingTensor(this.source, name, this.names);
    const shard = await this.openShard(file, name);
    if (!shard.has(name)) {
      throw new FormatError(
        `${this.source} puts tensor "${name}" in ${file}, but that shard has no such tensor. ` +
          `The index and the shards do not match; download the checkpoint again.`,
      );
    }
    return shard;
  }

  /** Opens each shard once; a failed open is forgotten so a retry can succeed. */
  private openShard(file: string, tensor: string): Promise<SafetensorsFile> {
    let shard = this.shards.get(file);
    if (!shard) {
      shard = this.options
        .openShard(file)
        .then(openSafetensors)
        .catch((cause: unknown) => {
          this.shards.delete(file);
          if (!(cause instanceof FileNotFoundError)) throw cause;
          throw new FormatError(
            `${this.source} puts tensor "${tensor}" in shard "${file}", which is missing: ${cause.message}`,
            { cause },
          );
        });
      this.shards.set(file, shard);
    }
    return shard;
  }
}

/**
 * Opens a model's weights from its folder: `model.safetensors` if present, else the sharded
 * `model.safetensors.index.json` and its shards. `file` picks another name, e.g. `adapter_model.safetensors`.
 *
 * @example
 * ```ts
 * const weights = await openModelWeights(await openModelFiles("Qwen/Qwen2.5-0.5B"));
 * for (const name of weights.names) upload(name, await weights.read(name));
 * ```
 */
export async function openModelWeights(
  files: ModelFiles,
  file = "model.safetensors",
): Promise<SafetensorsReader> {
  // The single file first: with a warm cache it answers without touching the network.
  if (await files.has(file)) return openSafetensors(await files.bytes(file));
  const indexName = `${file}.index.json`;
  if (await files.has(indexName)) {
    const index = await files.json(indexName);
    const dir = file.includes("/")
      ? file.slice(0, file.lastIndexOf("/") + 1)
      : "";
    return openShardedSafetensors(index, {
      indexName: `${indexName} from ${files.source}`,
      openShard: (shard) => files.bytes(dir + shard),
    });
  }
  throw new FileNotFoundError(
    `${files.source} has neither ${file} nor ${indexName}. webtune loads safetensors weights only; ` +
      `if the model has just pytorch_model.bin, convert it (e.g. with transformers' save_pretrained(safe_serialization=True)).`,
    { source: files.source, file },
  );
}
