/**
 * The regexes of an adapter config (target_modules, exclude_modules, rank_pattern, alpha_pattern, layers_pattern)
 * run on RE2: a catastrophic-backtracking pattern against a long module name answers right in well under a second,
 * PEFT's matching rules hold (fullmatch for a string target, `(.*\.)?(key)$` for pattern keys, the number after
 * `.<layers_pattern>.`), and a pattern RE2 cannot compile is a ConfigError naming the field and the pattern.
 */
import fc from "fast-check";
import { RE2JS } from "re2js";
import { describe, expect, it } from "vitest";
import { ConfigError, FormatError } from "../../../packages/core/src/errors.js";
import { loraConfig } from "../../../packages/core/src/lora/config.js";
import { configFromPeftJson } from "../../../packages/core/src/lora/peft_config.js";
import {
  matchesPatternKey,
  MAX_PATTERN_CHARS,
} from "../../../packages/core/src/lora/patterns.js";
import {
  isTargeted,
  rankAndAlpha,
} from "../../../packages/core/src/lora/target.js";

/** A module name of about 100k characters: a backtracking RegExp on `(.*)*X` would take longer than the universe. */
const LONG = `model.layers.7.${"a.".repeat(50_000)}self_attn.q_proj`;
const Q = "model.layers.3.self_attn.q_proj";
const V = "model.layers.3.self_attn.v_proj";

function timed<T>(fn: () => T): { value: T; ms: number } {
  const start = performance.now();
  const value = fn();
  return { value, ms: performance.now() - start };
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error("expected a throw");
}

describe("pathological patterns finish in linear time", () => {
  it("target_modules (.*)*X against a 100k-character name: false, in under a second", () => {
    const config = loraConfig({ r: 2, target_modules: "(.*)*X" });
    const { value, ms } = timed(() => isTargeted(config, LONG));
    expect(value).toBe(false);
    expect(ms).toBeLessThan(1000);
    // The same shape of pattern still matches what it should.
    const hit = loraConfig({ r: 2, target_modules: "(.*)*q_proj" });
    expect(isTargeted(hit, LONG)).toBe(true);
    expect(isTargeted(hit, V)).toBe(false);
  });

  it("rank_pattern, alpha_pattern, exclude_modules and layers_pattern with nested quantifiers", () => {
    const config = loraConfig({
      r: 4,
      lora_alpha: 8,
      target_modules: ["q_proj", "v_proj"],
      exclude_modules: "(a|a)*X",
      rank_pattern: { "(.*)*X": 16, "(.*.*)*q_proj": 2 },
      alpha_pattern: { "((a+)+)+X": 32 },
      layers_to_transform: [7],
      layersPattern: "(l|la|lay|laye|layer|layers)+",
    });
    const { value, ms } = timed(() => ({
      targeted: isTargeted(config, LONG),
      ranks: rankAndAlpha(config, LONG),
      other: rankAndAlpha(config, `${"a".repeat(100_000)}.k_proj`),
    }));
    expect(value).toEqual({
      targeted: true,
      ranks: { r: 2, alpha: 8, rankKey: "(.*.*)*q_proj" },
      other: { r: 4, alpha: 8 },
    });
    expect(ms).toBeLessThan(1000);
  });
});

describe("PEFT's matching rules", () => {
  it("a string target is a full match, a list entry an exact name or a dotted suffix", () => {
    const regex = loraConfig({
      r: 2,
      target_modules: ".*layers\\.3\\..*_proj",
    });
    expect(isTargeted(regex, Q)).toBe(true);
    expect(isTargeted(regex, `${Q}.extra`)).toBe(false);
    expect(isTargeted(loraConfig({ r: 2, target_modules: "q_proj" }), Q)).toBe(
      false,
    );
    const list = loraConfig({ r: 2, target_modules: ["q_proj", Q] });
    expect(isTargeted(list, Q)).toBe(true);
    expect(isTargeted(list, "model.layers.3.self_attn.xq_proj")).toBe(false);
  });

  it("pattern keys match the end of the name after a dot; the first key that matches wins", () => {
    const config = loraConfig({
      r: 4,
      target_modules: ["q_proj", "v_proj"],
      lora_alpha: 4,
      rank_pattern: { "layers.3.self_attn.v_proj": 8, "v_proj|q_proj": 2 },
      alpha_pattern: { _proj: 99, "self_attn\\.q_proj": 3 },
    });
    expect(rankAndAlpha(config, V)).toEqual({
      r: 8,
      alpha: 4,
      rankKey: "layers.3.self_attn.v_proj",
    });
    expect(rankAndAlpha(config, Q)).toMatchObject({ r: 2, alpha: 3 });
    expect(rankAndAlpha(config, "v_proj")).toEqual({
      r: 2,
      alpha: 4,
      rankKey: "v_proj|q_proj",
    });
  });

  it("plain keys, compared without a regex, agree with RE2 and with JavaScript's RegExp", () => {
    const part = fc.stringMatching(/^[a-z0-9_.-]{0,6}$/);
    fc.assert(
      fc.property(part, fc.array(part, { maxLength: 5 }), (key, segments) => {
        const name = segments.join(".");
        const re2 = RE2JS.compile(`(?:.*\\.)?(?:${key})`).matches(name);
        expect(matchesPatternKey("rank_pattern", key, name)).toBe(re2);
        expect(new RegExp(`^(.*\\.)?(${key})$`).test(name)).toBe(re2);
      }),
      { seed: 17, numRuns: 500 },
    );
  });

  it("the layer index is the number after the last .<layers_pattern>.", () => {
    const only = (layers_pattern: string | null) =>
      loraConfig({
        r: 2,
        target_modules: ["q_proj"],
        layers_to_transform: [3],
        layersPattern: layers_pattern,
      });
    expect(isTargeted(only("layers"), Q)).toBe(true);
    expect(isTargeted(only("h|layers"), Q)).toBe(true);
    expect(isTargeted(only("(h|layers)"), Q)).toBe(true);
    expect(isTargeted(only("h"), Q)).toBe(false);
    expect(isTargeted(only(null), Q)).toBe(true);
    expect(isTargeted(only(null), "model.layers.4.self_attn.q_proj")).toBe(
      false,
    );
  });
});

describe("patterns RE2 cannot compile", () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    [
      "target_modules",
      { target_modules: "(q_proj" },
      /target_modules "\(q_proj"/,
    ],
    [
      "exclude_modules",
      { target_modules: "all-linear", exclude_modules: "[o_proj" },
      /exclude_modules "\[o_proj"/,
    ],
    [
      "rank_pattern",
      { target_modules: ["q_proj"], rank_pattern: { "(?=v)_proj": 4 } },
      /rank_pattern key "\(\?=v\)_proj".*lookarounds/,
    ],
    [
      "alpha_pattern",
      { target_modules: ["q_proj"], alpha_pattern: { "(a)\\1": 4 } },
      /alpha_pattern key "\(a\)\\\\1"/,
    ],
    [
      "layers_pattern",
      { target_modules: ["q_proj"], layers_pattern: ["layers", "h)|(x"] },
      /layers_pattern "h\)\|\(x"/,
    ],
  ];
  for (const [field, fields, message] of cases) {
    it(`${field}: a ConfigError naming the field and the pattern`, () => {
      const error = thrown(() => loraConfig({ r: 2, ...fields }));
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toMatch(message);
    });
  }

  it("in adapter_config.json: a FormatError naming the file, the field and the pattern", () => {
    const error = thrown(() =>
      configFromPeftJson(
        { r: 2, target_modules: "(q_proj", peft_type: "LORA" },
        "adapters/bad",
      ),
    );
    expect(error).toBeInstanceOf(FormatError);
    expect((error as Error).message).toMatch(
      /adapters\/bad\/adapter_config\.json: LoraConfig: target_modules "\(q_proj"/,
    );
    expect((error as Error).cause).toBeInstanceOf(ConfigError);
  });

  it("a pattern longer than the limit, and hostile values in place of patterns", () => {
    expect(() =>
      loraConfig({ r: 2, target_modules: "a".repeat(MAX_PATTERN_CHARS + 1) }),
    ).toThrow(/target_modules "a{80}\.\.\." is 10001 characters long/);
    for (const fields of [
      { target_modules: ["q_proj"], layers_pattern: { a: 1 } },
      { target_modules: ["q_proj"], exclude_modules: 5 },
      { target_modules: ["q_proj"], rank_pattern: ["q_proj"] },
      { target_modules: ["q_proj"], layers_to_transform: "0" },
      { target_modules: ["q_proj"], modules_to_save: "lm_head" },
      { target_modules: ["q_proj"], lora_dropout: "0.1" },
      { target_modules: ["q_proj"], use_dora: "yes" },
      { target_modules: ["q_proj"], alpha_pattern: { q_proj: Infinity } },
    ])
      expect(() => loraConfig({ r: 2, ...fields } as never)).toThrow(
        ConfigError,
      );
  });
});

describe("field names from a file are own keys, never Object's members", () => {
  for (const key of ["__proto__", "constructor", "toString", "hasOwnProperty"])
    it(`"${key}"`, () => {
      const raw = JSON.parse(
        `{"r": 2, "target_modules": ["q_proj"], "${key}": {"target_modules": 5}}`,
      ) as Record<string, unknown>;
      const config = configFromPeftJson(raw, "adapters/odd");
      expect(config.target_modules).toEqual(["q_proj"]);
      expect(() => loraConfig(raw as never)).toThrow(
        new RegExp(`unknown field "${key}"`),
      );
    });
});
