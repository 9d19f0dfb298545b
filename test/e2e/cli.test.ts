/**
 * The `webtune` command end to end on a tiny model (Dawn in Node), as a user runs it: info, train (PEFT files
 * and metrics.jsonl), eval with and without the adapter, generate, resume from a checkpoint, and one-line
 * errors with a non-zero exit for bad input.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { gguf } from "@huggingface/gguf";
import { beforeAll, describe, expect, it } from "vitest";
import { openSafetensors } from "../../packages/core/src/io/safetensors.js";
import { JOB_DEFAULTS } from "../../packages/core/src/job/job.js";
import { chatModelFolder } from "../helpers/chat_model.js";

const exec = promisify(execFile);
const root = fileURLToPath(new URL("../..", import.meta.url));
const bin = join(root, "packages/cli/bin/webtune.js");

async function webtune(
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [bin, ...args], {
      cwd: root,
      maxBuffer: 1 << 24,
    });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

const lastJson = (out: string) =>
  JSON.parse(out.trim().split("\n").at(-1)!) as Record<string, number>;

let model: string;
let data: string;
const work = mkdtempSync(join(tmpdir(), "webtune-cli-"));

beforeAll(async () => {
  // The bin runs the compiled packages.
  await exec("npm", ["run", "build", "--silent"], { cwd: root });
  model = chatModelFolder();
  data = join(work, "animals.jsonl");
  const animals = ["cat", "dog", "bird", "fox", "cow", "pig"];
  const places = ["mat", "rug", "bed", "box", "hill", "log"];
  const rows = animals.flatMap((a) =>
    places.map((p) =>
      JSON.stringify({ text: `the ${a} sat on the ${p}. the ${a} is happy.` }),
    ),
  );
  writeFileSync(data, `${rows.join("\n")}\n`);
});

describe("webtune CLI", () => {
  it("info prints the architecture and the Linear module names", async () => {
    const r = await webtune("info", "--model", model);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/architecture\s+llama/);
    expect(r.stdout).toMatch(
      /q_proj\s+×2\s+e\.g\. model\.layers\.0\.self_attn\.q_proj/,
    );
    // Dawn's two native warnings about dynamic-offset limits are dropped by bin/webtune.js; nothing else is.
    expect(r.stderr).toBe("");
  });

  it("trains an adapter that lowers the loss, writes PEFT files and metrics.jsonl, and eval/generate use it", async () => {
    const base = lastJson(
      (await webtune("eval", "--model", model, "--data", data)).stdout,
    );
    const out = join(work, "adapter");
    const reference = join(work, "reference.txt");
    writeFileSync(
      reference,
      "a long time ago the river ran to the sea.\nbooks are read by people who like stories.\n",
    );
    const r = await webtune(
      "train",
      "--model",
      model,
      "--data",
      data,
      "--out",
      out,
      "--max-steps",
      "40",
      "--eval-every",
      "20",
      "--lr",
      "2e-2",
      "--warmup",
      "4",
      "--batch",
      "8",
      "--r",
      "8",
      "--test-split",
      "0.2",
      "--reference",
      reference,
    );
    expect(r.code, r.stderr).toBe(0);
    for (const f of [
      "adapter_config.json",
      "adapter_model.safetensors",
      "metrics.jsonl",
    ])
      expect(existsSync(join(out, f)), f).toBe(true);
    const events = readFileSync(join(out, "metrics.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    const steps = events.filter((e) => e.type === "step");
    expect(steps).toHaveLength(40);
    expect(Object.keys(steps[0]).sort()).toEqual(
      [
        "type",
        "step",
        "epoch",
        "loss",
        "lr",
        "gradNorm",
        "tokensPerSec",
        "elapsedMs",
        "etaMs",
        "gpuBytes",
        "peakGpuBytes",
      ].sort(),
    );
    expect(events.filter((e) => e.type === "eval").map((e) => e.step)).toEqual([
      20, 40,
    ]);
    const tests = events.filter((e) => e.type === "test");
    expect(tests.map((e) => e.phase)).toEqual(["base", "tuned"]);
    expect(tests[1].loss).toBeLessThan(tests[0].loss);
    const summary = lastJson(r.stdout);
    expect(summary["test_base_loss"]).toBe(tests[0].loss);
    expect(summary["test_loss"]).toBe(tests[1].loss);
    expect(r.stderr).toMatch(/test\s+base\s+tuned\nloss\s+[\d.]+\s+[\d.]+/);
    expect(
      JSON.parse(readFileSync(join(out, "adapter_config.json"), "utf8")),
    ).toMatchObject({
      peft_type: "LORA",
      r: 8,
      lora_alpha: JOB_DEFAULTS.adapter.alpha,
    });
    // The job it ran is left beside the adapter, and runs again as it was.
    const job = readFileSync(join(out, "webtune_job.json"), "utf8");
    expect(JSON.parse(job)).toMatchObject({
      model: { source: model },
      adapter: { r: 8 },
      training: { learningRate: 2e-2, maxSteps: 40 },
    });
    const again = await webtune(
      "train",
      "--job",
      join(out, "webtune_job.json"),
      "--print-job",
    );
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toEqual(JSON.parse(job));
    const tuned = lastJson(
      (
        await webtune(
          "eval",
          "--model",
          model,
          "--adapter",
          out,
          "--data",
          data,
        )
      ).stdout,
    );
    expect(tuned["tokens"]).toBe(base["tokens"]);
    expect(tuned["loss"]).toBeLessThan(base["loss"]! - 0.3);
    const g = await webtune(
      "generate",
      "--model",
      model,
      "--adapter",
      out,
      "--prompt",
      "the cat",
      "--max-new-tokens",
      "8",
    );
    expect(g.code, g.stderr).toBe(0);
    expect(g.stderr).toMatch(/\[\d+ tokens, stopped by (eos|length)\]/);
  });

  it("uses the embedded demo base model when --model is left out, and --test scores the base and the tuned model", async () => {
    const demoData = join(root, "demo/public/data");
    const head = (file: string, n: number) => {
      const path = join(work, file.replace("/", "-"));
      const lines = readFileSync(join(demoData, file), "utf8").split("\n");
      writeFileSync(path, `${lines.slice(0, n).join("\n")}\n`);
      return path;
    };
    const info = await webtune("info");
    expect(info.code, info.stderr).toBe(0);
    expect(info.stdout).toMatch(/webtune-demo-base/);
    const r = await webtune(
      "train",
      "--data",
      head("fortunes/train.jsonl", 48),
      "--test",
      head("fortunes/test.jsonl", 12),
      "--out",
      join(work, "fortunes"),
      "--max-steps",
      "2",
      "--val-split",
      "0",
    );
    expect(r.code, r.stderr).toBe(0);
    const summary = lastJson(r.stdout);
    for (const k of ["accuracy", "f1", "loss"]) {
      expect(summary[`test_base_${k}`], k).toBeTypeOf("number");
      expect(summary[`test_${k}`], k).toBeTypeOf("number");
    }
    expect(summary["test_majority_accuracy"]).toBeGreaterThan(0);
    expect(r.stderr).toMatch(/majority\s+[\d.]+/);

    const bad = await webtune(
      "train",
      "--data",
      head("fortunes/train.jsonl", 48),
      "--test",
      head("dates/test.jsonl", 4),
      "--out",
      join(work, "mismatch"),
    );
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(
      /^webtune: .*dates-test\.jsonl, line 1: field "text" is missing/m,
    );

    // Instruction data: the job keeps its prompt template, and generate --input fills it in.
    const dates = join(work, "dates");
    const d = await webtune(
      "train",
      "--data",
      head("dates/train.jsonl", 40),
      "--out",
      dates,
      "--max-steps",
      "1",
      "--val-split",
      "0",
    );
    expect(d.code, d.stderr).toBe(0);
    expect(d.stderr).toContain(
      'prompt template: "Date: {input}\\nWritten out:"',
    );
    const asked = await webtune(
      "generate",
      "--adapter",
      dates,
      "--prompt",
      "Date: 2031-02-03",
      "--max-new-tokens",
      "2",
    );
    expect(asked.code, asked.stderr).toBe(0);
    expect(asked.stderr).toContain(
      'note: this adapter was trained on prompts shaped "Date: {input}\\nWritten out:"; --input fills that in (here --input "2031-02-03")',
    );
    const filled = await webtune(
      "generate",
      "--adapter",
      dates,
      "--input",
      "2031-02-03",
      "--max-new-tokens",
      "2",
    );
    expect(filled.code, filled.stderr).toBe(0);
    expect(filled.stderr).not.toContain("note:");
  });

  it("merges an adapter into a full folder that scores as model + adapter, and trains in full mode", async () => {
    const adapter = join(work, "small-adapter");
    const args = [
      "--model",
      model,
      "--data",
      data,
      "--max-steps",
      "10",
      "--lr",
      "1e-2",
      "--batch",
      "8",
      "--val-split",
      "0",
    ];
    expect(
      (await webtune("train", ...args, "--out", adapter, "--r", "4")).code,
    ).toBe(0);
    const merged = join(work, "merged");
    const m = await webtune(
      "merge",
      "--model",
      model,
      "--adapter",
      adapter,
      "--out",
      merged,
    );
    expect(m.code, m.stderr).toBe(0);
    for (const f of [
      "config.json",
      "model.safetensors",
      "tokenizer.json",
      "tokenizer_config.json",
    ])
      expect(existsSync(join(merged, f)), f).toBe(true);
    const withAdapter = lastJson(
      (
        await webtune(
          "eval",
          "--model",
          model,
          "--adapter",
          adapter,
          "--data",
          data,
        )
      ).stdout,
    );
    const mergedEval = lastJson(
      (await webtune("eval", "--model", merged, "--data", data)).stdout,
    );
    expect(
      Math.abs(mergedEval["loss"]! - withAdapter["loss"]!) /
        withAdapter["loss"]!,
    ).toBeLessThan(1e-4);

    const fullOut = join(work, "full");
    const f = await webtune(
      "train",
      ...args,
      "--out",
      fullOut,
      "--mode",
      "full",
      "--lr",
      "3e-3",
    );
    expect(f.code, f.stderr).toBe(0);
    expect(f.stderr).toMatch(/full fine-tuning: [\d,]+ trainable parameters/);
    const base = lastJson(
      (await webtune("eval", "--model", model, "--data", data)).stdout,
    );
    const tuned = lastJson(
      (await webtune("eval", "--model", fullOut, "--data", data)).stdout,
    );
    expect(tuned["loss"]).toBeLessThan(base["loss"]! - 0.3);
  });

  it("exports the model, the adapter and the merged model as GGUF, and refuses what it cannot write", async () => {
    // The adapter the merge test trained.
    const adapter = join(work, "small-adapter");
    const file = (name: string) => join(work, name);
    const exported = async (name: string, ...args: string[]) => {
      const r = await webtune(
        "export",
        "--model",
        model,
        "--format",
        "gguf",
        "--out",
        file(name),
        ...args,
      );
      expect(r.code, r.stderr).toBe(0);
      const parsed = await gguf(file(name), { allowLocalFile: true });
      const metadata = parsed.metadata as unknown as Record<string, unknown>;
      return { line: lastJson(r.stdout), parsed, metadata };
    };
    const base = await exported("base.gguf", "--dtype", "f32");
    expect(base.metadata["general.type"]).toBe("model");
    expect(base.metadata["general.file_type"]).toBe(0);
    expect(base.metadata["tokenizer.ggml.model"]).toBe("gpt2");
    const lora = await exported("adapter.gguf", "--adapter", adapter);
    expect(lora.metadata["general.type"]).toBe("adapter");
    expect(lora.metadata["adapter.lora.alpha"]).toBeGreaterThan(0);
    expect(lora.parsed.tensorInfos.map((t) => t.name)).toContain(
      "blk.0.attn_q.weight.lora_a",
    );
    const merged = await exported(
      "merged.gguf",
      "--adapter",
      adapter,
      "--merged",
      "--dtype",
      "q8_0",
    );
    expect(merged.metadata["general.file_type"]).toBe(7);
    expect(merged.line["tensors"]).toBe(base.line["tensors"]);
    expect(merged.line["bytes"]).toBeLessThan(base.line["bytes"]! / 2);

    const refused = async (pattern: RegExp, ...args: string[]) => {
      const r = await webtune("export", "--model", model, ...args);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(pattern);
    };
    const before = readFileSync(file("base.gguf"));
    await refused(
      /already exists; pass --overwrite/,
      "--format",
      "gguf",
      "--out",
      file("base.gguf"),
    );
    expect(readFileSync(file("base.gguf")).equals(before)).toBe(true);
    await refused(
      /--merged needs --adapter/,
      "--format",
      "gguf",
      "--merged",
      "--out",
      file("x.gguf"),
    );
    await refused(
      /--format onnx is not one webtune exports/,
      "--format",
      "onnx",
      "--out",
      file("x.gguf"),
    );
    await refused(/must name a \.gguf file/, "--format", "gguf", "--out", work);
    await refused(
      /Allowed choices are f32, f16, q8_0/,
      "--format",
      "gguf",
      "--dtype",
      "q4_0",
      "--out",
      file("x.gguf"),
    );
    expect(existsSync(file("x.gguf"))).toBe(false);
  });

  it("resumes from a checkpoint folder to the same adapter as an uninterrupted run", async () => {
    const args = [
      "--model",
      model,
      "--data",
      data,
      "--max-steps",
      "8",
      "--lr",
      "1e-2",
      "--batch",
      "4",
      "--r",
      "4",
      "--val-split",
      "0",
    ];
    const straight = join(work, "straight");
    expect((await webtune("train", ...args, "--out", straight)).code).toBe(0);
    const first = join(work, "first");
    expect(
      (
        await webtune(
          "train",
          ...args,
          "--out",
          first,
          "--checkpoint-every",
          "4",
        )
      ).code,
    ).toBe(0);
    const resumed = join(work, "resumed");
    // Keep only the step-4 checkpoint, as if the first run had stopped there.
    const ckpt = join(work, "ckpt");
    await exec("mkdir", ["-p", ckpt]);
    await exec("cp", ["-r", join(first, "checkpoints", "step-000004"), ckpt]);
    const r = await webtune(
      "train",
      ...args,
      "--out",
      resumed,
      "--resume",
      ckpt,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/resuming from .*step-000004/);
    const [x, y] = await Promise.all(
      [straight, resumed].map((d) =>
        openSafetensors(
          new Uint8Array(readFileSync(join(d, "adapter_model.safetensors"))),
        ),
      ),
    );
    expect(y!.names).toEqual(x!.names);
    let worst = 0;
    for (const name of x!.names) {
      const [fa, fb] = [(await x!.read(name)).data, (await y!.read(name)).data];
      fa.forEach(
        (v, i) =>
          (worst = Math.max(
            worst,
            Math.abs(v - fb[i]!) / Math.max(Math.abs(v), 1e-3),
          )),
      );
    }
    expect(worst).toBeLessThan(1e-5);
  });

  it("exits non-zero with one line for a bad flag, a missing file, an unsupported mode or a foreign adapter", async () => {
    const bad = await webtune(
      "train",
      "--model",
      model,
      "--data",
      data,
      "--out",
      work,
      "--r",
      "abc",
    );
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/--r must be a non-negative integer/);
    const missing = await webtune(
      "train",
      "--model",
      model,
      "--data",
      join(work, "nope.jsonl"),
      "--out",
      work,
    );
    expect(missing.code).toBe(1);
    expect(
      missing.stderr
        .trim()
        .split("\n")
        .filter((l) => l.startsWith("webtune:")),
    ).toEqual([
      `webtune: cannot read --data ${join(work, "nope.jsonl")}: no such file.`,
    ]);
    const mode = await webtune(
      "train",
      "--model",
      model,
      "--data",
      data,
      "--out",
      work,
      "--mode",
      "half",
    );
    expect(mode.code).toBe(1);
    expect(mode.stderr).toMatch(/--mode must be lora or full, got "half"/);
    const foreign = await webtune(
      "eval",
      "--model",
      model,
      "--adapter",
      join(root, "test/fixtures/peft/gpt2_conv1d"),
      "--data",
      data,
    );
    expect(foreign.code).toBe(1);
    expect(foreign.stderr).toMatch(
      /webtune: .*weights for "transformer\.h\.0\.attn\.c_attn", which this model does not have/,
    );
  });
});

describe("webtune CLI keeps earlier results and reads data as it will be used", () => {
  const small = [
    "--max-steps",
    "4",
    "--batch",
    "4",
    "--r",
    "4",
    "--val-split",
    "0",
    "--checkpoint-every",
    "2",
  ];
  const rowsOf = (file: string) =>
    readFileSync(file, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { type: string; step?: number });

  it("refuses bad options and an occupied --out before writing anything; --overwrite replaces; a resumed run keeps its metrics up to the checkpoint", async () => {
    const out = join(work, "kept");
    const args = ["--model", model, "--data", data, "--out", out, ...small];
    expect((await webtune("train", ...args)).code).toBe(0);
    const metrics = join(out, "metrics.jsonl");
    const before = readFileSync(metrics);
    const adapter = readFileSync(join(out, "adapter_model.safetensors"));

    const bad = await webtune("train", ...args, "--lr", "-1");
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(
      /^webtune: --lr must be above 0, e.g. 2e-4, got -1\.$/m,
    );
    const taken = await webtune("train", ...args);
    expect(taken.code).toBe(1);
    expect(taken.stderr).toContain(
      `webtune: --out ${out} already holds a run (adapter_model.safetensors, metrics.jsonl, checkpoints). ` +
        "Pass --overwrite to replace it",
    );
    expect(readFileSync(metrics)).toEqual(before);
    expect(readFileSync(join(out, "adapter_model.safetensors"))).toEqual(
      adapter,
    );
    // Refused by the Trainer's own checks before its first step: a new --out is not left behind.
    const fresh = join(work, "never-written");
    const tight = await webtune(
      "train",
      "--model",
      model,
      "--data",
      data,
      "--out",
      fresh,
      ...small,
      "--memory-budget",
      "0.01",
    );
    expect(tight.code).toBe(1);
    expect(tight.stderr).toMatch(/over the budget of/);
    // Advice in the CLI's own flags, not the API's option names.
    expect(tight.stderr).toMatch(
      /load the base with --dtype float16 \(half the weights\) or --quantize nf4 .*turn on --gradient-checkpointing/,
    );
    expect(tight.stderr).not.toMatch(/dtype: "|gradientCheckpointing: true/);
    expect(existsSync(fresh)).toBe(false);
    const accum = await webtune(
      "train",
      ...args.map((a) => (a === out ? fresh : a)),
      "--grad-accum",
      "100",
    );
    expect(accum.stderr).toMatch(
      /^webtune: --grad-accum 100 is more micro-batches than the 9 training batches \(36 rows, --batch 4, --epochs 1\); use at most 9\.$/m,
    );
    expect(existsSync(fresh)).toBe(false);

    // Killed after logging step 4 but before checkpointing it, mid-way through a line.
    await exec("rm", ["-r", join(out, "checkpoints", "step-000004")]);
    writeFileSync(metrics, `${before.toString()}{"type":"step","step":5,"lo`);
    const resumed = await webtune(
      "train",
      ...args,
      "--resume",
      join(out, "checkpoints"),
    );
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toMatch(/resuming from .*step-000002/);
    const steps = rowsOf(metrics).filter((r) => r.type === "step");
    expect(steps.map((r) => r.step)).toEqual([1, 2, 3, 4]);
    expect(rowsOf(metrics).slice(0, 2)).toEqual(
      before
        .toString()
        .trim()
        .split("\n")
        .slice(0, 2)
        .map((l) => JSON.parse(l)),
    );

    const again = await webtune("train", ...args, "--overwrite");
    expect(again.code, again.stderr).toBe(0);
    expect(rowsOf(metrics).filter((r) => r.type === "step")).toHaveLength(4);
  });

  it("stops a diverging run with the --lr to try, keeping the earlier adapter; refuses to resume another run's checkpoint", async () => {
    const out = join(work, "diverging");
    const args = ["--model", model, "--data", data, "--out", out, ...small];
    expect((await webtune("train", ...args)).code).toBe(0);
    const adapter = readFileSync(join(out, "adapter_model.safetensors"));
    const config = readFileSync(join(out, "adapter_config.json"));

    const high = await webtune(
      "train",
      ...args,
      "--overwrite",
      "--lr",
      "1e4",
      "--checkpoint-every",
      "1",
    );
    expect(high.code).toBe(1);
    expect(high.stderr).toMatch(
      /^webtune: training diverged at step (\d+): the loss is \S+ and the gradient norm \S+\. The learning rate is probably too high: run again with --lr 1000 \(a tenth of 10000\)/m,
    );
    const step = Number(/diverged at step (\d+)/.exec(high.stderr)![1]);
    expect(high.stderr).toContain(
      `Checkpoints up to step ${step - 1} are kept in ${out}/checkpoints.`,
    );
    expect(readFileSync(join(out, "adapter_model.safetensors"))).toEqual(
      adapter,
    );
    expect(readFileSync(join(out, "adapter_config.json"))).toEqual(config);
    const logged = rowsOf(join(out, "metrics.jsonl")).map((r) => r.step);
    expect(logged).toEqual(Array.from({ length: step - 1 }, (_, i) => i + 1));

    // Those checkpoints are of a rank-4 run: a rank-8 resume is refused by name, before --out is written.
    const other = join(work, "other-rank");
    const mixed = await webtune(
      "train",
      ...args.map((a) => (a === out ? other : a)),
      "--lr",
      "1e4",
      "--checkpoint-every",
      "1",
      "--r",
      "8",
      "--resume",
      join(out, "checkpoints"),
    );
    expect(mixed.code).toBe(1);
    expect(mixed.stderr).toMatch(
      /was saved by another run: its r is 4, this run's is 8\./,
    );
    expect(existsSync(other)).toBe(false);
  });

  it("scores every row of an evaluation file and warns of test rows that are also training rows", async () => {
    const lines = readFileSync(data, "utf8").trim().split("\n");
    const test = join(work, "contaminated.jsonl");
    writeFileSync(
      test,
      [
        JSON.stringify({ text: "a new sentence about the sea." }),
        lines[3],
        lines[3],
        JSON.stringify({ text: "another new sentence." }),
        lines[7],
      ].join("\n"),
    );
    const e = await webtune("eval", "--model", model, "--data", test);
    expect(e.code, e.stderr).toBe(0);
    expect(lastJson(e.stdout)["rows"]).toBe(5);

    const r = await webtune(
      "train",
      "--model",
      model,
      "--data",
      data,
      "--test",
      test,
      "--out",
      join(work, "contaminated"),
      ...small,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(
      `warning: 3 of 5 test rows are also in the training data (--test ${test}, lines 2, 3, 5); the test ` +
        "scores overstate how well the model generalizes.",
    );
    const summary = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as Record<
      string,
      unknown
    >;
    expect(summary["test_overlap_rows"]).toBe(3);
    expect(summary["test_overlap_lines"]).toEqual([2, 3, 5]);
    expect(summary["test_rows"]).toBe(5);
  });

  it("names its own flags in data errors, and checks token ids against the model's vocabulary before --out exists", async () => {
    const bad = join(work, "bad-row.jsonl");
    writeFileSync(bad, `${readFileSync(data, "utf8")}{"text": 5}\n`);
    const out = join(work, "bad-row");
    const r = await webtune(
      "train",
      "--model",
      model,
      "--data",
      bad,
      "--out",
      out,
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `webtune: ${bad}, line 37: field "text" is a number; expected a string. Fix the row, or pass ` +
        "--skip-bad-rows to drop such rows",
    );
    expect(r.stderr).not.toMatch(/onError|truncate: true|dedupe|maxLength/);
    expect(existsSync(out)).toBe(false);
    const skipped = await webtune(
      "train",
      "--model",
      model,
      "--data",
      bad,
      "--out",
      out,
      "--skip-bad-rows",
      ...small,
    );
    expect(skipped.code, skipped.stderr).toBe(0);
    expect(skipped.stderr).toMatch(/36 of 37 rows kept .*malformed 1/);

    const ids = join(work, "ids.jsonl");
    writeFileSync(ids, '{"input_ids": [1, 2, 3]}\n{"input_ids": [4, 393]}\n');
    const t = await webtune(
      "train",
      "--model",
      model,
      "--data",
      ids,
      "--out",
      join(work, "ids"),
    );
    expect(t.code).toBe(1);
    expect(t.stderr).toContain(
      `webtune: ${ids}, line 2: field "input_ids[1]" is 393; the model's vocabulary has 393 ids (0 to 392)`,
    );
    expect(existsSync(join(work, "ids"))).toBe(false);
  });

  it("merge refuses an --out that is the --model folder, and leaves the base weights alone", async () => {
    const base = chatModelFolder(join(work, "merge-base"));
    const weights = readFileSync(join(base, "model.safetensors"));
    const adapter = join(work, "kept");
    const r = await webtune(
      "merge",
      "--model",
      base,
      "--adapter",
      adapter,
      "--out",
      `${base}/`,
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^webtune: --out .*merge-base\/ is the --model folder .*merge-base: writing there would replace the base model's own files\./m,
    );
    expect(readFileSync(join(base, "model.safetensors"))).toEqual(weights);
  });
});

describe("webtune CLI with a classification head", () => {
  it("trains a token-classification head, tags a prompt with it, and merges it into a *ForTokenClassification folder that tags alike", async () => {
    const ner = join(work, "ner.jsonl");
    const rows = ["cat", "dog", "fox", "owl"].flatMap((a) =>
      ["rome", "oslo", "lima"].map((p) =>
        JSON.stringify({
          tokens: ["the", a, "went", "to", p],
          tags: ["O", "B-PER", "O", "O", "B-LOC"],
        }),
      ),
    );
    writeFileSync(ner, `${rows.join("\n")}\n`);
    const out = join(work, "ner-adapter");
    const train = await webtune(
      "train",
      "--model",
      model,
      "--data",
      ner,
      "--task",
      "token-cls",
      "--max-steps",
      "4",
      "--lr",
      "1e-2",
      "--batch",
      "4",
      "--val-split",
      "0",
      "--out",
      out,
    );
    expect(train.code, train.stderr).toBe(0);
    const config = JSON.parse(
      readFileSync(join(out, "adapter_config.json"), "utf8"),
    ) as Record<string, unknown>;
    expect(config).toMatchObject({
      task_type: "TOKEN_CLS",
      modules_to_save: ["classifier", "score"],
      id2label: {
        "0": "O",
        "1": "B-LOC",
        "2": "I-LOC",
        "3": "B-PER",
        "4": "I-PER",
      },
    });
    const prompt = "the cow went to rome";
    const tagged = await webtune(
      "generate",
      "--model",
      model,
      "--adapter",
      out,
      "--prompt",
      prompt,
    );
    expect(tagged.code, tagged.stderr).toBe(0);
    const answer = JSON.parse(tagged.stdout.trim().split("\n").at(-1)!) as {
      words: string[];
      tags: string[];
    };
    expect(answer.words).toEqual(["the", "cow", "went", "to", "rome"]);
    expect(answer.tags).toHaveLength(5);
    expect(tagged.stdout).toMatch(/^entities: /m);

    const merged = join(work, "ner-merged");
    const merge = await webtune(
      "merge",
      "--model",
      model,
      "--adapter",
      out,
      "--out",
      merged,
    );
    expect(merge.code, merge.stderr).toBe(0);
    expect(
      JSON.parse(readFileSync(join(merged, "config.json"), "utf8")),
    ).toMatchObject({ architectures: ["LlamaForTokenClassification"] });
    const again = await webtune(
      "generate",
      "--model",
      merged,
      "--prompt",
      prompt,
    );
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).not.toMatch(/not used/);
    expect(JSON.parse(again.stdout.trim().split("\n").at(-1)!)).toEqual(answer);

    // eval scores a tagged file through the head, with a line per entity type.
    const scored = await webtune("eval", "--model", merged, "--data", ner);
    expect(scored.code, scored.stderr).toBe(0);
    expect(scored.stdout).toMatch(/^PER\s/m);
    expect(lastJson(scored.stdout)).toHaveProperty("f1");
  });
});
