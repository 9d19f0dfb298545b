/**
 * New adapter tensors: PEFT's initialisations, and the target list of a weighted combination.
 */
import * as tf from "@tensorflow/tfjs";
import { ConfigError } from "../errors.js";
import type { Linear } from "../models/layers.js";
import { scalingOf, type LoraConfig } from "./config.js";
import type { LoraWeights } from "./layer.js";

export /** A and B as PEFT initialises them: kaiming-uniform A (bound 1/√in) and zero B by default. */
function initWeights(
  layer: Linear,
  r: number,
  alpha: number,
  config: LoraConfig,
  seed: number,
): LoraWeights {
  const [IN, OUT] = [layer.inFeatures, layer.outFeatures];
  const A = tf.tidy(() =>
    config.init_lora_weights === "gaussian"
      ? tf.randomNormal([r, IN], 0, 1 / r, "float32", seed)
      : tf.randomUniform(
          [r, IN],
          -1 / Math.sqrt(IN),
          1 / Math.sqrt(IN),
          "float32",
          seed,
        ),
  ) as tf.Tensor2D;
  const B = tf.tidy(() =>
    config.init_lora_weights === false
      ? tf.randomUniform(
          [OUT, r],
          -1 / Math.sqrt(r),
          1 / Math.sqrt(r),
          "float32",
          seed + 7919,
        )
      : tf.zeros([OUT, r]),
  ) as tf.Tensor2D;
  const weights = { A: tf.variable(A, true), B: tf.variable(B, true) };
  tf.dispose([A, B]);
  return {
    ...weights,
    r,
    alpha,
    scale: scalingOf(r, alpha, config.use_rslora),
    dropout: config.lora_dropout,
  };
}

/** The targets of adapters combined by addWeightedAdapter: the union of lists, or the alternation of regexes. */
export function unionTargets(configs: LoraConfig[]): string[] | string {
  if (configs.every((c) => Array.isArray(c.target_modules))) {
    return [
      ...new Set(configs.flatMap((c) => c.target_modules as string[])),
    ].sort();
  }
  if (configs.every((c) => typeof c.target_modules === "string"))
    return configs.map((c) => `(${c.target_modules})`).join("|");
  throw new ConfigError(
    "addWeightedAdapter: adapters mix list and regex target_modules, which PEFT does not combine either.",
  );
}
