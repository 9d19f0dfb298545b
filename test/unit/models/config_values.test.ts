/**
 * config.json values that would load a model whose loss is NaN (an epsilon, a RoPE base, a softcap or a
 * rope_scaling factor at or below zero, or not finite) are refused with a ConfigError naming the field and the file;
 * a model_type that names a member of Object ("__proto__", "constructor", ...) is the usual unsupported-type
 * ConfigError, not a TypeError; a config.json that is not an object is a FormatError. loadModel reads a real folder
 * and refuses before it touches weights or the GPU.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, FormatError } from "../../../packages/core/src/errors.js";
import { loadModel } from "../../../packages/core/src/models/pretrained.js";
import { resolveConfig } from "../../../packages/core/src/models/registry.js";
import { TINY_CONFIGS } from "./tiny_configs.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "webtune-config-values-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** loadModel on a folder holding only this config.json (as text): what it throws. */
async function loadError(name: string, configText: string): Promise<Error> {
  const folder = join(dir, name);
  await mkdir(folder, { recursive: true });
  await writeFile(join(folder, "config.json"), configText);
  const error = await loadModel(folder, { cache: false }).then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  expect(error).toBeDefined();
  return error!;
}

const withField = (type: string, field: string, value: unknown) =>
  JSON.stringify({ ...TINY_CONFIGS[type], [field]: value });

describe("config.json values that would make the loss NaN", () => {
  const cases: [string, string][] = [
    ["llama", "rms_norm_eps"],
    ["qwen2", "rms_norm_eps"],
    ["gemma3_text", "rms_norm_eps"],
    ["gpt2", "layer_norm_epsilon"],
    ["llama", "rope_theta"],
    ["gemma3_text", "rope_theta"],
    ["gemma3_text", "rope_local_base_freq"],
    ["gemma3_text", "query_pre_attn_scalar"],
    ["gemma3_text", "final_logit_softcapping"],
  ];
  for (const [type, field] of cases)
    it(`${type}: ${field} of 0 or below, read from a real config.json`, async () => {
      for (const value of [0, -1e-6, -0]) {
        const error = await loadError(
          `${type}-${field}-${value}`,
          withField(type, field, value),
        );
        expect(error).toBeInstanceOf(ConfigError);
        expect(error.message).toMatch(
          new RegExp(
            `config\\.json: "${field}" is ${value}, but it must be above 0 \\(.+\\); .*loss would be NaN`,
          ),
        );
      }
    });

  it("values that are not finite: 1e999 in the file is Infinity", async () => {
    const text = JSON.stringify(TINY_CONFIGS["llama"]).replace(
      /}$/,
      ', "rope_theta": 1e999}',
    );
    const error = await loadError("llama-inf", text);
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toMatch(
      /config\.json: "rope_theta" must be a finite number, got Infinity/,
    );
    expect(() =>
      resolveConfig(
        { ...TINY_CONFIGS["gpt2"], layer_norm_epsilon: "1e-5" },
        "m/config.json",
      ),
    ).toThrow(/"layer_norm_epsilon" must be a finite number, got "1e-5"/);
  });

  it("rope_scaling: a factor of 0, llama3 frequencies out of order", () => {
    const scaled = (rope_scaling: Record<string, unknown>) => () =>
      resolveConfig(
        { ...TINY_CONFIGS["llama"], rope_scaling },
        "m/config.json",
      );
    expect(scaled({ rope_type: "linear", factor: 0 })).toThrow(
      /m\/config\.json: "rope_scaling" has factor 0, which must be above 0/,
    );
    const llama3 = {
      rope_type: "llama3",
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 8192,
    };
    expect(scaled(llama3)).not.toThrow();
    expect(scaled({ ...llama3, high_freq_factor: 1 })).toThrow(
      /low_freq_factor 1 and high_freq_factor 1; they must satisfy 0 < low_freq_factor < high_freq_factor/,
    );
    expect(scaled({ ...llama3, original_max_position_embeddings: 0 })).toThrow(
      ConfigError,
    );
  });

  it("the defaults and real values still load", () => {
    for (const type of Object.keys(TINY_CONFIGS))
      expect(() =>
        resolveConfig(TINY_CONFIGS[type]!, `${type}/config.json`),
      ).not.toThrow();
  });
});

describe("model_type and the shape of config.json", () => {
  for (const type of ["__proto__", "constructor", "toString", "hasOwnProperty"])
    it(`model_type "${type}" is an unsupported type`, async () => {
      const error = await loadError(
        `type-${type}`,
        JSON.stringify({ ...TINY_CONFIGS["llama"], model_type: type }),
      );
      expect(error).toBeInstanceOf(ConfigError);
      expect(error.message).toMatch(
        new RegExp(
          `config\\.json: model_type "${type}" is not supported\\. webtune supports gpt2`,
        ),
      );
    });

  it("a config.json that is not an object", async () => {
    for (const [name, text] of [
      ["null", "null"],
      ["array", "[1]"],
      ["number", "7"],
    ] as const) {
      const error = await loadError(`not-object-${name}`, text);
      expect(error).toBeInstanceOf(FormatError);
      expect(error.message).toMatch(/config\.json is not a JSON object/);
    }
  });
});
