/**
 * Adapter files on disk whose tensors hold NaN or ±Inf (F32, F16 and BF16), or one tensor under two spellings of
 * its key, are refused on load with a FormatError naming the tensor; LoraModel.loadAdapter then adds nothing and
 * leaves no tensor behind; saveAdapter never writes such values. On tfjs's CPU backend: no GPU needed.
 */
import * as tf from "@tensorflow/tfjs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FormatError } from "../../../packages/core/src/errors.js";
import { openModelFiles } from "../../../packages/core/src/io/hub.js";
import { readAdapterFiles } from "../../../packages/core/src/io/peft.js";
import {
  writeSafetensors,
  type TensorToWrite,
} from "../../../packages/core/src/io/safetensors.js";
import { LoraModel } from "../../../packages/core/src/lora/model.js";
import { Linear } from "../../../packages/core/src/models/layers.js";
import type { PretrainedModel } from "../../../packages/core/src/models/pretrained.js";

const MODULE = "model.layers.0.self_attn.q_proj";
const A = `base_model.model.${MODULE}.lora_A.weight`;
const B = `base_model.model.${MODULE}.lora_B.weight`;
const CONFIG = {
  peft_type: "LORA",
  r: 2,
  lora_alpha: 4,
  target_modules: ["q_proj"],
};

let dir: string;
let previous: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "webtune-adapter-values-"));
  previous = tf.getBackend();
  await tf.setBackend("cpu");
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  if (previous) await tf.setBackend(previous);
});

/** Writes an adapter folder with these tensors; returns its path. */
async function adapterDir(
  name: string,
  tensors: Record<string, TensorToWrite>,
): Promise<string> {
  const folder = join(dir, name);
  await mkdir(folder);
  await writeFile(join(folder, "adapter_config.json"), JSON.stringify(CONFIG));
  await writeFile(
    join(folder, "adapter_model.safetensors"),
    writeSafetensors(tensors),
  );
  return folder;
}

/** A LoraModel over a stand-in base with one 4×4 Linear, MODULE, on the CPU. */
function oneLinearModel(): {
  weight: tf.Tensor2D;
  linear: Linear;
  peft: LoraModel;
} {
  const weight = tf.zeros([4, 4]) as tf.Tensor2D;
  const linear = new Linear(MODULE, weight, null, "out_in");
  const base = {
    source: "tiny (CPU)",
    linears: () => [linear],
    lm: { otherModules: () => [] },
  } as unknown as PretrainedModel;
  return { weight, linear, peft: new LoraModel(base) };
}

const f32 = (values: number[], shape: number[]): TensorToWrite => ({
  dtype: "F32",
  shape,
  data: Float32Array.from(values),
});
/** Raw 16-bit patterns as F16 or BF16. */
const half = (
  dtype: "F16" | "BF16",
  bits: number[],
  shape: number[],
): TensorToWrite => ({ dtype, shape, data: Uint16Array.from(bits) });

const goodA = f32([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], [2, 4]);
const goodB = f32([0, 0, 0, 0, 0, 0, 0, 0], [4, 2]);

async function loadError(folder: string): Promise<Error> {
  const error = await readAdapterFiles(
    await openModelFiles(folder, { cache: false }),
  ).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(FormatError);
  return error as Error;
}

describe("non-finite adapter values", () => {
  it("NaN in an F32 lora_A: a FormatError naming the tensor, the value and its index", async () => {
    const folder = await adapterDir("f32-nan", {
      [A]: f32([0.1, 0.2, NaN, 0.4, 0.5, 0.6, 0.7, 0.8], [2, 4]),
      [B]: goodB,
    });
    const error = await loadError(folder);
    expect(error.message).toContain("adapter_model.safetensors");
    expect(error.message).toMatch(
      new RegExp(
        `tensor "${A.replaceAll(".", "\\.")}" \\(F32 \\[2, 4\\]\\) holds NaN at index 2`,
      ),
    );
  });

  it("+Inf in F16 and -Inf and NaN in BF16", async () => {
    // F16 0x7c00 = +Inf; BF16 0xff80 = -Inf, 0x7fc1 = a NaN.
    const cases: [string, TensorToWrite, RegExp][] = [
      [
        "f16-inf",
        half("F16", [0x3c00, 0, 0, 0, 0, 0, 0x7c00, 0], [4, 2]),
        /\(F16 \[4, 2\]\) holds Infinity at index 6/,
      ],
      [
        "bf16-neg-inf",
        half("BF16", [0xff80, 0, 0, 0, 0, 0, 0, 0], [4, 2]),
        /\(BF16 \[4, 2\]\) holds -Infinity at index 0/,
      ],
      [
        "bf16-nan",
        half("BF16", [0, 0, 0, 0, 0, 0, 0, 0x7fc1], [4, 2]),
        /\(BF16 \[4, 2\]\) holds NaN at index 7/,
      ],
    ];
    for (const [name, tensor, message] of cases) {
      const error = await loadError(
        await adapterDir(name, { [A]: goodA, [B]: tensor }),
      );
      expect(error.message).toContain(`"${B}"`);
      expect(error.message).toMatch(message);
    }
  });

  it("finite extremes (the largest F16 and F32 values, subnormals, -0) load", async () => {
    const folder = await adapterDir("extremes", {
      [A]: f32(
        [3.4028234663852886e38, -3.4028234663852886e38, 1e-45, -0, 0, 1, 2, 3],
        [2, 4],
      ),
      [B]: half("F16", [0x7bff, 0xfbff, 0x0001, 0x8000, 0, 0, 0, 0], [4, 2]),
    });
    const { modules } = await readAdapterFiles(
      await openModelFiles(folder, { cache: false }),
    );
    expect(modules.get(MODULE)?.lora_B?.data[0]).toBe(65504);
  });

  it("one tensor under two spellings of its key is refused, naming both", async () => {
    const folder = await adapterDir("two-spellings", {
      [A]: goodA,
      [`${MODULE}.lora_A.weight`]: goodA,
      [B]: goodB,
    });
    expect((await loadError(folder)).message).toMatch(
      /are both lora_A of module "model\.layers\.0\.self_attn\.q_proj"/,
    );
  });

  it("LoraModel.loadAdapter refuses it and adds nothing, leaking no tensor", async () => {
    const { weight, linear, peft } = oneLinearModel();
    const folder = await adapterDir("nan-load", {
      [A]: goodA,
      [B]: f32([0, 0, 0, NaN, 0, 0, 0, 0], [4, 2]),
    });
    const before = tf.memory().numTensors;
    await expect(
      peft.loadAdapter("nan", folder, { cache: false }),
    ).rejects.toThrow(FormatError);
    expect(tf.memory().numTensors).toBe(before);
    expect(peft.adapterNames).toEqual([]);
    expect(linear.adapter).toBeUndefined();
    // The same folder with finite values loads.
    const ok = await adapterDir("finite-load", { [A]: goodA, [B]: goodB });
    await peft.loadAdapter("ok", ok, { cache: false });
    expect(peft.adapterNames).toEqual(["ok"]);
    peft.dispose();
    weight.dispose();
  });

  it("saveAdapter refuses to write an adapter holding NaN, naming the tensor", async () => {
    const { weight, peft } = oneLinearModel();
    peft.addAdapter("default", { r: 2, targetModules: ["q_proj"] });
    const b = peft.trainableVariables()[1]!;
    b.assign(tf.tensor([0, 0, 0, NaN, 0, 0, 0, 0], b.shape));
    await expect(peft.saveAdapter()).rejects.toThrow(
      `tensor "${B}" (F32 [4, 2]) holds NaN at index 3`,
    );
    peft.dispose();
    weight.dispose();
  });
});
