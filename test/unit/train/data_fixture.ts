/** Shared by the dataset tests: the tiny-chatml tokenizer and the files of test/fixtures/datasets/. */
import { readFileSync } from "node:fs";
import { Tokenizer } from "../../../packages/core/src/models/tokenizer.js";

const fixture = (path: string) =>
  new URL(`../../fixtures/${path}`, import.meta.url);

/** The tiny ChatML tokenizer: EOS (and pad) is `<|im_end|>` = 392, no BOS added on encode. */
export function loadTokenizer(): Promise<Tokenizer> {
  const read = (file: string) =>
    readFileSync(fixture(`tokenizers/tiny-chatml/${file}`), "utf8");
  return Tokenizer.fromFiles(
    {
      tokenizerJson: read("tokenizer.json"),
      tokenizerConfig: read("tokenizer_config.json"),
    },
    { source: "tiny-chatml" },
  );
}

/** A file of test/fixtures/datasets/ as text. */
export function readDataset(name: string): string {
  return readFileSync(fixture(`datasets/${name}`), "utf8");
}

/** A file of test/fixtures/datasets/ as bytes. */
export function readDatasetBytes(name: string): Uint8Array {
  return new Uint8Array(readFileSync(fixture(`datasets/${name}`)));
}

export const EOS = 392;
export const I = -100;
