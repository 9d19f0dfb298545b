/**
 * `webtune eval --retrieve k --train file` as a command function on a tiny random model: one table with a row per
 * method (base, k-shot, retrieval, tuned) and a JSON line holding each; the base model and the baselines scored
 * with the adapter disabled (the base equals a plain run without it), the tuned adapter with it; a test row that
 * is also a training row retrieves itself and is warned about; --retriever hidden; the errors name the flags.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import {
  ConfigError,
  disposeRuntime,
  loadModel,
  LoraModel,
  saveAdapterToDirectory,
} from "@webtune/core";
import { evalCommand } from "../../../packages/cli/src/eval.js";
import { chatModelFolder } from "../../helpers/chat_model.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";

const work = mkdtempSync(join(tmpdir(), "webtune-eval-retrieve-"));
const model = chatModelFolder(join(work, "model"));
const write = (name: string, rows: object[]) => {
  const path = join(work, name);
  writeFileSync(path, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  return path;
};
const train = write("train.jsonl", [
  { prompt: "Q: one plus one\nA:", completion: " 2" },
  { prompt: "Q: two plus two\nA:", completion: " 4" },
  { prompt: "Q: red apple\nA:", completion: " fruit" },
  { prompt: "Q: blue sky\nA:", completion: " air" },
  { prompt: "Q: three plus three\nA:", completion: " 6" },
  { prompt: "Q: green tree\nA:", completion: " plant" },
]);
const test = write("test.jsonl", [
  { prompt: "Q: one plus two\nA:", completion: " 3" },
  { prompt: "Q: red apple\nA:", completion: " fruit" },
]);
const adapter = join(work, "adapter");
const headAdapter = join(work, "head-adapter");

/** The command's output lines. */
async function run(flags: Partial<Parameters<typeof evalCommand>[0]>) {
  const out: string[] = [];
  const spy = vi
    .spyOn(process.stdout, "write")
    .mockImplementation((chunk: string | Uint8Array) => {
      out.push(String(chunk));
      return true;
    });
  try {
    await evalCommand({ model, data: test, seqLen: 1024, ...flags });
  } finally {
    spy.mockRestore();
  }
  return out.join("").trim().split("\n");
}

interface Entry {
  loss: number;
  tokens: number;
  exactMatch: number;
  promptTokens: { mean: number; max: number };
}
interface Compared {
  base: Entry;
  fewShot?: Entry & { report: { k: number; lines: number[] } };
  retrieval: Entry & {
    report: {
      k: number;
      retriever: string;
      shots: number[][];
      lines: number[][];
      duplicates: number;
      duplicateLines: number[];
    };
  };
  tuned?: Entry;
}

beforeAll(async () => {
  if (!(await startGpu())) return;
  // A LoRA adapter with random A and B, so the tuned model answers otherwise; and one with a classification head.
  const base = await loadModel(model, { cache: false });
  const peft = new LoraModel(base);
  const config = { r: 2, loraAlpha: 8, targetModules: ["q_proj", "v_proj"] };
  peft.addAdapter("made", { ...config, initLoraWeights: false }, { seed: 1 });
  await saveAdapterToDirectory(await peft.saveAdapter("made"), adapter);
  peft.addAdapter("cls", config, {
    head: { task: "seq-cls", labels: ["a", "b"] },
  });
  await saveAdapterToDirectory(await peft.saveAdapter("cls"), headAdapter);
  peft.dispose();
  base.dispose();
});
afterAll(() => disposeRuntime());

describe("webtune eval --retrieve", () => {
  it("prints one table of base, k-shot and retrieval, and their results in the JSON line", async (ctx) => {
    await needGpu(ctx);
    const lines = await run({ retrieve: 2, fewShot: 2, train });
    const json = JSON.parse(lines.at(-1)!) as Compared;
    expect(json.tuned).toBeUndefined();
    expect(json.fewShot!.report.k).toBe(2);
    expect(json.retrieval.report).toMatchObject({ k: 2, retriever: "bm25" });
    // Every method scores the same tokens of the same rows.
    expect(json.fewShot!.tokens).toBe(json.base.tokens);
    expect(json.retrieval.tokens).toBe(json.base.tokens);
    expect(lines[0]!.split(/\s+/).filter(Boolean)).toEqual([
      "exactMatch",
      "loss",
      "perplexity",
      "prompt",
    ]);
    const row = (name: string, e: Entry) =>
      `${name.padEnd(14)}${e.exactMatch.toFixed(4).padStart(12)}${e.loss.toFixed(4).padStart(12)}`;
    expect(lines[1]).toContain(row("base", json.base));
    expect(lines[2]).toContain(row("2-shot", json.fewShot!));
    expect(lines[3]).toContain(row("bm25 k=2", json.retrieval));
    expect(
      lines[3]!.trim().endsWith(json.retrieval.promptTokens.mean.toFixed(1)),
    ).toBe(true);
    // The test row "Q: red apple" is training line 3: it is retrieved last (nearest) and warned about.
    const report = json.retrieval.report;
    expect(report.lines[1]!.at(-1)).toBe(3);
    expect(report.lines).toEqual(report.shots.map((s) => s.map((i) => i + 1)));
    expect(report.duplicates).toBe(1);
    expect(report.duplicateLines).toEqual([2]);
    expect(
      lines.find((l) =>
        l.startsWith(
          "warning: 1 of 2 test rows are also in --train (--data lines 2)",
        ),
      ),
    ).toBeDefined();
    // Without the new flags: the plain output, unchanged.
    const plain = JSON.parse((await run({})).at(-1)!) as Entry & {
      retrieval?: unknown;
    };
    expect(plain.retrieval).toBeUndefined();
    expect(plain.loss).toBe(json.base.loss);
  });

  it("scores the base model and the baseline with the adapter off, and adds the tuned adapter", async (ctx) => {
    await needGpu(ctx);
    const lines = await run({
      retrieve: 1,
      train,
      adapter,
      retriever: "hidden",
    });
    const json = JSON.parse(lines.at(-1)!) as Compared;
    const plain = JSON.parse((await run({})).at(-1)!) as Entry;
    const alone = JSON.parse((await run({ adapter })).at(-1)!) as Entry;
    expect(json.base.loss).toBe(plain.loss);
    expect(json.tuned!.loss).toBe(alone.loss);
    expect(json.tuned!.loss).not.toBeCloseTo(plain.loss, 4);
    expect(json.fewShot).toBeUndefined();
    expect(json.retrieval.report.retriever).toBe("hidden");
    expect(json.retrieval.report.shots.map((s) => s.length)).toEqual([1, 1]);
    expect(lines.map((l) => l.split(/\s+/)[0])).toEqual(
      expect.arrayContaining(["base", "hidden", "tuned"]),
    );
  });

  it("names --retrieve, --retriever and --train in its errors", async (ctx) => {
    await needGpu(ctx);
    await expect(run({ retrieve: 2 })).rejects.toThrow(
      "--retrieve needs --train",
    );
    await expect(
      run({ retriever: "hidden", train, fewShot: 1 }),
    ).rejects.toThrow("--retriever is read only with --retrieve");
    await expect(
      run({ retrieve: 1, retriever: "tfidf", train }),
    ).rejects.toThrow('--retriever is "tfidf"; expected bm25 or hidden');
    await expect(run({ retrieve: 0, train })).rejects.toThrow(
      "--retrieve is 0; expected an integer >= 1",
    );
    await expect(run({ retrieve: 7, train })).rejects.toThrow(
      "--retrieve is 7, but --train has 6 rows",
    );
    await expect(run({ retrieve: 2, fewShot: 9, train })).rejects.toThrow(
      "--few-shot is 9, but --train has 6 rows",
    );
    const head = run({ retrieve: 2, train, adapter: headAdapter });
    await expect(head).rejects.toThrow(ConfigError);
    await expect(
      run({ retrieve: 2, train, adapter: headAdapter }),
    ).rejects.toThrow(
      "seq-cls head: a prompt with examples is no baseline for it; leave --retrieve out",
    );
  });
});
