/**
 * The tokenizer: Hugging Face's `tokenizer.json` run by @xenova/transformers, given as file contents that the
 * caller loaded through webtune's io layer, so that no network or cache path exists here.
 *
 * Import path. The package's main entry also loads its models, pipelines and sharp (a native image library, which
 * fails to import where its binary is missing), and bundles about 150 KB more. `src/tokenizers.js` is the lightest
 * module that has the tokenizers; it still imports onnxruntime through the package's `env.js`, so it is loaded
 * lazily, on the first `Tokenizer.fromFiles`, and a bundler puts it in its own chunk. The package has no `exports`
 * map, so this deep import resolves in Node and in Vite alike, and its `browser` field stubs out `fs`, `path` and
 * onnxruntime-node in browser bundles.
 */
import { ConfigError, FormatError } from "../errors.js";
import {
  assistantCharSpans,
  checkMessages,
  readChatTemplates,
  selectChatTemplate,
  spanMask,
  tokenSpans,
  type ChatEncoding,
  type ChatMessage,
  type ChatTemplateOptions,
} from "./chat_template.js";

export type {
  ChatEncoding,
  ChatMessage,
  ChatTemplateOptions,
  TokenSpan,
} from "./chat_template.js";

/** A JSON file: its parsed contents, or its text. */
export type JsonFile = string | object;

/** The files of a Hugging Face tokenizer, as loaded by the caller (hub, URL, browser files or a Node folder). */
export interface TokenizerFiles {
  /** `tokenizer.json` (the "fast" tokenizer file). */
  tokenizerJson: JsonFile;
  /** `tokenizer_config.json`: special tokens, `chat_template`, `tokenizer_class`. */
  tokenizerConfig: JsonFile;
  /** `generation_config.json`, if the model has one: its `eos_token_id` (often a list) adds stop tokens. */
  generationConfig?: JsonFile;
  /** The text of `chat_template.jinja`, if the model ships one; it wins over tokenizer_config's `chat_template`. */
  chatTemplate?: string;
}

export interface TokenizerOptions {
  /** Where the files came from (a hub id, URL or folder), named in error messages. */
  source?: string;
}

export interface EncodeOptions {
  /** Add the special tokens of the tokenizer's post-processor, e.g. Llama 3's BOS. Default true. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens such as `<|im_end|>` from the text. Default false. */
  skipSpecialTokens?: boolean;
  /**
   * Remove spaces before punctuation (" ," becomes ","), as Hugging Face does for some tokenizers.
   * Default: tokenizer_config.json's `clean_up_tokenization_spaces`, true when absent.
   */
  cleanUpTokenizationSpaces?: boolean;
}

// The part of @xenova/transformers' PreTrainedTokenizer that this file uses.
interface XenovaTokenizer {
  model: { vocab: (string | undefined)[]; tokens_to_ids: Map<string, number> };
  special_tokens: string[];
  all_special_ids: number[];
  encode(
    text: string,
    textPair: null,
    options: { add_special_tokens: boolean },
  ): (number | undefined)[];
  decode(
    ids: number[],
    options: {
      skip_special_tokens: boolean;
      clean_up_tokenization_spaces: boolean | null;
    },
  ): string;
  apply_chat_template(
    messages: readonly ChatMessage[],
    options: {
      chat_template: string;
      add_generation_prompt: boolean;
      tokenize: false;
    },
  ): string;
}
type XenovaTokenizerClass = new (
  tokenizerJson: object,
  tokenizerConfig: object,
) => XenovaTokenizer;
interface XenovaTokenizersModule {
  AutoTokenizer: {
    TOKENIZER_CLASS_MAPPING: Record<string, XenovaTokenizerClass>;
  };
  PreTrainedTokenizer: XenovaTokenizerClass;
}
interface XenovaEnv {
  allowRemoteModels: boolean;
  allowLocalModels: boolean;
  useBrowserCache: boolean;
  useFSCache: boolean;
}

let xenova: Promise<XenovaTokenizersModule> | undefined;

function loadXenova(): Promise<XenovaTokenizersModule> {
  xenova ??= Promise.all([
    // @ts-expect-error -- an untyped file of the package; XenovaTokenizersModule above declares what is used.
    import("@xenova/transformers/src/tokenizers.js"),
    // @ts-expect-error -- same, for XenovaEnv.
    import("@xenova/transformers/src/env.js"),
  ]).then(
    ([tokenizers, envModule]: [XenovaTokenizersModule, { env: XenovaEnv }]) => {
      closeHubAccess(envModule.env);
      return tokenizers;
    },
    (e: unknown) => {
      xenova = undefined; // let a later call try again
      throw e;
    },
  );
  return xenova;
}

/**
 * Nothing here calls transformers.js' hub loader; these flags make sure that nothing can, so that a tokenizer never
 * fetches from huggingface.co, reads its `/models/` folder, or writes its file or browser cache. They are global to
 * transformers.js: an app that also loads transformers.js models from the hub must pass their files itself.
 */
function closeHubAccess(env: XenovaEnv): void {
  env.allowRemoteModels = false;
  env.allowLocalModels = false;
  env.useBrowserCache = false;
  env.useFSCache = false;
}

const SPECIAL_TOKEN_KEYS = [
  "bos_token",
  "eos_token",
  "unk_token",
  "sep_token",
  "pad_token",
  "cls_token",
  "mask_token",
] as const;

/**
 * A Hugging Face tokenizer (BPE, Unigram or WordPiece `tokenizer.json`), with its special tokens and chat template.
 *
 * @example
 * ```ts
 * const tok = await Tokenizer.fromFiles(
 *   { tokenizerJson, tokenizerConfig, generationConfig }, // parsed JSON or file text, from webtune's io layer
 *   { source: 'HuggingFaceTB/SmolLM2-135M-Instruct' },
 * );
 * const ids = tok.encode('Hello world');
 * tok.decode(ids); // 'Hello world'
 * const prompt = tok.applyChatTemplate([{ role: 'user', content: 'Hi!' }], { addGenerationPrompt: true });
 * const { ids: chatIds, assistantMask } = tok.encodeChat([
 *   { role: 'user', content: 'Hi!' },
 *   { role: 'assistant', content: 'Hello! How can I help?' },
 * ]); // loss where assistantMask is 1
 * ```
 */
export class Tokenizer {
  /** Where the files came from, as named in error messages. */
  readonly source: string;
  /** One more than the largest token id. A model's embedding may have more rows (padded for speed). */
  readonly vocabSize: number;
  /** `bos_token` of tokenizer_config.json, if it names a token of the vocabulary. */
  readonly bosTokenId: number | undefined;
  /** `eos_token` of tokenizer_config.json (for chat models, the end-of-turn token), if in the vocabulary. */
  readonly eosTokenId: number | undefined;
  /** `pad_token`, else the EOS token (as transformers.js does); padding is masked out, so it need only exist. */
  readonly padTokenId: number | undefined;
  /** `unk_token`, if any; byte-level tokenizers have none, as they can encode every byte. */
  readonly unkTokenId: number | undefined;
  /** Tokens that end generation: the EOS token and generation_config.json's `eos_token_id`s, without repeats. */
  readonly stopTokenIds: readonly number[];

  private readonly inner: XenovaTokenizer;
  private readonly templates: ReadonlyMap<string, string>;
  private readonly specialIds: ReadonlySet<number>;

  private constructor(
    inner: XenovaTokenizer,
    config: Record<string, unknown>,
    generationEos: number[],
    templates: Map<string, string>,
    source: string,
  ) {
    this.inner = inner;
    this.templates = templates;
    this.source = source;
    this.vocabSize = inner.model.vocab.length;
    const idOf = (key: string) => {
      const token = config[key];
      return typeof token === "string" ? this.tokenToId(token) : undefined;
    };
    this.bosTokenId = idOf("bos_token");
    this.eosTokenId = idOf("eos_token");
    this.padTokenId = idOf("pad_token") ?? this.eosTokenId;
    this.unkTokenId = idOf("unk_token");
    this.stopTokenIds = [
      ...new Set(
        [this.eosTokenId, ...generationEos].filter((id) => id !== undefined),
      ),
    ];
    this.specialIds = new Set([
      ...inner.all_special_ids,
      ...inner.special_tokens
        .map((token) => this.tokenToId(token))
        .filter((id) => id !== undefined),
    ]);
  }

  /**
   * Builds the tokenizer from its files. Throws a FormatError naming `options.source` when a file is not valid JSON
   * or not a Hugging Face tokenizer file.
   */
  static async fromFiles(
    files: TokenizerFiles,
    options: TokenizerOptions = {},
  ): Promise<Tokenizer> {
    const source = options.source ?? "the given tokenizer files";
    const json = readTokenizerJson(files.tokenizerJson, source);
    const rawConfig = readJsonObject(
      files.tokenizerConfig,
      "tokenizer_config.json",
      source,
    );
    const templates = readChatTemplates(
      rawConfig["chat_template"],
      files.chatTemplate,
      source,
    );
    const config = normalizeConfig(rawConfig, source);
    const generationEos =
      files.generationConfig === undefined
        ? []
        : readGenerationEos(files.generationConfig, source);
    const inner = construct(await loadXenova(), json, config, source);
    return new Tokenizer(inner, config, generationEos, templates, source);
  }

  /** Token ids of `text`. Special-token strings in the text (e.g. `<|im_end|>`) become their single ids. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const ids = this.inner.encode(text, null, {
      add_special_tokens: options.addSpecialTokens ?? true,
    });
    if (ids.some((id) => id === undefined)) {
      const shown = text.length > 40 ? `${text.slice(0, 40)}…` : text;
      throw new FormatError(
        `${JSON.stringify(shown)} has a piece that ${this.source} cannot encode: no vocabulary entry fits it and ` +
          `the tokenizer has no unk_token. Remove or replace such characters before tokenizing.`,
      );
    }
    return ids as number[];
  }

  /**
   * The text of `ids`. An id with no token (a model's embedding may have more rows than the tokenizer has tokens)
   * decodes to nothing, as in Hugging Face tokenizers; an id that is not an integer throws a ConfigError.
   */
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const list = Array.from(ids, (id) => this.checkId(id)).filter(
      (id) => this.inner.model.vocab[id] !== undefined,
    );
    if (list.length === 0) return "";
    return this.inner.decode(list, {
      skip_special_tokens: options.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: options.cleanUpTokenizationSpaces ?? null,
    });
  }

  /** The id of a vocabulary entry, in its stored form (byte-level BPE stores " world" as "Ġworld"). */
  tokenToId(token: string): number | undefined {
    return this.inner.model.tokens_to_ids.get(token);
  }

  /** The vocabulary entry of an id, in its stored form (see {@link Tokenizer.tokenToId}). */
  idToToken(id: number): string | undefined {
    return this.inner.model.vocab[id];
  }

  /** Whether `id` is a special token: one that `skipSpecialTokens` drops, such as BOS, EOS or `<|im_start|>`. */
  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  /** Names of the chat templates (`default` for a single one); empty when the tokenizer has none. */
  get chatTemplateNames(): string[] {
    return [...this.templates.keys()];
  }

  /** The Jinja source of a chat template (default: the only or the "default" one), as tokenizer_config.json has it. */
  chatTemplate(name = "default"): string | undefined {
    return this.templates.get(name);
  }

  /**
   * Renders a conversation with the tokenizer's chat template, as Hugging Face's `apply_chat_template` does: the
   * template writes any BOS itself, so tokenizing adds no special tokens. Throws a ConfigError when the tokenizer
   * has no chat template, and a FormatError when the template rejects the conversation.
   */
  applyChatTemplate(
    messages: readonly ChatMessage[],
    options?: ChatTemplateOptions & { tokenize?: false },
  ): string;
  applyChatTemplate(
    messages: readonly ChatMessage[],
    options: ChatTemplateOptions & { tokenize: true },
  ): number[];
  applyChatTemplate(
    messages: readonly ChatMessage[],
    options: ChatTemplateOptions & { tokenize?: boolean } = {},
  ): string | number[] {
    const text = this.renderer(options.templateName)(
      messages,
      options.addGenerationPrompt ?? false,
    );
    return options.tokenize
      ? this.encode(text, { addSpecialTokens: false })
      : text;
  }

  /**
   * Tokenizes a conversation for training: the ids of `applyChatTemplate(messages, { tokenize: true })`, and a
   * mask that is 1 on the tokens of assistant turns (their content and end-of-turn token). See chat_template.ts for
   * how the turns are located.
   */
  encodeChat(
    messages: readonly ChatMessage[],
    options: Pick<ChatTemplateOptions, "templateName"> = {},
  ): ChatEncoding {
    const render = this.renderer(options.templateName);
    const { text, spans } = assistantCharSpans(messages, render, this.source);
    const encodeText = (t: string) =>
      this.encode(t, { addSpecialTokens: false });
    const ids = encodeText(text);
    const assistantSpans = tokenSpans(text, ids, spans, encodeText);
    return {
      text,
      ids,
      assistantMask: spanMask(ids.length, assistantSpans),
      assistantSpans,
    };
  }

  private renderer(templateName: string | undefined) {
    const template = selectChatTemplate(
      this.templates,
      templateName,
      this.source,
    );
    return (messages: readonly ChatMessage[], addGenerationPrompt: boolean) => {
      checkMessages(messages, this.source);
      try {
        return this.inner.apply_chat_template(messages, {
          chat_template: template,
          add_generation_prompt: addGenerationPrompt,
          tokenize: false,
        });
      } catch (e) {
        throw new FormatError(
          `The chat template of ${this.source} failed on this conversation: ${messageOf(e)}. Check the roles ` +
            `and their order (many templates want user and assistant turns to alternate).`,
          { cause: e },
        );
      }
    };
  }

  private checkId(id: number): number {
    if (Number.isInteger(id)) return id;
    throw new ConfigError(
      `decode got ${id} among the token ids for ${this.source}; expected integers. Read ids back from an ` +
        `int32 tensor, or round sampled values.`,
    );
  }
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Parses a JSON file given as text, or checks one given parsed; either way it must be an object. */
function readJsonObject(
  file: JsonFile,
  name: string,
  source: string,
): Record<string, unknown> {
  let value: unknown = file;
  if (typeof file === "string") {
    try {
      value = JSON.parse(file);
    } catch (e) {
      throw new FormatError(
        `${name} of ${source} is not valid JSON (${messageOf(e)}). Re-download the file: it may be truncated, ` +
          `or an HTML error page saved in its place.`,
        { cause: e },
      );
    }
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new FormatError(
      `${name} of ${source} holds ${Array.isArray(value) ? "an array" : String(value)}; expected a JSON ` +
        `object. Check that the right file was passed.`,
    );
  }
  return value as Record<string, unknown>;
}

function readTokenizerJson(file: JsonFile, source: string): object {
  const json = readJsonObject(file, "tokenizer.json", source);
  const model = json["model"];
  if (typeof model !== "object" || model === null) {
    throw new FormatError(
      `tokenizer.json of ${source} has no "model" object; expected a Hugging Face fast-tokenizer file with ` +
        `"model", "pre_tokenizer", "decoder" and "added_tokens". A slow tokenizer (vocab.json + merges.txt, or ` +
        `tokenizer.model) must first be converted: AutoTokenizer.from_pretrained(...).save_pretrained(...) in Python.`,
    );
  }
  const added = json["added_tokens"] ?? [];
  if (!Array.isArray(added)) {
    throw new FormatError(
      `tokenizer.json of ${source}: "added_tokens" is not a list. Re-download or re-save the file.`,
    );
  }
  // transformers.js wants each absent pipeline stage as null; hand-written files often just leave it out.
  const stages = ["normalizer", "pre_tokenizer", "post_processor", "decoder"];
  const absent = Object.fromEntries(stages.map((k) => [k, json[k] ?? null]));
  return { ...json, ...absent, added_tokens: added };
}

/**
 * A copy of tokenizer_config.json with each special token as its text: configs store either `"<s>"` or
 * `{"__type": "AddedToken", "content": "<s>", ...}`. The chat template is blanked: this file picks it.
 */
function normalizeConfig(
  raw: Record<string, unknown>,
  source: string,
): Record<string, unknown> {
  // transformers.js falls back to (and warns about) its own ChatML default when its chat_template is null; the
  // template is always passed explicitly here, so a blank one keeps that fallback unreachable.
  const config: Record<string, unknown> = { ...raw, chat_template: "" };
  for (const key of SPECIAL_TOKEN_KEYS) {
    if (config[key] != null) config[key] = tokenText(config[key], key, source);
  }
  const extra = config["additional_special_tokens"];
  if (extra != null) {
    if (!Array.isArray(extra)) {
      throw new FormatError(
        `tokenizer_config.json of ${source}: "additional_special_tokens" is not a list. Fix the file.`,
      );
    }
    config["additional_special_tokens"] = extra.map((t) =>
      tokenText(t, "additional_special_tokens", source),
    );
  }
  return config;
}

function tokenText(value: unknown, key: string, source: string): string {
  if (typeof value === "string") return value;
  const content = (value as { content?: unknown }).content;
  if (typeof value === "object" && typeof content === "string") return content;
  throw new FormatError(
    `tokenizer_config.json of ${source}: "${key}" is ${JSON.stringify(value)}; expected a token's text or an ` +
      `object with a "content" string. Fix the file.`,
  );
}

/** generation_config.json's `eos_token_id`: one id, a list of ids, or absent. */
function readGenerationEos(file: JsonFile, source: string): number[] {
  const eos = readJsonObject(file, "generation_config.json", source)[
    "eos_token_id"
  ];
  const ids: unknown[] = eos == null ? [] : Array.isArray(eos) ? eos : [eos];
  if (!ids.every((id) => Number.isInteger(id))) {
    throw new FormatError(
      `generation_config.json of ${source}: "eos_token_id" is ${JSON.stringify(eos)}; expected an integer or ` +
        `a list of integers. Fix the file, or leave generationConfig out.`,
    );
  }
  return ids as number[];
}

/** The transformers.js class that `tokenizer_class` names, as its AutoTokenizer picks it, without the hub. */
function construct(
  lib: XenovaTokenizersModule,
  json: object,
  config: Record<string, unknown>,
  source: string,
): XenovaTokenizer {
  const named =
    typeof config["tokenizer_class"] === "string"
      ? config["tokenizer_class"].replace(/Fast$/, "")
      : "PreTrainedTokenizer";
  const mapping = lib.AutoTokenizer.TOKENIZER_CLASS_MAPPING;
  // Subclasses only add legacy SentencePiece handling and default templates (which webtune never uses); every
  // other behaviour comes from tokenizer.json, so an unknown class is served exactly by the base class.
  const Class = Object.hasOwn(mapping, named)
    ? mapping[named]!
    : lib.PreTrainedTokenizer;
  try {
    return new Class(json, config);
  } catch (e) {
    throw new FormatError(
      `tokenizer.json of ${source} could not be read (${messageOf(e)}). Expected a file saved by Hugging Face ` +
        `tokenizers; re-download it, or re-save it with a current version of transformers.`,
      { cause: e },
    );
  }
}
