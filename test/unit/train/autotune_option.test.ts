/**
 * TrainerOptions.autotune: on a software adapter (lavapipe here) the Trainer keeps the fixed matmul choice unless
 * tuning is asked for; asked (here with two candidates, as options), it times the step's own matmuls before the
 * first step and caches the choice (a file under $XDG_CACHE_HOME/webtune/tuning), and `"cached"` then reads it back
 * without timing anything.
 */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { AutotuneOption } from "../../../packages/core/src/engine/autotune.js";
import {
  installedTileTable,
  installTileTable,
} from "../../../packages/core/src/kernels/lora_linear/variant.js";
import {
  Trainer,
  type TrainBatch,
} from "../../../packages/core/src/train/trainer.js";
import { needGpu } from "../../helpers/gpu.js";
import { useTinyModels } from "../../helpers/lora.js";

const { peftOf } = useTinyModels(["llama_untied"]);

const batch: TrainBatch = {
  inputIds: [[1, 5, 9, 13, 17, 21, 25, 29]],
  labels: [[1, 5, 9, 13, 17, 21, 25, 29]],
};

let cache = "";
const saved = process.env["XDG_CACHE_HOME"];
beforeAll(async () => {
  cache = await mkdtemp(join(tmpdir(), "webtune-xdg-"));
  process.env["XDG_CACHE_HOME"] = cache;
});
afterAll(async () => {
  if (saved === undefined) delete process.env["XDG_CACHE_HOME"];
  else process.env["XDG_CACHE_HOME"] = saved;
  installTileTable(undefined);
  await rm(cache, { recursive: true, force: true });
});

async function train(autotune: AutotuneOption | undefined) {
  const peft = peftOf("llama_untied");
  peft.addAdapter("default", { r: 4, targetModules: ["q_proj", "v_proj"] });
  const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
  try {
    await new Trainer(peft, { autotune, maxSteps: 1 }).train({
      train: [batch],
    });
    return warn.mock.calls.map((c) => String(c[0]));
  } finally {
    warn.mockRestore();
  }
}

describe("Trainer autotune option", () => {
  it("tunes when asked, caches the choice, reads it back, and keeps the fixed choice by default here", async (ctx) => {
    const info = await needGpu(ctx);
    expect(info.software).toBe(true);
    // Two candidates (the step compiles both anyway): timing every variant's compile on lavapipe takes minutes.
    const tuned = await train({
      variants: ["direct", "shared"],
      repetitions: 1,
    });
    expect(
      tuned.filter((l) => /autotuned \d+ matmul shape/.test(l)),
    ).toHaveLength(1);
    const table = installedTileTable();
    expect(Object.keys(table ?? {}).length).toBeGreaterThan(0);
    expect(await readdir(join(cache, "webtune", "tuning"))).toHaveLength(1);

    installTileTable(undefined);
    const cached = await train("cached");
    expect(cached).toEqual([]);
    expect(installedTileTable()).toEqual(table);

    await train(undefined);
    expect(installedTileTable()).toBeUndefined();
  });
});
