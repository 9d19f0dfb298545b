/**
 * Fuzzing checkpoint reading: the manifest parser on random text and random file lists (traversal, absolute paths,
 * separators, control characters, prototype names), the store's load on real folders with random manifests, and
 * restoreCheckpoint on random trainer_state.json, optimizer step metadata and tensor files. Each reads or is refused
 * with a WebtuneError; never a TypeError, an escape from the checkpoint's folder, or a hang.
 */
import * as tf from "@tensorflow/tfjs";
import fc from "fast-check";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseManifest } from "../../../packages/core/src/io/checkpoint_manifest.js";
import { directoryStore } from "../../../packages/core/src/io/checkpoint_store.js";
import { writeSafetensors } from "../../../packages/core/src/io/safetensors.js";
import { restoreCheckpoint } from "../../../packages/core/src/train/checkpoint.js";
import type { OptimizerState } from "../../../packages/core/src/train/steppers.js";
import type { TrainableModel } from "../../../packages/core/src/train/trainable.js";
import { fuzzParameters, Outcomes } from "./fuzz.js";

let dir: string;
let previous: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "webtune-fuzz-checkpoints-"));
  previous = tf.getBackend();
  await tf.setBackend("cpu");
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  if (previous) await tf.setBackend(previous);
});

const FILE_NAMES = [
  "weights.safetensors",
  "optimizer.safetensors",
  "trainer_state.json",
  "checkpoint.json",
  "__proto__",
  "constructor",
  "../../dev/zero",
  "../outside",
  "/etc/passwd",
  "a/b",
  "a\\b",
  "C:x",
  ".",
  "..",
  "",
  "a\u0000b",
  "x".repeat(300),
];
const fileName = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...FILE_NAMES) },
  { weight: 1, arbitrary: fc.string({ maxLength: 8, unit: "binary" }) },
);
const json = fc.jsonValue({ maxDepth: 2 });
const manifestText = fc.oneof(
  fc
    .array(fileName, { maxLength: 4 })
    .map((files) => JSON.stringify({ files })),
  fc
    .record({
      files: fc.oneof(
        json,
        fc.array(fc.oneof(fileName, json), { maxLength: 3 }),
      ),
    })
    .map((m) => JSON.stringify(m)),
  json.map((v) => JSON.stringify(v) ?? ""),
  fc.string({ maxLength: 30 }),
);

const count = fc.oneof(
  { weight: 12, arbitrary: fc.nat(1000) },
  fc.constantFrom(-1, 0.5, 2 ** 53, 1e300, -0),
  json,
);
const stateText = fc.oneof(
  {
    weight: 3,
    arbitrary: fc
      .record(
        {
          step: count,
          stale: count,
          bestLoss: fc.oneof(
            { weight: 3, arbitrary: fc.constant(null) },
            {
              weight: 3,
              arbitrary: fc.double({ min: 0, max: 10, noNaN: true }),
            },
            fc.double(),
            json,
          ),
          run: fc.oneof({ weight: 6, arbitrary: fc.constant(undefined) }, json),
        },
        { requiredKeys: ["step", "stale", "bestLoss"] },
      )
      .map((s) => JSON.stringify(s)),
  },
  json.map((v) => JSON.stringify(v) ?? ""),
  fc.string({ maxLength: 20 }),
);
const optimizerStep = fc.oneof(
  { weight: 6, arbitrary: fc.nat(1000).map(String) },
  fc.constantFrom(
    "",
    " 3",
    "0x10",
    "1e3",
    "-1",
    "3.5",
    "99999999999999999999",
    "NaN",
  ),
  fc.string({ maxLength: 4 }),
);

describe("fuzz: checkpoints", () => {
  it("parseManifest on random text and file lists", () => {
    const outcomes = new Outcomes();
    fc.assert(
      fc.property(manifestText, (text) => {
        outcomes.checkSync(() => {
          for (const file of parseManifest(text, "fuzz/step-000001")) {
            // What it accepts is one plain name: nothing that leaves the folder.
            expect(/[/\\:]/.test(file) || file.includes("\u0000")).toBe(false);
            expect(["", ".", ".."]).not.toContain(file);
          }
        });
      }),
      fuzzParameters(1500, 31),
    );
    expect(outcomes.parsed).toBeGreaterThan(outcomes.total / 20);
    expect(outcomes.refused).toBeGreaterThan(outcomes.total / 5);
  });

  it("the store's load on real folders with random manifests", async () => {
    const outcomes = new Outcomes();
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        manifestText,
        fc.array(fileName, { maxLength: 3 }),
        async (text, present) => {
          const root = join(dir, `store-${run++}`);
          await mkdir(join(root, "step-000001"), { recursive: true });
          await writeFile(join(root, "step-000001", "checkpoint.json"), text);
          // Some of the names exist as files (the plain ones; the others cannot be written there).
          for (const name of present)
            if (/^[\w.-]{1,100}$/.test(name) && name !== "." && name !== "..")
              await writeFile(join(root, "step-000001", name), name);
          await outcomes.check(async () => {
            const files = await directoryStore(root).load("step-000001");
            for (const name of Object.keys(files))
              expect(files[name]).toBeInstanceOf(Uint8Array);
          });
          await rm(root, { recursive: true, force: true });
        },
      ),
      fuzzParameters(200, 32),
    );
    expect(outcomes.parsed).toBeGreaterThan(0);
    expect(outcomes.refused).toBeGreaterThan(outcomes.total / 5);
  });

  it("restoreCheckpoint on random trainer state, optimizer step and tensors", async () => {
    const variable = tf.variable(tf.zeros([2, 2]));
    const model = {
      namedTrainableVariables: () => [{ key: "w", variable }],
    } as unknown as TrainableModel;
    const optimizer = {
      importState: () => undefined,
    } as unknown as OptimizerState;
    const f32 = (values: number[]) => ({
      dtype: "F32" as const,
      shape: [2, 2],
      data: Float32Array.from(values),
    });
    const values = fc.array(
      fc.oneof(
        {
          weight: 8,
          arbitrary: fc.float({ noNaN: true, noDefaultInfinity: true }),
        },
        fc.float(),
      ),
      { minLength: 4, maxLength: 4 },
    );
    const outcomes = new Outcomes();
    await fc.assert(
      fc.asyncProperty(
        stateText,
        optimizerStep,
        values,
        values,
        fc.constantFrom(
          "all",
          "all",
          "all",
          "no-weights",
          "no-state",
          "garbage-weights",
          "proto",
        ),
        async (state, step, w, m, layout) => {
          const files: Record<string, Uint8Array> = {
            "weights.safetensors": writeSafetensors({ w: f32(w) }),
            "optimizer.safetensors": writeSafetensors(
              { "0.exp_avg": f32(m), "0.exp_avg_sq": f32(m.map(Math.abs)) },
              { step },
            ),
            "trainer_state.json": new TextEncoder().encode(state),
          };
          if (layout === "no-weights") delete files["weights.safetensors"];
          if (layout === "no-state") delete files["trainer_state.json"];
          if (layout === "garbage-weights")
            files["weights.safetensors"] = new TextEncoder().encode(state);
          const input =
            layout === "proto"
              ? (JSON.parse(
                  '{"__proto__": {"trainer_state.json": 1}}',
                ) as Record<string, Uint8Array>)
              : files;
          await outcomes.check(() =>
            restoreCheckpoint(model, optimizer, input, "fuzz checkpoint"),
          );
        },
      ),
      fuzzParameters(600, 33),
    );
    variable.dispose();
    expect(outcomes.parsed).toBeGreaterThan(outcomes.total / 50);
    expect(outcomes.refused).toBeGreaterThan(outcomes.total / 5);
  });
});
