/**
 * The CLI's output folders, checked before anything is written: another run in --out is refused without
 * --overwrite, --out may not be the --model folder (links resolved) or inside it, and a resumed run keeps its
 * metrics.jsonl rows up to the checkpoint.
 */
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../../packages/core/src/errors.js";
import {
  abandonRun,
  checkApartFromModel,
  checkOutFolder,
  checkpointStep,
  keptMetricRows,
  startRun,
} from "../../../packages/cli/src/out_folder.js";

const scratch = () => mkdtempSync(join(tmpdir(), "webtune-out-"));
const rows = (...objects: object[]) =>
  objects.map((o) => `${JSON.stringify(o)}\n`).join("");

/** A folder holding a finished run: adapter, metrics and a checkpoint. */
function finishedRun(): string {
  const out = join(scratch(), "run");
  mkdirSync(join(out, "checkpoints", "step-000002"), { recursive: true });
  writeFileSync(join(out, "adapter_model.safetensors"), "weights");
  writeFileSync(join(out, "metrics.jsonl"), rows({ type: "step", step: 1 }));
  return out;
}

describe("checkOutFolder", () => {
  it("accepts a new or empty folder", async () => {
    const dir = scratch();
    expect(await checkOutFolder(join(dir, "new"), {})).toMatchObject({
      continues: false,
      replaces: false,
    });
    expect(await checkOutFolder(dir, {})).toMatchObject({ replaces: false });
  });

  it("refuses a folder holding another run, naming it, what it holds and the ways out", async () => {
    const out = finishedRun();
    const error = await checkOutFolder(out, {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toBe(
      `--out ${out} already holds a run (adapter_model.safetensors, metrics.jsonl, checkpoints). Pass --overwrite ` +
        `to replace it, choose another --out, or continue that run with --resume ${out}/checkpoints.`,
    );
    // A folder with only metrics.jsonl is a run too.
    const metricsOnly = scratch();
    writeFileSync(join(metricsOnly, "metrics.jsonl"), "");
    await expect(checkOutFolder(metricsOnly, {})).rejects.toThrow(
      /already holds a run \(metrics\.jsonl\)/,
    );
  });

  it("--overwrite replaces it; --resume from its own checkpoints continues it; --resume from elsewhere does not", async () => {
    const out = finishedRun();
    expect(await checkOutFolder(out, { overwrite: true })).toMatchObject({
      continues: false,
      replaces: true,
    });
    expect(
      await checkOutFolder(out, { resume: join(out, "checkpoints") }),
    ).toMatchObject({ continues: true, replaces: false });
    const other = finishedRun();
    await expect(
      checkOutFolder(out, { resume: join(other, "checkpoints") }),
    ).rejects.toThrow(ConfigError);
  });

  it("refuses a file as --out", async () => {
    const file = join(scratch(), "file");
    writeFileSync(file, "");
    await expect(checkOutFolder(file, {})).rejects.toThrow(
      `--out ${file} is a file; name a folder`,
    );
  });
});

describe("startRun", () => {
  it("a new run replacing another starts metrics.jsonl empty and removes the old checkpoints", async () => {
    const out = finishedRun();
    await startRun(await checkOutFolder(out, { overwrite: true }), undefined);
    expect(readFileSync(join(out, "metrics.jsonl"), "utf8")).toBe("");
    expect(existsSync(join(out, "checkpoints"))).toBe(false);
    expect(existsSync(join(out, "adapter_model.safetensors"))).toBe(true);
  });

  it("a run resumed in its own folder keeps the rows up to the checkpoint and its checkpoints", async () => {
    const out = finishedRun();
    writeFileSync(
      join(out, "metrics.jsonl"),
      rows(
        { type: "step", step: 1 },
        { type: "step", step: 2 },
        { type: "eval", step: 2 },
        { type: "step", step: 3 },
      ) + '{"type":"step","step":4,"lo',
    );
    const plan = await checkOutFolder(out, {
      resume: join(out, "checkpoints"),
    });
    await startRun(plan, 2);
    expect(readFileSync(join(out, "metrics.jsonl"), "utf8")).toBe(
      rows(
        { type: "step", step: 1 },
        { type: "step", step: 2 },
        {
          type: "eval",
          step: 2,
        },
      ),
    );
    expect(existsSync(join(out, "checkpoints", "step-000002"))).toBe(true);
  });
});

describe("abandonRun", () => {
  it("removes what startRun made for a run refused before its first step, and nothing that was there", async () => {
    const fresh = join(scratch(), "new");
    const plan = await checkOutFolder(fresh, {});
    await startRun(plan, undefined);
    expect(existsSync(join(fresh, "metrics.jsonl"))).toBe(true);
    await abandonRun(plan);
    expect(existsSync(fresh)).toBe(false);

    const out = finishedRun();
    const resumed = await checkOutFolder(out, {
      resume: join(out, "checkpoints"),
    });
    await startRun(resumed, 1);
    await abandonRun(resumed);
    expect(readFileSync(join(out, "metrics.jsonl"), "utf8")).toBe(
      rows({ type: "step", step: 1 }),
    );
    expect(existsSync(join(out, "adapter_model.safetensors"))).toBe(true);
  });
});

describe("keptMetricRows", () => {
  it("keeps step and eval rows up to the step, and drops later rows, end-of-run rows and a cut-off line", () => {
    const text =
      rows(
        { type: "step", step: 1, loss: 2 },
        { type: "eval", step: 2, loss: 1.9 },
        { type: "step", step: 2, loss: 1.8 },
        { type: "step", step: 3, loss: 1.7 },
        { type: "test", phase: "base", step: 2 },
        { type: "forgetting", base_loss: 3 },
      ) + '{"type":"step","st';
    expect(keptMetricRows(text, 2)).toBe(
      rows(
        { type: "step", step: 1, loss: 2 },
        { type: "eval", step: 2, loss: 1.9 },
        { type: "step", step: 2, loss: 1.8 },
      ),
    );
    expect(keptMetricRows("", 5)).toBe("");
  });
});

describe("checkpointStep", () => {
  it("reads trainer_state.json's step, and refuses a checkpoint without one", () => {
    const files = {
      "trainer_state.json": new TextEncoder().encode('{"step":40}'),
    };
    expect(checkpointStep(files, "ckpt")).toBe(40);
    expect(() => checkpointStep({}, "ckpt")).toThrow(
      /ckpt: the checkpoint's trainer_state\.json has no step/,
    );
  });
});

describe("checkApartFromModel", () => {
  const model = () => {
    const dir = join(scratch(), "model");
    mkdirSync(dir);
    writeFileSync(join(dir, "model.safetensors"), "base");
    return dir;
  };

  it("refuses the model's own folder, under any spelling or link", async () => {
    const dir = model();
    await expect(checkApartFromModel(dir, dir)).rejects.toThrow(
      `--out ${dir} is the --model folder: writing there would replace the base model's own files.`,
    );
    await expect(checkApartFromModel(`${dir}/./`, dir)).rejects.toThrow(
      ConfigError,
    );
    const link = join(scratch(), "link");
    symlinkSync(dir, link);
    await expect(checkApartFromModel(link, dir)).rejects.toThrow(
      `--out ${link} is the --model folder ${dir}`,
    );
  });

  it("refuses a folder inside the model's, even one that does not exist yet", async () => {
    const dir = model();
    await expect(
      checkApartFromModel(join(dir, "merged", "new"), dir),
    ).rejects.toThrow(/is inside the --model folder/);
  });

  it("accepts a folder beside the model, and sources that are not local folders", async () => {
    const dir = model();
    await checkApartFromModel(join(dir, "..", "merged"), dir);
    await checkApartFromModel(dir, "HuggingFaceTB/SmolLM2-135M");
  });
});
