/**
 * The models a server offers, by the ids that requests name in `model`: the base model, under a short id and the
 * alias "base", and each LoRA adapter under its name. Choosing a model is choosing an adapter, or none.
 */
import { ConfigError, type LoraModel } from "@webtune/core";
import { ApiError } from "./errors.js";

/** The alias that always names the base model, whatever its id. */
export const BASE_ALIAS = "base";

export interface ServedModel {
  /** The id /v1/models lists and responses carry. */
  id: string;
  /** The LoRA adapter that answers, or undefined for the base model alone. */
  adapter: string | undefined;
}

/**
 * The base model's id: the last segment of its source (a folder, hub id or URL), e.g. "webtune-demo-base" for
 * demo/public/models/webtune-demo-base and "SmolLM2-135M" for HuggingFaceTB/SmolLM2-135M.
 */
export function baseModelId(source: string): string {
  const segments = source.split(/[\\/]+/).filter((s) => s.length > 0);
  return segments.at(-1) ?? BASE_ALIAS;
}

export class ModelCatalog {
  readonly models: readonly ServedModel[];

  constructor(baseId: string, adapters: readonly string[]) {
    for (const name of adapters)
      if (name === baseId || name === BASE_ALIAS)
        throw new ConfigError(
          `The adapter name "${name}" is the base model's id ("${baseId}", also reachable as "${BASE_ALIAS}"); ` +
            `give the adapter another name (--adapter <name>=<dir>).`,
        );
    this.models = [
      { id: baseId, adapter: undefined },
      ...adapters.map((name) => ({ id: name, adapter: name })),
    ];
  }

  /** The model a request's `model` names, or undefined when none has that id. */
  resolve(id: string): ServedModel | undefined {
    if (id === BASE_ALIAS) return this.models[0];
    return this.models.find((m) => m.id === id);
  }

  /** The model a request's `model` names; a 404 (code model_not_found) when there is none. */
  require(id: string): ServedModel {
    const served = this.resolve(id);
    if (served) return served;
    throw new ApiError(
      404,
      `The model '${id}' does not exist. This server has ${this.models.map((m) => `'${m.id}'`).join(", ")} ` +
        `(and '${BASE_ALIAS}' for the base model).`,
      { param: "model", code: "model_not_found" },
    );
  }

  /** The catalog of a LoraModel's adapters over its base model. */
  static of(peft: LoraModel): ModelCatalog {
    return new ModelCatalog(baseModelId(peft.base.source), peft.adapterNames);
  }
}
