/**
 * Datasets for training: parse JSONL, CSV or text; detect or pick the format; clean with a report; tokenize with
 * loss masks; split with a seed; batch with padding or packing.
 *
 * @example
 * ```ts
 * const data = buildDataset(fileText, tokenizer, { source: 'train.jsonl', maxLength: 512, onError: 'skip' });
 * const { train, val } = splitDataset(data.examples, { val: 0.1, seed: 0 });
 * for (const batch of batches(train, { batchSize: 8, padId: tokenizer.padTokenId ?? 0, seed: 0, epoch: 0 })) {
 *   // batch.inputIds, batch.labels, batch.attentionMask
 * }
 * ```
 */
export {
  API_OPTION_NAMES,
  DATASET_FORMATS,
  RowFormatError,
  type AugmentOrigin,
  type AugmentReport,
  type CleaningReport,
  type DatasetFormat,
  type DatasetInput,
  type DropReason,
  type DroppedRow,
  type Example,
  type FileType,
  type OnError,
  type OptionNames,
} from "./types.js";
export {
  parseRows,
  type ParseOptions,
  type ParsedRows,
  type Row,
} from "./parse.js";
export { detectFormat } from "./formats.js";
export {
  alpacaPrompt,
  classificationPair,
  type ClassificationTemplate,
  type DatasetTokenizer,
  type InstructionFields,
  type InstructionTemplate,
  type RenderOptions,
} from "./render.js";
export {
  buildDataset,
  EmptyDatasetError,
  type BuildOptions,
  type Dataset,
  type TextBlocks,
} from "./build.js";
export { splitDataset, type SplitOptions, type Splits } from "./split.js";
export { findOverlap, type Overlap } from "./overlap.js";
export {
  batches,
  epochBatches,
  epochSequence,
  countBatches,
  type Batch,
  type BatchOptions,
  type Tokenized,
} from "./batch.js";
export {
  mixedSequence,
  temperatureWeights,
  type MixOptions,
  type MixSource,
} from "./mix.js";
export {
  alignTags,
  checkKnownTags,
  checkTagScheme,
  parseConll,
  parseTaggedJsonl,
  tagVocabulary,
  wordPredictions,
  type AlignedTags,
  type AlignOptions,
  type TaggedRow,
} from "./token_tags.js";
export {
  sequenceExample,
  taggedDataset,
  type TaggedDataset,
} from "./head_examples.js";
export {
  augmentText,
  edaVariants,
  parseLexicon,
  EDA_OPS,
  type AugmentOptions,
  type EdaOp,
  type EdaOptions,
  type Lexicon,
} from "./augment/index.js";
