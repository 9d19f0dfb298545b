/**
 * Checkpoints read back from real folders are not trusted: a manifest (checkpoint.json) listing "../../dev/zero",
 * an absolute path, a separator, "." / "..", a duplicate or a non-string, or not having {"files": [...]} at all, is
 * a FormatError naming the checkpoint and the file, before any file is opened; a listed file that is a device, a
 * FIFO or missing is refused without hanging; a bad checkpoint name is a ConfigError. trainer_state.json's step,
 * stale and bestLoss, and the optimizer's step, must be sane numbers, and weights and moments finite floats:
 * otherwise a FormatError naming the field or tensor, and nothing is assigned. No GPU: tfjs's CPU backend.
 */
import * as tf from "@tensorflow/tfjs";
import { execFileSync } from "node:child_process";
import {
  mkdir,
  mkdtemp,
  readFile,
  rm,
  symlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ConfigError,
  FileNotFoundError,
  FormatError,
} from "../../../packages/core/src/errors.js";
import { directoryStore } from "../../../packages/core/src/io/checkpoint_store.js";
import { writeSafetensors } from "../../../packages/core/src/io/safetensors.js";
import { restoreCheckpoint } from "../../../packages/core/src/train/checkpoint.js";
import type { OptimizerState } from "../../../packages/core/src/train/steppers.js";
import type { TrainableModel } from "../../../packages/core/src/train/trainable.js";

let dir: string;
let previous: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "webtune-checkpoint-files-"));
  previous = tf.getBackend();
  await tf.setBackend("cpu");
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  if (previous) await tf.setBackend(previous);
});

/** A checkpoint folder `name` in its own store, with this manifest text and these files. */
async function folderWith(
  name: string,
  manifest: string,
  files: Record<string, string> = {},
): Promise<ReturnType<typeof directoryStore>> {
  const root = join(dir, `store-${name}`);
  await mkdir(join(root, name), { recursive: true });
  await writeFile(join(root, name, "checkpoint.json"), manifest);
  for (const [file, text] of Object.entries(files))
    await writeFile(join(root, name, file), text);
  return directoryStore(root);
}

async function loadError(
  store: ReturnType<typeof directoryStore>,
  name: string,
): Promise<Error> {
  const error = await store.load(name).then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  expect(error).toBeDefined();
  return error!;
}

describe("checkpoint manifests", () => {
  it('"../../dev/zero" in the manifest: a FormatError naming the checkpoint and the file, nothing read', async () => {
    const store = await folderWith(
      "step-000001",
      JSON.stringify({ files: ["weights.safetensors", "../../dev/zero"] }),
      { "weights.safetensors": "x" },
    );
    const error = await loadError(store, "step-000001");
    expect(error).toBeInstanceOf(FormatError);
    expect(error.message).toContain(`${store.description}/step-000001`);
    expect(error.message).toMatch(
      /checkpoint\.json lists the file "\.\.\/\.\.\/dev\/zero", which is not a plain file name/,
    );
  });

  it("every kind of unsafe or malformed entry", async () => {
    const cases: [unknown, RegExp][] = [
      [["/etc/passwd"], /lists the file "\/etc\/passwd"/],
      [["a\\b"], /lists the file "a\\\\b"/],
      [["C:x"], /lists the file "C:x"/],
      [["."], /lists the file "\."/],
      [[".."], /lists the file "\.\."/],
      [[""], /lists the file ""/],
      [["a\u0000b"], /lists the file "a\\u0000b"/],
      [["w", "w"], /lists the file "w" twice/],
      [[1], /its "files" is a list holding something other than names/],
      ["weights.safetensors", /its "files" is missing or not a list/],
    ];
    for (const [i, [files, message]] of cases.entries()) {
      const store = await folderWith(`m${i}`, JSON.stringify({ files }), {
        w: "x",
      });
      const error = await loadError(store, `m${i}`);
      expect(error).toBeInstanceOf(FormatError);
      expect(error.message).toMatch(message);
    }
    for (const [i, text] of ["{", "[1]", "null", '"files"'].entries()) {
      const error = await loadError(await folderWith(`j${i}`, text), `j${i}`);
      expect(error).toBeInstanceOf(FormatError);
      expect(error.message).toMatch(
        /checkpoint\.json (is not valid JSON|must be)/,
      );
    }
  });

  it("a listed file that is a device, a FIFO, or missing: refused, without hanging", async () => {
    const store = await folderWith(
      "devices",
      JSON.stringify({ files: ["zero", "fifo", "gone"] }),
    );
    const folder = join(store.description, "devices");
    await symlink("/dev/zero", join(folder, "zero"));
    execFileSync("mkfifo", [join(folder, "fifo")]);
    const zero = await loadError(store, "devices");
    expect(zero).toBeInstanceOf(FormatError);
    expect(zero.message).toMatch(/devices: zero is not a regular file/);
    await writeFile(
      join(folder, "checkpoint.json"),
      JSON.stringify({ files: ["fifo"] }),
    );
    expect((await loadError(store, "devices")).message).toMatch(
      /fifo is not a regular file/,
    );
    await writeFile(
      join(folder, "checkpoint.json"),
      JSON.stringify({ files: ["gone"] }),
    );
    const gone = await loadError(store, "devices");
    expect(gone).toBeInstanceOf(FileNotFoundError);
    expect(gone.message).toMatch(
      /devices has no gone, which its checkpoint\.json lists/,
    );
  }, 10_000);

  it("a checkpoint name that leaves the store is a ConfigError; a missing one a FileNotFoundError", async () => {
    const store = directoryStore(join(dir, "names"));
    for (const name of ["../names", "a/b", "..", ""])
      expect(await loadError(store, name)).toBeInstanceOf(ConfigError);
    expect(await loadError(store, "step-000009")).toBeInstanceOf(
      FileNotFoundError,
    );
  });

  it("what save writes loads back, a file named __proto__ included", async () => {
    const store = directoryStore(join(dir, "roundtrip"));
    const files = Object.fromEntries([
      ["weights.safetensors", new Uint8Array([1, 2, 3])],
      ["__proto__", "not a prototype"],
    ]);
    await store.save("step-000002", files);
    const loaded = await store.load("step-000002");
    expect(Object.keys(loaded)).toEqual(["weights.safetensors", "__proto__"]);
    expect(Object.hasOwn(loaded, "__proto__")).toBe(true);
    expect(new TextDecoder().decode(loaded["__proto__"])).toBe(
      "not a prototype",
    );
    expect(Object.getPrototypeOf(loaded)).toBe(Object.prototype);
  });
});

describe("trainer state and values", () => {
  /** A real checkpoint on disk of one 2×2 variable; `edit` changes its files before it is loaded again. */
  async function restoreEdited(
    name: string,
    edit: (folder: string) => Promise<void>,
  ): Promise<{ error: unknown; variable: tf.Variable; imported: boolean }> {
    const variable = tf.variable(tf.tensor2d([1, 2, 3, 4], [2, 2]));
    const model = {
      namedTrainableVariables: () => [{ key: "w", variable }],
    } as unknown as TrainableModel;
    let imported = false;
    const optimizer = {
      importState: () => {
        imported = true;
      },
    } as unknown as OptimizerState;
    const store = directoryStore(join(dir, `state-${name}`));
    const moment = {
      dtype: "F32" as const,
      shape: [2, 2],
      data: new Float32Array(4),
    };
    await store.save("step-000003", {
      "weights.safetensors": writeSafetensors({
        w: {
          dtype: "F32",
          shape: [2, 2],
          data: new Float32Array([5, 6, 7, 8]),
        },
      }),
      "optimizer.safetensors": writeSafetensors(
        { "0.exp_avg": moment, "0.exp_avg_sq": moment },
        { step: "3" },
      ),
      "trainer_state.json": JSON.stringify({
        step: 3,
        bestLoss: 1.5,
        stale: 0,
      }),
    });
    await edit(join(store.description, "step-000003"));
    const files = await store.load("step-000003");
    const error = await restoreCheckpoint(model, optimizer, files, "ckpt").then(
      () => undefined,
      (e: unknown) => e,
    );
    return { error, variable, imported };
  }

  const stateWith =
    (fields: Record<string, unknown>) => async (folder: string) => {
      const path = join(folder, "trainer_state.json");
      const state = JSON.parse(await readFile(path, "utf8")) as object;
      await writeFile(path, JSON.stringify({ ...state, ...fields }));
    };

  it("a sane checkpoint restores", async () => {
    const { error, variable, imported } = await restoreEdited(
      "ok",
      async () => {},
    );
    expect(error).toBeUndefined();
    expect(imported).toBe(true);
    expect(Array.from(await variable.data())).toEqual([5, 6, 7, 8]);
    variable.dispose();
  });

  const bad: [string, Record<string, unknown>, RegExp][] = [
    [
      "negative step",
      { step: -1 },
      /trainer_state\.json's "step" is -1; it must be a whole number/,
    ],
    ["fractional step", { step: 2.5 }, /"step" is 2\.5/],
    ["string step", { step: "3" }, /"step" is "3"/],
    ["absurd step", { step: 1e300 }, /"step" is 1e\+300/],
    ["missing step", { step: undefined }, /"step" is undefined/],
    ["negative stale", { stale: -2 }, /"stale" is -2/],
    [
      "NaN-like bestLoss",
      { bestLoss: "NaN" },
      /"bestLoss" "NaN"; it must be null or a loss/,
    ],
    ["negative bestLoss", { bestLoss: -1 }, /"bestLoss" -1/],
  ];
  for (const [what, fields, message] of bad)
    it(`trainer_state.json with a ${what}: a FormatError naming the field, nothing assigned`, async () => {
      const { error, variable, imported } = await restoreEdited(
        what.replaceAll(" ", "-"),
        stateWith(fields),
      );
      expect(error).toBeInstanceOf(FormatError);
      expect((error as Error).message).toMatch(message);
      expect(imported).toBe(false);
      expect(Array.from(await variable.data())).toEqual([1, 2, 3, 4]);
      variable.dispose();
    });

  it("an optimizer step that is not digits, and NaN in a weight or moment", async () => {
    const rewrite =
      (file: string, bytes: Uint8Array) => async (folder: string) =>
        writeFile(join(folder, file), bytes);
    const moment = {
      dtype: "F32" as const,
      shape: [2, 2],
      data: new Float32Array(4),
    };
    const cases: [string, (folder: string) => Promise<void>, RegExp][] = [
      [
        "step",
        rewrite(
          "optimizer.safetensors",
          writeSafetensors(
            { "0.exp_avg": moment, "0.exp_avg_sq": moment },
            { step: "0x10" },
          ),
        ),
        /optimizer\.safetensors's metadata "step" is "0x10"/,
      ],
      [
        "weight",
        rewrite(
          "weights.safetensors",
          writeSafetensors({
            w: {
              dtype: "F32",
              shape: [2, 2],
              data: new Float32Array([1, NaN, 3, 4]),
            },
          }),
        ),
        /tensor "w" \(F32 \[2, 2\]\) holds NaN at index 1/,
      ],
      [
        "moment",
        rewrite(
          "optimizer.safetensors",
          writeSafetensors(
            {
              "0.exp_avg": moment,
              "0.exp_avg_sq": {
                ...moment,
                data: new Float32Array([0, 0, Infinity, 0]),
              },
            },
            { step: "3" },
          ),
        ),
        /tensor "0\.exp_avg_sq" \(F32 \[2, 2\]\) holds Infinity at index 2/,
      ],
    ];
    for (const [name, edit, message] of cases) {
      const { error, variable, imported } = await restoreEdited(name, edit);
      expect(error).toBeInstanceOf(FormatError);
      expect((error as Error).message).toMatch(message);
      expect(imported).toBe(false);
      expect(Array.from(await variable.data())).toEqual([1, 2, 3, 4]);
      variable.dispose();
    }
  });
});
