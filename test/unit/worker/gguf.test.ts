/**
 * The worker's GGUF export, in-thread on Dawn and through comlink on a MessageChannel: base, merged and adapter
 * files that an independent reader (@huggingface/gguf) opens as GGUF v3 with the right metadata; the merged file
 * differs from the base exactly in the adapted projections; the adapters stay as they were found, separate or
 * merged; a DoRA adapter on its own is refused by name (its merged model is not), and the refusal reaches the
 * page as a ConfigError, with the file's buffers transferred.
 */
import { writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gguf } from "@huggingface/gguf";
import * as Comlink from "comlink";
import { afterAll, describe, expect, it } from "vitest";
import type { FineTuneJobInput, GgufDtype, GgufFile } from "@webtune/core";
import type { TrainerApi } from "@webtune/worker";
import { TrainerService } from "../../../packages/worker/src/service.js";
import { chatModelFolder } from "../../helpers/chat_model.js";
import { allowNoGpu } from "../../helpers/gpu.js";

const service = new TrainerService();
const channel = new MessageChannel();
afterAll(async () => {
  channel.port1.close();
  channel.port2.close();
  await service.dispose();
});

const out = mkdtempSync(join(tmpdir(), "webtune-worker-gguf-"));
let written = 0;

const rows = ["cat", "dog", "bird", "fox", "cow", "pig"]
  .flatMap((a) =>
    ["mat", "rug", "bed", "box"].map((p) =>
      JSON.stringify({ text: `the ${a} sat on the ${p}.` }),
    ),
  )
  .join("\n");

/** A few steps of LoRA on q_proj and v_proj: B is no longer zero. */
const job = (adapter: FineTuneJobInput["adapter"]): FineTuneJobInput => ({
  model: { source: chatModelFolder() },
  data: { train: "animals.jsonl", valSplit: 0.25 },
  adapter: { r: 4, targetModules: ["q_proj", "v_proj"], ...adapter },
  training: { seed: 1, learningRate: 5e-2, batchSize: 6, maxSteps: 2 },
  evaluation: { scoreBase: false },
});

/** The file's parts joined, and what @huggingface/gguf reads from it (written to a temporary file). */
async function read(file: GgufFile) {
  const bytes = new Uint8Array(file.byteLength);
  let at = 0;
  for (const part of file.parts) {
    bytes.set(part, at);
    at += part.length;
  }
  expect(at).toBe(file.byteLength);
  const path = join(out, `${written++}.gguf`);
  writeFileSync(path, bytes);
  const parsed = await gguf(path, { allowLocalFile: true });
  expect(new TextDecoder().decode(bytes.subarray(0, 4))).toBe("GGUF");
  expect(parsed.metadata.version).toBe(3);
  expect(parsed.tensorInfos).toHaveLength(file.tensorCount);
  // Each tensor's bytes, by name: from its offset to the next one's (the data is laid out in order).
  const start = Number(parsed.tensorDataOffset);
  const offsets = parsed.tensorInfos.map((t) => start + Number(t.offset));
  const tensors = new Map(
    parsed.tensorInfos.map((t, i) => [
      t.name,
      bytes.subarray(offsets[i], offsets[i + 1] ?? bytes.length),
    ]),
  );
  // Keys by name, whatever the file's architecture (the reader types them per architecture).
  const metadata = parsed.metadata as Record<string, unknown>;
  return { bytes, metadata, tensors };
}

/** The validation loss with the adapters off and on: what the adapters in the worker are, as one pair. */
const scores = async () => [
  (await service.evaluate("val", { useAdapter: false })).loss,
  (await service.evaluate("val")).loss,
];

describe("TrainerService.exportGguf", () => {
  it("writes base, merged and adapter files for llama.cpp, leaving the adapters as they were", async (ctx) => {
    await service
      .init()
      .catch((e: unknown) =>
        allowNoGpu ? ctx.skip(String(e)) : Promise.reject(e),
      );
    await service.runJob(job({}), { "animals.jsonl": rows });
    const separate = await scores();
    expect(separate[1]).not.toBe(separate[0]);

    const base = await read(
      await service.exportGguf({ what: "base", dtype: "f32" }),
    );
    const merged = await read(
      await service.exportGguf({ what: "merged", dtype: "f32" }),
    );
    const adapter = await read(await service.exportGguf({ what: "adapter" }));
    expect(await scores()).toEqual(separate);

    for (const model of [base, merged])
      expect(model.metadata).toMatchObject({
        "general.architecture": "llama",
        "general.type": "model",
        "general.file_type": 0,
        "tokenizer.ggml.model": "gpt2",
      });
    expect(adapter.metadata).toMatchObject({
      "general.architecture": "llama",
      "general.type": "adapter",
      "adapter.type": "lora",
    });
    // A [r, in] and B [out, r] for q and v in each of the 2 layers.
    expect([...adapter.tensors.keys()].sort()).toEqual(
      [0, 1].flatMap((layer) =>
        ["q", "v"].flatMap((m) =>
          ["a", "b"].map((p) => `blk.${layer}.attn_${m}.weight.lora_${p}`),
        ),
      ),
    );
    // The merged model is the base with the adapted projections changed, and nothing else.
    const changed = [...base.tensors.keys()].filter(
      (name) =>
        !Buffer.from(base.tensors.get(name)!).equals(merged.tensors.get(name)!),
    );
    expect(changed.sort()).toEqual([
      "blk.0.attn_q.weight",
      "blk.0.attn_v.weight",
      "blk.1.attn_q.weight",
      "blk.1.attn_v.weight",
    ]);

    // Merged before, merged after: the same files, and the same weights in the worker.
    await service.merge();
    const mergedScores = await scores();
    expect(mergedScores[0]).toBeCloseTo(separate[1]!, 4);
    const again = await read(
      await service.exportGguf({ what: "merged", dtype: "f32" }),
    );
    expect(Buffer.from(again.bytes).equals(merged.bytes)).toBe(true);
    const baseAgain = await read(
      await service.exportGguf({ what: "base", dtype: "f32" }),
    );
    expect(Buffer.from(baseAgain.bytes).equals(base.bytes)).toBe(true);
    expect(await scores()).toEqual(mergedScores);
    await service.unmerge();

    // The default storage is f16, as llama.cpp's converter.
    const f16 = await read(await service.exportGguf({ what: "merged" }));
    expect(f16.metadata["general.file_type"]).toBe(1);
    expect(f16.bytes.length).toBeLessThan(merged.bytes.length);
    expect(await scores()).toEqual(separate);
  });

  it("refuses a DoRA adapter on its own, through comlink as a ConfigError, and exports its merged model", async (ctx) => {
    await service
      .init()
      .catch((e: unknown) =>
        allowNoGpu ? ctx.skip(String(e)) : Promise.reject(e),
      );
    await service.runJob(job({ dora: true }), { "animals.jsonl": rows });
    const separate = await scores();
    Comlink.expose(service, channel.port1);
    const api = Comlink.wrap<TrainerApi>(channel.port2);

    const refused = api.exportGguf({ what: "adapter" });
    await expect(refused).rejects.toMatchObject({
      name: "ConfigError",
      message: expect.stringMatching(/DoRA[^]*export the merged model/),
    });
    // The parts' buffers are transferred across (a buffer listed twice would fail to post).
    const merged = await read(await api.exportGguf({ what: "merged" }));
    expect(merged.metadata["general.type"]).toBe("model");
    // An export that throws with the adapter merged for it leaves it separate again.
    await expect(
      api.exportGguf({ what: "merged", dtype: "q4" as GgufDtype }),
    ).rejects.toThrow(/dtype "q4" is not one of f32, f16, q8_0/);
    expect(await scores()).toEqual(separate);
  });
});
