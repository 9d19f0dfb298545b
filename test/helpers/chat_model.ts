/** A small Llama folder with the tiny-chatml test tokenizer and deterministic weights, written to a temp dir. */
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { writeSafetensors } from "../../packages/core/src/io/safetensors.js";
import { checkpointShapes, generateTensor } from "./random_weights.js";

export function chatModelFolder(
  dir = mkdtempSync(join(tmpdir(), "webtune-chat-model-")),
): string {
  mkdirSync(dir, { recursive: true });
  const tokenizers = fileURLToPath(
    new URL("../fixtures/tokenizers/tiny-chatml/", import.meta.url),
  );
  for (const f of readdirSync(tokenizers))
    cpSync(join(tokenizers, f), join(dir, f));
  const config = {
    model_type: "llama",
    vocab_size: 393,
    hidden_size: 32,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    num_hidden_layers: 2,
    intermediate_size: 64,
    tie_word_embeddings: true,
    eos_token_id: 392,
  };
  writeFileSync(join(dir, "config.json"), JSON.stringify(config));
  const tensors = Object.fromEntries(
    Object.entries(checkpointShapes(config)).map(([name, shape]) => [
      name,
      {
        dtype: "F32" as const,
        shape,
        data: generateTensor(
          name,
          shape.reduce((a, b) => a * b, 1),
          "llama",
        ),
      },
    ]),
  );
  writeFileSync(join(dir, "model.safetensors"), writeSafetensors(tensors));
  return dir;
}
