/** Reading the golden fixtures written by test/fixtures/golden/make_golden.py. */
import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const GOLDEN_DIR = fileURLToPath(
  new URL("../fixtures/golden/", import.meta.url),
);

export interface Golden {
  input_ids: number[][];
  logits_shape: number[];
  loss: number;
  /** Real configs: the vocabulary entries whose logits were kept. */
  vocab_indices?: number[];
  logits: Float32Array;
}

export function readGolden(dir: string): Golden {
  const meta = JSON.parse(readFileSync(`${dir}/golden.json`, "utf8")) as Omit<
    Golden,
    "logits"
  > & { logits_file: string };
  const bytes = readFileSync(`${dir}/${meta.logits_file}`);
  const logits = new Float32Array(
    bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
  );
  return { ...meta, logits };
}

export function goldenNames(kind: "tiny" | "real"): string[] {
  return readdirSync(`${GOLDEN_DIR}${kind}`).sort();
}

export function readConfig(dir: string): Record<string, unknown> {
  return JSON.parse(readFileSync(`${dir}/config.json`, "utf8")) as Record<
    string,
    unknown
  >;
}
