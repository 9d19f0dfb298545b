/**
 * Loading: safetensors parsing throughput (every tensor read to f32) against reading the same bytes raw, and the
 * time from a model folder to the first logits.
 */
import {
  loadModel,
  openSafetensors,
  type ByteSource,
  type ModelSource,
} from "@webtune/core";
import { median, timed } from "./stats.js";

/** Reads every tensor of a safetensors file; returns the bytes of tensor data read. */
export async function parseAll(input: ByteSource | Blob): Promise<number> {
  const file = await openSafetensors(input);
  let bytes = 0;
  for (const name of file.names)
    bytes += (await file.read(name)).data.byteLength;
  return bytes;
}

export interface LoadResult {
  file_mb: number;
  parse_mb_per_s: number;
  raw_read_mb_per_s: number;
  /** Parse throughput ÷ raw read throughput of the same bytes: 1 means parsing is free. */
  parse_vs_raw: number;
  first_logits_ms: number;
}

/**
 * @param open a fresh handle on the file for each repetition (a file source in Node, a Blob in the browser)
 * @param readRaw the same bytes read whole, without parsing: the in-run baseline
 */
export async function benchLoad(
  open: () => Promise<ByteSource | Blob>,
  readRaw: () => Promise<number>,
  model: ModelSource,
  reps: number,
): Promise<LoadResult> {
  const fileBytes = await readRaw(); // also warms the OS cache for both contenders
  await parseAll(await open());
  const parseMs: number[] = [];
  const rawMs: number[] = [];
  for (let i = 0; i < reps; i++) {
    rawMs.push((await timed(readRaw)).ms);
    parseMs.push((await timed(async () => parseAll(await open()))).ms);
  }
  const first = await timed(async () => {
    const loaded = await loadModel(model, { cache: false });
    const logits = loaded.logits([[1, 2, 3, 4, 5, 6, 7, 8]]);
    await logits.data();
    logits.dispose();
    loaded.dispose();
  });
  const mb = fileBytes / 1e6;
  const parseRate = mb / (median(parseMs) / 1000);
  const rawRate = mb / (median(rawMs) / 1000);
  return {
    file_mb: mb,
    parse_mb_per_s: parseRate,
    raw_read_mb_per_s: rawRate,
    parse_vs_raw: parseRate / rawRate,
    first_logits_ms: first.ms,
  };
}
