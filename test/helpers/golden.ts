/** Reading the golden fixtures written by test/fixtures/golden/make_golden.py. */
import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { expect } from "vitest";
import type * as tf from "@tensorflow/tfjs";
import { expectClose } from "./tensors.js";

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

/** What a golden comparison needs of a model: a PretrainedModel or a bare CausalLM. */
interface LogitsAndLoss {
  logits(ids: number[][]): tf.Tensor3D;
  loss(ids: number[][]): tf.Scalar;
}

/**
 * A model's logits on the golden ids within 1e-4 relative (expectClose), only at `vocab_indices` where the golden
 * kept a subset of the vocabulary, and its loss within 1e-5.
 */
export async function expectMatchesGolden(
  model: LogitsAndLoss,
  golden: Golden,
  what: string,
): Promise<void> {
  const logits = model.logits(golden.input_ids);
  const [B, T, V] = logits.shape;
  const all = (await logits.data()) as Float32Array;
  logits.dispose();
  const indices = golden.vocab_indices;
  if (indices) {
    expect([B, T, indices.length]).toEqual(golden.logits_shape);
    const picked = new Float32Array(B * T * indices.length);
    for (let row = 0; row < B * T; row++)
      indices.forEach(
        (v, j) => (picked[row * indices.length + j] = all[row * V + v]!),
      );
    expectClose(picked, golden.logits, 1e-4, `${what} logits`);
  } else {
    expect([B, T, V]).toEqual(golden.logits_shape);
    expectClose(all, golden.logits, 1e-4, `${what} logits`);
  }
  const loss = model.loss(golden.input_ids);
  const value = (await loss.data())[0]!;
  loss.dispose();
  expect(
    Math.abs(value - golden.loss) / golden.loss,
    `${what} loss ${value} vs ${golden.loss}`,
  ).toBeLessThan(1e-5);
}
