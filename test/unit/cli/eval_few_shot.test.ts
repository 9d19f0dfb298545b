/**
 * `webtune eval --few-shot k --train file` as a command function on a tiny random model: it prints the few-shot
 * metrics, the prompt length and the examples' lines of --train, and a JSON line holding the report; the seed
 * changes the draw; --few-shot without --train, and a k above --train's rows, are errors naming the flags.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ConfigError, disposeRuntime } from "@webtune/core";
import { evalCommand } from "../../../packages/cli/src/eval.js";
import { chatModelFolder } from "../../helpers/chat_model.js";
import { needGpu, startGpu } from "../../helpers/gpu.js";

const work = mkdtempSync(join(tmpdir(), "webtune-eval-few-shot-"));
const model = chatModelFolder(join(work, "model"));
const write = (name: string, rows: object[]) => {
  const path = join(work, name);
  writeFileSync(path, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
  return path;
};
const train = write(
  "train.jsonl",
  ["one", "two", "three", "four", "five", "six"].map((w, i) => ({
    prompt: `Q: ${w}\nA:`,
    completion: ` ${i + 1}`,
  })),
);
const test = write("test.jsonl", [
  { prompt: "Q: seven\nA:", completion: " 7" },
  { prompt: "Q: eight\nA:", completion: " 8" },
]);

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

beforeAll(async () => {
  await startGpu();
});
afterAll(() => disposeRuntime());

describe("webtune eval --few-shot", () => {
  it("prints the few-shot metrics, the prompt length and the examples' lines, and the report in the JSON line", async (ctx) => {
    await needGpu(ctx);
    const lines = await run({ fewShot: 2, train, seed: 0 });
    const json = JSON.parse(lines.at(-1)!) as {
      rows: number;
      tokens: number;
      exactMatch: number;
      fewShot: { k: number; lines: number[]; promptTokens: { max: number } };
    };
    expect(json.rows).toBe(2);
    expect(json.exactMatch).toBeGreaterThanOrEqual(0);
    expect(json.fewShot.k).toBe(2);
    expect(json.fewShot.lines).toHaveLength(2);
    expect(lines).toContain(
      `few-shot     k=2 seed=0, --train lines ${json.fewShot.lines.join(", ")}`,
    );
    expect(lines.find((l) => l.startsWith("prompt "))).toMatch(
      new RegExp(` ${json.fewShot.promptTokens.max} max$`),
    );
    const other = JSON.parse(
      (await run({ fewShot: 2, train, seed: 1 })).at(-1)!,
    );
    expect(other.fewShot.lines).not.toEqual(json.fewShot.lines);
    // Without --few-shot: the plain scores, with no report.
    const plain = JSON.parse((await run({})).at(-1)!);
    expect(plain.fewShot).toBeUndefined();
    expect(plain.tokens).toBe(json.tokens);
  });

  it("names --few-shot and --train in its errors", async (ctx) => {
    await needGpu(ctx);
    await expect(run({ fewShot: 2 })).rejects.toThrow(
      /--few-shot needs --train/,
    );
    await expect(run({ train })).rejects.toThrow(ConfigError);
    await expect(run({ fewShot: 7, train })).rejects.toThrow(
      "--few-shot is 7, but --train has 6 rows",
    );
  });
});
