/** Adapter and model files to and from zips: PEFT's folder layout, one download. */
import { strFromU8, strToU8, unzipSync, zipSync } from "fflate";
import type { AdapterFiles } from "@webtune/core";

const CONFIG = "adapter_config.json";
const WEIGHTS = "adapter_model.safetensors";

/** A zip of files named as in a Hugging Face folder. Safetensors are stored, not deflated (floats barely shrink). */
export function zipFolder(
  files: Record<string, Uint8Array | string>,
): Uint8Array {
  return zipSync(
    Object.fromEntries(
      Object.entries(files).map(([name, data]) => [
        name,
        [
          typeof data === "string" ? strToU8(data) : data,
          { level: name.endsWith(".safetensors") ? 0 : 6 },
        ],
      ]),
    ),
  );
}

/** A bad adapter upload, named by file. */
export class AdapterUploadError extends Error {
  override name = "AdapterUploadError";
}

/**
 * Reads a picked adapter: a zip from this page or of a PEFT folder, or the two files themselves.
 * Files inside a folder of the zip are found by their base names.
 */
export async function readAdapterUpload(files: File[]): Promise<AdapterFiles> {
  const named: Record<string, Uint8Array> = {};
  for (const file of files) {
    const bytes = new Uint8Array(await file.arrayBuffer());
    if (file.name.endsWith(".zip")) {
      let entries: Record<string, Uint8Array>;
      try {
        entries = unzipSync(bytes);
      } catch (error) {
        throw new AdapterUploadError(
          `${file.name} is not a readable zip (${String(error)}).`,
        );
      }
      for (const [path, data] of Object.entries(entries))
        named[path.split("/").at(-1)!] = data;
    } else named[file.name] = bytes;
  }
  const missing = [CONFIG, WEIGHTS].filter((n) => !(n in named));
  if (missing.length > 0)
    throw new AdapterUploadError(
      `${files.map((f) => f.name).join(", ")}: no ${missing.join(" or ")}. Pick PEFT's ${CONFIG} and ${WEIGHTS}, or a zip holding them.`,
    );
  return {
    [CONFIG]: strFromU8(named[CONFIG]!),
    [WEIGHTS]: named[WEIGHTS]!,
  } as AdapterFiles;
}
