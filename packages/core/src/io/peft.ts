/**
 * Hugging Face PEFT's adapter files: adapter_config.json and adapter_model.safetensors, with keys
 * `base_model.model.<module>.lora_A.weight` ([r, in]), `.lora_B.weight` ([out, r]) and DoRA's
 * `.lora_magnitude_vector` ([out]; PEFT's save_and_load strips the ".weight" its DoRA layer has in memory).
 * Bytes and names only: the lora layer gives them meaning.
 */
import { FormatError } from "../errors.js";
import { writeFilesAtomically } from "./atomic_write.js";
import type { ModelFiles } from "./model_files.js";
import {
  checkFinite,
  openSafetensors,
  writeSafetensors,
  type CpuTensor,
} from "./safetensors.js";

export const ADAPTER_CONFIG = "adapter_config.json";
export const ADAPTER_WEIGHTS = "adapter_model.safetensors";
const PREFIX = "base_model.model.";

export type AdapterPart = "lora_A" | "lora_B" | "lora_magnitude_vector";

/** One module's tensors in an adapter file. */
export interface AdapterTensors {
  lora_A?: CpuTensor;
  lora_B?: CpuTensor;
  lora_magnitude_vector?: CpuTensor;
}

/** One module's adapter values, as written: A [r, in], B [out, r], DoRA magnitude [out]. */
export interface ModuleToWrite {
  A: Float32Array;
  aShape: number[];
  B: Float32Array;
  bShape: number[];
  magnitude?: Float32Array;
}

/** The two files, as `saveAdapter` returns them and the helpers write them. */
export interface AdapterFiles {
  [ADAPTER_CONFIG]: string;
  [ADAPTER_WEIGHTS]: Uint8Array;
}

export function adapterKey(module: string, part: AdapterPart): string {
  return part === "lora_magnitude_vector"
    ? `${PREFIX}${module}.${part}`
    : `${PREFIX}${module}.${part}.weight`;
}

/**
 * Splits a key into module and part. Accepts PEFT's older and newer spellings: with or without the
 * "base_model.model." prefix, with an adapter name segment (".default."), and the magnitude without ".weight".
 */
export function parseAdapterKey(
  key: string,
  file: string,
): { module: string; part: AdapterPart } {
  if (/\.lora_embedding_[AB]\b/.test(key)) {
    throw new FormatError(
      `${file}: "${key}" is a LoRA on an embedding layer; webtune adapts Linear layers only. ` +
        "Retrain without the embedding in target_modules.",
    );
  }
  const m =
    /^(?:base_model\.model\.)?(.+)\.(lora_A|lora_B|lora_magnitude_vector)(?:\.[^.]+)?(?:\.weight)?$/.exec(
      key,
    );
  if (!m) {
    throw new FormatError(
      `${file}: unexpected tensor "${key}"; a LoRA adapter holds <module>.lora_A.weight, <module>.lora_B.weight ` +
        "and, with DoRA, <module>.lora_magnitude_vector.",
    );
  }
  return { module: m[1]!, part: m[2] as AdapterPart };
}

/** A tensor of a module trained in full beside the adapter (PEFT's modules_to_save), by its saved key. */
export interface SavedModuleTensor {
  /** e.g. "score.weight": saved as "base_model.model.score.weight", as PEFT saves modules_to_save. */
  key: string;
  shape: number[];
  data: Float32Array;
}

/**
 * The module and parameter of a modules_to_save tensor, in any spelling PEFT has used: current PEFT saves
 * `base_model.model.score.weight` (the wrapper's `modules_to_save.<adapter>` is dropped on save), older files may
 * keep `score.modules_to_save.default.weight`. Undefined for a key that names none of `modulesToSave`.
 */
export function parseSavedModuleKey(
  key: string,
  modulesToSave: readonly string[],
): { module: string; param: "weight" | "bias" } | undefined {
  const m =
    /^(?:base_model\.model\.)?(.+?)(?:\.modules_to_save(?:\.[^.]+)?)?\.(weight|bias)$/.exec(
      key,
    );
  if (!m) return undefined;
  const module = m[1]!;
  const last = module.split(".").at(-1)!;
  return modulesToSave.includes(module) || modulesToSave.includes(last)
    ? { module, param: m[2] as "weight" | "bias" }
    : undefined;
}

/** Writes adapter_model.safetensors (F32) and adapter_config.json (2-space JSON, as PEFT writes it). */
export function writeAdapterFiles(
  config: Record<string, unknown>,
  modules: Map<string, ModuleToWrite>,
  saved: SavedModuleTensor[] = [],
): AdapterFiles {
  const tensors: Record<
    string,
    { dtype: "F32"; shape: number[]; data: Float32Array }
  > = {};
  for (const [module, t] of [...modules].sort(([a], [b]) => (a < b ? -1 : 1))) {
    tensors[adapterKey(module, "lora_A")] = {
      dtype: "F32",
      shape: t.aShape,
      data: t.A,
    };
    tensors[adapterKey(module, "lora_B")] = {
      dtype: "F32",
      shape: t.bShape,
      data: t.B,
    };
    if (t.magnitude) {
      tensors[adapterKey(module, "lora_magnitude_vector")] = {
        dtype: "F32",
        shape: [t.magnitude.length],
        data: t.magnitude,
      };
    }
  }
  for (const t of saved)
    tensors[`base_model.model.${t.key}`] = {
      dtype: "F32",
      shape: t.shape,
      data: t.data,
    };
  // What loading refuses is never written: an adapter with a NaN or Inf is one that diverged.
  for (const [name, t] of Object.entries(tensors))
    checkFinite({ name, ...t }, `the adapter to save (${ADAPTER_WEIGHTS})`);
  return {
    [ADAPTER_CONFIG]: JSON.stringify(config, null, 2),
    [ADAPTER_WEIGHTS]: writeSafetensors(tensors, { format: "pt" }),
  };
}

/** Reads both files: the raw config object, and each module's tensors. */
export async function readAdapterFiles(files: ModelFiles): Promise<{
  config: Record<string, unknown>;
  modules: Map<string, AdapterTensors>;
  /** modules_to_save tensors by "<module>.<weight|bias>". */
  saved: Map<string, CpuTensor>;
}> {
  const config = await files.json<Record<string, unknown>>(ADAPTER_CONFIG);
  if (typeof config !== "object" || config === null || Array.isArray(config)) {
    throw new FormatError(
      `${files.source}/${ADAPTER_CONFIG} is not a JSON object.`,
    );
  }
  if (config["peft_type"] !== undefined && config["peft_type"] !== "LORA") {
    throw new FormatError(
      `${files.source}/${ADAPTER_CONFIG}: peft_type is ${JSON.stringify(config["peft_type"])}; webtune loads LoRA adapters ("LORA").`,
    );
  }
  const file = `${files.source}/${ADAPTER_WEIGHTS}`;
  const reader = await openSafetensors(await files.bytes(ADAPTER_WEIGHTS));
  const modules = new Map<string, AdapterTensors>();
  const saved = new Map<string, CpuTensor>();
  const modulesToSave = Array.isArray(config["modules_to_save"])
    ? (config["modules_to_save"] as unknown[]).filter(
        (m): m is string => typeof m === "string",
      )
    : [];
  for (const key of reader.names) {
    const whole = parseSavedModuleKey(key, modulesToSave);
    if (whole) {
      const tensor = await reader.read(key);
      if (!(tensor.data instanceof Float32Array))
        throw new FormatError(
          `${file}: "${key}" is ${tensor.dtype}; a saved module's weights must be floating point.`,
        );
      checkFinite(tensor, file);
      saved.set(`${whole.module}.${whole.param}`, tensor);
      continue;
    }
    const { module, part } = parseAdapterKey(key, file);
    const tensor = await reader.read(key);
    if (!(tensor.data instanceof Float32Array)) {
      throw new FormatError(
        `${file}: "${key}" is ${tensor.dtype}; adapter weights must be floating point.`,
      );
    }
    checkFinite(tensor, file);
    const entry = modules.get(module) ?? {};
    // Two spellings of one key (with and without "base_model.model.") would otherwise keep the last silently.
    if (entry[part])
      throw new FormatError(
        `${file}: "${entry[part].name}" and "${key}" are both ${part} of module "${module}"; keep one of them.`,
      );
    entry[part] = tensor;
    modules.set(module, entry);
  }
  return { config, modules, saved };
}

/**
 * Writes the two files into a Node directory (created if needed) without ever losing the adapter already there:
 * both are written to temporary names and fsynced, then adapter_model.safetensors is renamed over the old weights
 * and adapter_config.json last, so the config never describes weights that are not on disk (see atomic_write.ts).
 * A full disk throws a WebtuneError naming the folder, and the previous files stay byte for byte as they were.
 */
export async function saveAdapterToDirectory(
  files: AdapterFiles,
  dir: string,
): Promise<void> {
  await writeFilesAtomically(
    dir,
    [
      [ADAPTER_WEIGHTS, files[ADAPTER_WEIGHTS]],
      [ADAPTER_CONFIG, files[ADAPTER_CONFIG]],
    ],
    "the adapter",
  );
}

/** Starts a browser download of each file, named `${prefix}adapter_config.json` and so on. */
export function downloadAdapter(files: AdapterFiles, prefix = ""): void {
  const save = (name: string, data: BlobPart, type: string) => {
    const url = URL.createObjectURL(new Blob([data], { type }));
    const a = Object.assign(document.createElement("a"), {
      href: url,
      download: `${prefix}${name}`,
    });
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  };
  save(ADAPTER_CONFIG, files[ADAPTER_CONFIG], "application/json");
  save(
    ADAPTER_WEIGHTS,
    files[ADAPTER_WEIGHTS] as Uint8Array<ArrayBuffer>,
    "application/octet-stream",
  );
}

/** The two files held in memory, as a ModelFiles source (for loading what saveAdapter returned). */
export function adapterFilesSource(files: AdapterFiles): File[] {
  return [
    new File([files[ADAPTER_CONFIG]], ADAPTER_CONFIG),
    new File(
      [files[ADAPTER_WEIGHTS] as Uint8Array<ArrayBuffer>],
      ADAPTER_WEIGHTS,
    ),
  ];
}
