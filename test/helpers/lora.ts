/**
 * Shared set-up of the LoRA tests: the tiny golden models loaded once per file, LoraModels over them that are
 * disposed after each test (so a failing test leaves no adapter attached), and logits read back as an array.
 */
import type * as tf from "@tensorflow/tfjs";
import { afterAll, afterEach, beforeAll } from "vitest";
import {
  disposeRuntime,
  loadModel,
  LoraModel,
  type PretrainedModel,
} from "@webtune/core";
import { startGpu } from "./gpu.js";
import { GOLDEN_DIR } from "./golden.js";

export function useTinyModels(names: string[]): {
  models: Record<string, PretrainedModel>;
  peftOf: (name: string) => LoraModel;
} {
  const models: Record<string, PretrainedModel> = {};
  const created: LoraModel[] = [];
  beforeAll(async () => {
    if (!(await startGpu())) return;
    for (const name of names)
      models[name] = await loadModel(`${GOLDEN_DIR}tiny/${name}`, {
        cache: false,
      });
  });
  afterEach(() => {
    for (const peft of created.splice(0)) peft.dispose();
  });
  afterAll(() => {
    for (const m of Object.values(models)) m.dispose();
    disposeRuntime();
  });
  const peftOf = (name: string) => {
    const peft = new LoraModel(models[name]!);
    created.push(peft);
    return peft;
  };
  return { models, peftOf };
}

/** Logits of `ids` as a Float32Array, with the tensor disposed. */
export async function logitsArray(
  m: { logits(ids: number[][]): tf.Tensor },
  ids: number[][],
): Promise<Float32Array> {
  const t = m.logits(ids);
  const v = (await t.data()) as Float32Array;
  t.dispose();
  return v;
}
