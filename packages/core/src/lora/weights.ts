/**
 * Adapter tensors from files (checked against the model, module by module) and combinations of adapters.
 */
import * as tf from "@tensorflow/tfjs";
import { FormatError, ShapeError } from "../errors.js";
import type { AdapterTensors } from "../io/peft.js";
import type { Linear } from "../models/layers.js";
import { scalingOf, type LoraConfig } from "./config.js";
import type { LoraWeights } from "./layer.js";
import { rankAndAlpha } from "./target.js";

const shapeText = (s: readonly number[]) => `[${s.join(", ")}]`;

/**
 * Every module's A, B (and DoRA magnitude) as variables, after checking all of them: a module the model lacks,
 * a missing part, or a shape that differs from [r, in] / [out, r] / [out] is an error naming the module and both
 * shapes, and then nothing is uploaded.
 */
export function adapterWeightsFromFile(
  modules: Map<string, AdapterTensors>,
  linears: Map<string, Linear>,
  config: LoraConfig,
  source: string,
): Map<string, LoraWeights> {
  if (modules.size === 0)
    throw new FormatError(`${source}: the adapter file holds no LoRA tensors.`);
  for (const [module, t] of modules)
    checkModule(module, t, linears, config, source);
  const out = new Map<string, LoraWeights>();
  // In a tidy: the tensors the variables are made from are released (a variable outlives its tidy).
  for (const [module, t] of modules) {
    const { r, alpha } = rankAndAlpha(config, module);
    const weights = tf.tidy(() => ({
      A: tf.variable(
        tf.tensor2d(
          t.lora_A!.data as Float32Array,
          t.lora_A!.shape as [number, number],
        ),
        true,
      ),
      B: tf.variable(
        tf.tensor2d(
          t.lora_B!.data as Float32Array,
          t.lora_B!.shape as [number, number],
        ),
        true,
      ),
      r,
      alpha,
      scale: scalingOf(r, alpha, config.use_rslora),
      dropout: config.lora_dropout,
      magnitude: t.lora_magnitude_vector
        ? tf.variable(
            tf.tensor1d(t.lora_magnitude_vector.data as Float32Array),
            true,
          )
        : undefined,
    }));
    out.set(module, weights);
  }
  return out;
}

function checkModule(
  module: string,
  t: AdapterTensors,
  linears: Map<string, Linear>,
  config: LoraConfig,
  source: string,
): void {
  const layer = linears.get(module);
  if (!layer) {
    const names = [...linears.keys()];
    throw new ShapeError(
      `${source}: the adapter has weights for "${module}", which this model does not have. Was it trained on another ` +
        `base model? This model's Linear modules look like ${names.slice(0, 3).join(", ")}.`,
    );
  }
  if (!t.lora_A || !t.lora_B) {
    throw new FormatError(
      `${source}: module "${module}" has ${t.lora_A ? "lora_A" : "lora_B"} but not ${t.lora_A ? "lora_B" : "lora_A"}.`,
    );
  }
  const { r } = rankAndAlpha(config, module);
  const expect = (what: string, got: readonly number[], want: number[]) => {
    if (got.length !== want.length || got.some((d, i) => d !== want[i])) {
      throw new ShapeError(
        `${source}: "${module}.${what}" is ${shapeText(got)}, but this model's ${module} (in ${layer.inFeatures}, ` +
          `out ${layer.outFeatures}) with r = ${r} needs ${shapeText(want)}. The adapter belongs to a different base model or config.`,
      );
    }
  };
  expect("lora_A.weight", t.lora_A.shape, [r, layer.inFeatures]);
  expect("lora_B.weight", t.lora_B.shape, [layer.outFeatures, r]);
  if (config.use_dora && !t.lora_magnitude_vector) {
    throw new FormatError(
      `${source}: use_dora is true but "${module}" has no lora_magnitude_vector.`,
    );
  }
  if (t.lora_magnitude_vector)
    expect("lora_magnitude_vector", t.lora_magnitude_vector.shape, [
      layer.outFeatures,
    ]);
}

/**
 * PEFT's add_weighted_adapter on one layer. linear: A = Σ sign·√|w·s|·A_i, B = Σ √|w·s|·B_i;
 * cat: A = [w·s·A_i] stacked by rows, B = [B_i] by columns, zero-padded to rank r.
 */
export function combineAdapters(
  parts: { w: LoraWeights | undefined; weight: number }[],
  type: "linear" | "cat",
  r: number,
): { A: tf.Variable<tf.Rank.R2>; B: tf.Variable<tf.Rank.R2> } {
  const present = parts.filter(
    (p): p is { w: LoraWeights; weight: number } => p.w !== undefined,
  );
  const [A, B] = tf.tidy(() => {
    if (type === "linear") {
      let a: tf.Tensor | undefined;
      let b: tf.Tensor | undefined;
      for (const { w, weight } of present) {
        const ws = weight * w.scale;
        const root = Math.sqrt(Math.abs(ws));
        const termA = w.A.mul(Math.sign(ws) * root || root);
        const termB = w.B.mul(root);
        a = a ? a.add(termA) : termA;
        b = b ? b.add(termB) : termB;
      }
      return [a!, b!];
    }
    const as = present.map(({ w, weight }) => w.A.mul(weight * w.scale));
    const bs = present.map(({ w }) => w.B as tf.Tensor);
    const rank = present.reduce((n, { w }) => n + w.r, 0);
    if (rank < r) {
      as.push(tf.zeros([r - rank, present[0]!.w.A.shape[1]]));
      bs.push(tf.zeros([present[0]!.w.B.shape[0], r - rank]));
    }
    return [tf.concat(as, 0), tf.concat(bs, 1)];
  });
  const out = {
    A: tf.variable(A as tf.Tensor2D, true),
    B: tf.variable(B as tf.Tensor2D, true),
  };
  tf.dispose([A, B]);
  return out;
}
