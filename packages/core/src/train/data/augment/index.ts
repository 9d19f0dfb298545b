/**
 * Text augmentation: EDA (Wei & Zou 2019), synonym replacement, random insertion, swap and deletion, seeded per
 * row, with synonyms from a lexicon file (webtune's is WordNet 3.0's, demo/public/data/lexicon/synonyms.tsv).
 *
 * @example
 * ```ts
 * const lexicon = parseLexicon(tsvText, "synonyms.tsv");
 * const variants = edaVariants(row.text, { count: 4, alpha: 0.1, lexicon, seed: 0, rowIndex: i });
 * ```
 */
export { parseLexicon, type Lexicon } from "./lexicon.js";
export {
  augmentText,
  edaVariants,
  EDA_OPS,
  type AugmentOptions,
  type EdaOp,
  type EdaOptions,
} from "./eda.js";
