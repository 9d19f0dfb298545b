/**
 * Fuzzing adapter_config.json: random JSON in every field PEFT writes (and in prototype names such as "__proto__"),
 * hostile regexes in target_modules, exclude_modules, rank_pattern, alpha_pattern and layers_pattern, and random
 * file text. Each config parses (and then targets, ranks and alphas every module of a model quickly) or is refused
 * with a WebtuneError; never a TypeError, a SyntaxError from a regex, or a hang.
 */
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { openModelFiles } from "../../../packages/core/src/io/hub.js";
import {
  readAdapterFiles,
  writeAdapterFiles,
} from "../../../packages/core/src/io/peft.js";
import { LORA_DEFAULTS } from "../../../packages/core/src/lora/config.js";
import {
  configFromPeftJson,
  PEFT_PASSIVE_FIELDS,
} from "../../../packages/core/src/lora/peft_config.js";
import {
  isTargeted,
  rankAndAlpha,
  selectTargets,
} from "../../../packages/core/src/lora/target.js";
import { fuzzParameters, Outcomes } from "./fuzz.js";

// configFromPeftJson warns about every field it does not know; hundreds of random fields would flood the log.
beforeAll(() => {
  vi.spyOn(console, "warn").mockImplementation(() => undefined);
});
afterAll(() => {
  vi.restoreAllMocks();
});

const MODULES = [
  "model.layers.0.self_attn.q_proj",
  "model.layers.0.self_attn.v_proj",
  "model.layers.1.mlp.down_proj",
  "transformer.h.11.attn.c_attn",
  // A long name: a backtracking regex on it would never finish.
  `model.layers.2.${"a.".repeat(2_000)}q_proj`,
];

/** Patterns that hang a backtracking engine, that RE2 refuses, or that are merely odd. */
const HOSTILE_PATTERNS = [
  "(.*)*X",
  "(a|a)*b",
  "((a+)+)+$",
  "(.*.*)*q_proj",
  "(x+x+)+y",
  "(",
  ")",
  "[",
  "a)|(b",
  "(?=q)",
  "(?!v)",
  "(?<=x)y",
  "(a)\\1",
  "\\",
  "a{1001}",
  "a{2}{3}",
  "(?P<n>a)",
  "(?i)Q_PROJ",
  "\\p{Greek}",
  "",
  ".*",
  "q_proj|v_proj",
  ".*\\.layers\\.0\\..*",
  "layers",
  "h",
  "x".repeat(20_000),
  "(".repeat(2_000),
];

const pattern = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...HOSTILE_PATTERNS) },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
  {
    weight: 1,
    arbitrary: fc.stringMatching(/^[a-z_.()|*+?\\[\]{}^$0-9]{0,12}$/),
  },
);

const json = fc.jsonValue({ maxDepth: 2 });

/** A value for one field: random JSON, or something shaped like what the field holds. */
const FIELD_VALUES: Record<string, fc.Arbitrary<unknown>> = {
  r: fc.oneof(
    fc.integer({ min: -2, max: 64 }),
    fc.constantFrom(0.5, 1e6, 1e300, -0),
    json,
  ),
  lora_alpha: fc.oneof(fc.double(), json),
  lora_dropout: fc.oneof(fc.double({ min: -1, max: 2 }), json),
  target_modules: fc.oneof(
    pattern,
    fc.array(fc.oneof(pattern, fc.constantFrom("q_proj", "v_proj", "c_attn")), {
      maxLength: 4,
    }),
    fc.constant("all-linear"),
    json,
  ),
  exclude_modules: fc.oneof(
    pattern,
    fc.array(pattern, { maxLength: 3 }),
    fc.constant(null),
    json,
  ),
  rank_pattern: fc.oneof(
    fc.dictionary(pattern, fc.oneof(fc.integer({ min: -1, max: 16 }), json), {
      maxKeys: 4,
    }),
    fc.constant(null),
    json,
  ),
  alpha_pattern: fc.oneof(
    fc.dictionary(pattern, fc.oneof(fc.double(), json), { maxKeys: 4 }),
    fc.constant(null),
    json,
  ),
  layers_to_transform: fc.oneof(
    fc.array(fc.integer({ min: -1, max: 12 }), { maxLength: 3 }),
    fc.integer({ min: -1, max: 12 }),
    fc.constant(null),
    json,
  ),
  layers_pattern: fc.oneof(
    pattern,
    fc.array(pattern, { maxLength: 3 }),
    fc.constant(null),
    json,
  ),
  init_lora_weights: fc.oneof(
    fc.constantFrom(true, false, "gaussian", "pissa"),
    json,
  ),
};

const KEYS = [
  ...Object.keys(LORA_DEFAULTS),
  ...Object.keys(PEFT_PASSIVE_FIELDS),
  "__proto__",
  "constructor",
  "toString",
  "hasOwnProperty",
];

/** adapter_config.json as text (so "__proto__" is an own key, as in a real file), from chosen and random fields. */
const configText = fc
  .tuple(
    fc.record(
      Object.fromEntries(
        // Each field mostly absent (its default), so that some configs parse and reach the matching.
        Object.entries(FIELD_VALUES).map(([k, v]) => [
          k,
          k === "target_modules"
            ? fc.oneof({ weight: 9, arbitrary: v }, fc.constant(undefined))
            : fc.oneof({ weight: 5, arbitrary: fc.constant(undefined) }, v),
        ]),
      ),
    ),
    fc.array(
      fc.tuple(
        fc.oneof(fc.constantFrom(...KEYS), fc.string({ maxLength: 6 })),
        json,
      ),
      {
        maxLength: 4,
      },
    ),
  )
  .map(([fields, extra]) => {
    const parts = [
      ...Object.entries(fields).filter(([, v]) => v !== undefined),
      ...extra,
    ].map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v) ?? "null"}`);
    return `{${parts.join(",")}}`;
  });

function parseAndUse(text: string): void {
  const raw = JSON.parse(text) as Record<string, unknown>;
  const config = configFromPeftJson(raw, "fuzz");
  for (const name of MODULES) {
    isTargeted(config, name);
    rankAndAlpha(config, name);
  }
  selectTargets(config, MODULES, ["model.layers.0.input_layernorm"]);
}

describe("fuzz: adapter_config.json", () => {
  it("random and hostile values in every field", () => {
    const outcomes = new Outcomes();
    fc.assert(
      fc.property(configText, (text) => {
        outcomes.checkSync(() => parseAndUse(text));
      }),
      fuzzParameters(1500, 11),
    );
    expect(outcomes.parsed).toBeGreaterThan(outcomes.total / 50);
    expect(outcomes.refused).toBeGreaterThan(outcomes.total / 5);
  });

  it("regressions: values that threw TypeErrors or hung before", () => {
    const outcomes = new Outcomes();
    for (const fields of [
      { layers_pattern: { a: 1 } }, // for...of over an object
      { modules_to_save: "lm_head" }, // "lm_head".join
      { layers_to_transform: "0" }, // "0".forEach
      { layers_to_transform: [0], layers_pattern: 7 },
      { rank_pattern: "q_proj" },
      { target_modules: "(.*)*X" }, // minutes of backtracking on a long name
      { target_modules: ["q_proj"], rank_pattern: { "(a|a)*b": 2 } },
      { target_modules: "(?=q)" }, // a SyntaxError from RegExp
      { lora_dropout: "0.1" }, // accepted as a string before
    ])
      outcomes.checkSync(() =>
        parseAndUse(JSON.stringify({ target_modules: ["q_proj"], ...fields })),
      );
    expect(outcomes.refused).toBe(8);
    // (a|a)*b parses and ranks every module quickly; (.*)*X parses, quickly matches nothing, and is refused for it.
    expect(outcomes.parsed).toBe(1);
  });

  it("the whole load: random config text beside valid weights", async () => {
    const weights = writeAdapterFiles(
      {},
      new Map([
        [
          "model.layers.0.self_attn.q_proj",
          {
            A: new Float32Array(8),
            aShape: [2, 4],
            B: new Float32Array(8),
            bShape: [4, 2],
          },
        ],
      ]),
    )["adapter_model.safetensors"];
    const outcomes = new Outcomes();
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          configText,
          fc.string({ maxLength: 40 }),
          json.map((v) => JSON.stringify(v) ?? ""),
        ),
        async (text) => {
          const files = [
            new File([text], "adapter_config.json"),
            new File(
              [weights as Uint8Array<ArrayBuffer>],
              "adapter_model.safetensors",
            ),
          ];
          await outcomes.check(async () => {
            const { config } = await readAdapterFiles(
              await openModelFiles(files),
            );
            parseAndUse(JSON.stringify(config));
          });
        },
      ),
      fuzzParameters(500, 12),
    );
    expect(outcomes.refused).toBeGreaterThan(outcomes.total / 5);
  });
});
