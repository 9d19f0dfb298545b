/**
 * A resume takes only a checkpoint of the same run. Each checkpoint stores its run's identity (the trainable
 * tensors, a digest of the data, the hyperparameters, and what the caller adds); a resume that differs in any field
 * is refused with that field named, before any weight changes. A checkpoint without an identity (older versions)
 * is still checked tensor by tensor: another rank is a FormatError naming the tensor and both shapes, not a tfjs
 * reshape error.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, FormatError, type LoraModel } from "@webtune/core";
import { directoryStore } from "../../../packages/core/src/io/checkpoint_store.js";
import {
  Trainer,
  type TrainBatch,
  type TrainerOptions,
} from "../../../packages/core/src/train/trainer.js";
import { needGpu } from "../../helpers/gpu.js";
import { useTinyModels } from "../../helpers/lora.js";

const { peftOf } = useTinyModels(["llama_untied"]);

const data = (offset: number): TrainBatch[] =>
  Array.from({ length: 6 }, (_, s) => {
    const inputIds = [0, 1].map((r) =>
      Array.from({ length: 8 }, (_, t) => (offset + s * 11 + r * 7 + t) % 72),
    );
    return { inputIds, labels: inputIds };
  });

const base: TrainerOptions = {
  learningRate: 1e-3,
  maxSteps: 4,
  run: { model: "tiny/llama_untied" },
};

function adapter(r: number, loraAlpha = 8): LoraModel {
  const peft = peftOf("llama_untied");
  peft.addAdapter(
    "default",
    {
      r,
      loraAlpha,
      targetModules: ["q_proj", "v_proj"],
      initLoraWeights: false,
    },
    { seed: 1 },
  );
  return peft;
}

/** Trains 4 steps with a checkpoint every 2; returns the folder's store. */
async function checkpointed(): Promise<ReturnType<typeof directoryStore>> {
  const store = directoryStore(mkdtempSync(join(tmpdir(), "webtune-id-")));
  await new Trainer(adapter(4), {
    ...base,
    checkpoint: { store, every: 2 },
  }).train({ train: data(0) });
  return store;
}

async function snapshot(peft: LoraModel): Promise<number[][]> {
  return Promise.all(
    peft.trainableVariables().map(async (v) => Array.from(await v.data())),
  );
}

describe("resuming a checkpoint of another run", () => {
  const cases: [string, number, TrainerOptions, TrainBatch[], RegExp][] = [
    ["another rank", 8, base, data(0), /its r is 4, this run's is 8/],
    [
      "another learning rate",
      4,
      { ...base, learningRate: 2e-3 },
      data(0),
      /its learningRate is 0\.001, this run's is 0\.002/,
    ],
    [
      "other data",
      4,
      base,
      data(5),
      /its data \(a digest of the training batches, in order\) is "6 batches, [0-9a-f]{8}"/,
    ],
    [
      "another model, as the caller names it",
      4,
      { ...base, run: { ...base.run, model: "tiny/other" } },
      data(0),
      /its model is "tiny\/llama_untied", this run's is "tiny\/other"/,
    ],
  ];
  for (const [what, r, options, train, message] of cases) {
    it(`is refused for ${what}, naming the field, with no weight changed`, async (ctx) => {
      await needGpu(ctx);
      const store = await checkpointed();
      const peft = adapter(r);
      const before = await snapshot(peft);
      const files = await store.load((await store.list()).at(-1)!);
      const run = new Trainer(peft, options).train({ train }, files);
      await expect(run).rejects.toThrow(ConfigError);
      await expect(
        new Trainer(peft, options).train({ train }, files),
      ).rejects.toThrow(message);
      expect(await snapshot(peft)).toEqual(before);
    });
  }

  it("is refused for another LoRA alpha, which the adapter's config names", async (ctx) => {
    await needGpu(ctx);
    const store = await checkpointed();
    const files = await store.load("step-000004");
    await expect(
      new Trainer(adapter(4, 16), base).train({ train: data(0) }, files),
    ).rejects.toThrow(/its lora_alpha is 8, this run's is 16/);
  });

  it("resumes when every field agrees", async (ctx) => {
    await needGpu(ctx);
    const store = await checkpointed();
    const files = await store.load("step-000002");
    const result = await new Trainer(adapter(4), base).train(
      { train: data(0) },
      files,
    );
    expect(result.steps).toBe(4);
  });

  it("is refused for a classification head the checkpoint had not, or other labels; a head's own checkpoint resumes", async (ctx) => {
    await needGpu(ctx);
    const store = await checkpointed();
    const withHead = (labels: string[]) => {
      const peft = peftOf("llama_untied");
      peft.addAdapter(
        "default",
        {
          r: 4,
          loraAlpha: 8,
          targetModules: ["q_proj", "v_proj"],
          initLoraWeights: false,
        },
        { seed: 1, head: { task: "token-cls", labels } },
      );
      return peft;
    };
    // Token-classification targets: label ids at the positions they score.
    const tagged = data(0).map((b) => ({
      ...b,
      labels: b.inputIds.map((row) => row.map((id) => id % 2)),
    }));
    const peft = withHead(["O", "B-X"]);
    await expect(
      new Trainer(peft, base).train(
        { train: tagged },
        await store.load("step-000004"),
      ),
    ).rejects.toThrow(
      /its task_type is "CAUSAL_LM", this run's is "TOKEN_CLS"/,
    );
    peft.dispose();

    const headStore = directoryStore(
      mkdtempSync(join(tmpdir(), "webtune-id-")),
    );
    const first = withHead(["O", "B-X"]);
    await new Trainer(first, {
      ...base,
      checkpoint: { store: headStore, every: 2 },
    }).train({
      train: tagged,
    });
    first.dispose();
    const files = await headStore.load("step-000002");
    const other = withHead(["O", "B-Y"]);
    await expect(
      new Trainer(other, base).train({ train: tagged }, files),
    ).rejects.toThrow(/its labels is "\[\\"O\\",\\"B-X\\"\]"/);
    other.dispose();
    const same = withHead(["O", "B-X"]);
    const result = await new Trainer(same, base).train(
      { train: tagged },
      files,
    );
    expect(result.steps).toBe(4);
    same.dispose();
  });

  it("checks an identity-less checkpoint tensor by tensor, naming the shapes", async (ctx) => {
    await needGpu(ctx);
    const store = await checkpointed();
    const name = (await store.list()).at(-1)!;
    const stateFile = join(store.description, name, "trainer_state.json");
    const state = JSON.parse(readFileSync(stateFile, "utf8"));
    delete state.run;
    writeFileSync(stateFile, JSON.stringify(state));
    const peft = adapter(8);
    const before = await snapshot(peft);
    const run = new Trainer(peft, base).train(
      { train: data(0) },
      await store.load(name),
    );
    await expect(run).rejects.toThrow(FormatError);
    await expect(
      new Trainer(peft, base).train({ train: data(0) }, await store.load(name)),
    ).rejects.toThrow(
      /is \[4, 48\] in the checkpoint but \[8, 48\] in this model/,
    );
    expect(await snapshot(peft)).toEqual(before);
  });
});
