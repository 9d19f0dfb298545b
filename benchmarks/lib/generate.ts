/**
 * Greedy generation with webtune's KV cache against a loop that recomputes the whole prefix for every new token
 * (what a model without a cache does), same model, same prompt, same number of tokens. The cached generation runs
 * on either decoding path: the compiled engine's (the default on WebGPU) or the tfjs tape's, as before the engine
 * decoded.
 */
import { type PretrainedModel } from "@webtune/core";

/** One greedy token at a time from a full forward pass over prompt + continuation so far. */
export async function generateWithoutCache(
  model: PretrainedModel,
  prompt: number[],
  newTokens: number,
): Promise<number[]> {
  const ids = [...prompt];
  for (let i = 0; i < newTokens; i++) {
    const cache = model.lm.newCache(); // empty: the prefix is recomputed every time
    const logits = model.lm.nextTokenLogits([ids], cache);
    const row = (await logits.data()) as Float32Array;
    logits.dispose();
    cache.dispose();
    let best = 0;
    for (let v = 1; v < row.length; v++) if (row[v]! > row[best]!) best = v;
    ids.push(best);
  }
  return ids.slice(prompt.length);
}

export async function generateWithCache(
  model: PretrainedModel,
  prompt: number[],
  newTokens: number,
  decodePath?: "engine" | "tape",
): Promise<number[]> {
  const result = await model.generate(prompt, {
    decodePath,
    maxNewTokens: newTokens,
    temperature: 0,
    eosTokenIds: [], // no early stop: both contenders make exactly newTokens tokens
  });
  return result.ids;
}

/** How many leading tokens two greedy continuations share (float rounding may flip a near-tie late on). */
export function sharedPrefix(a: number[], b: number[]): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}
