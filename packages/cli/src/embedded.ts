/**
 * The embedded default: webtune's own small pretrained model, shipped in the repository under demo/public/models/
 * (the demo app serves the same folder), so that every command works offline when --model is left out.
 */
import { fileURLToPath } from "node:url";

/** The demo base model's folder: packages/cli/{src,dist}/ → the repository root → demo/public/models/. */
export const EMBEDDED_MODEL = fileURLToPath(
  new URL("../../../demo/public/models/webtune-demo-base", import.meta.url),
);

/** The synonym lexicon text-level augmentation uses by default: WordNet 3.0's, converted by scripts/lexicon/. */
export const EMBEDDED_LEXICON = fileURLToPath(
  new URL("../../../demo/public/data/lexicon/synonyms.tsv", import.meta.url),
);
