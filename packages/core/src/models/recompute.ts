/**
 * Activation checkpointing (HF's gradient checkpointing): a decoder block keeps only its input for the backward
 * pass and is run again there, so the peak memory holds one block's activations instead of every block's.
 *
 * forward:  y = block(x), its intermediates freed at once, x (and the RoPE tables and masks it reads) saved
 * backward: y = block(x) again under a tape of its own; dy -> dx and a gradient for each trainable variable
 *
 * Letters: B batch, T tokens, C hidden size.
 */
import * as tf from "@tensorflow/tfjs";
import { gradientsFreeingAsTheyGo } from "../backend/tape.js";
import type { Linear } from "./layers.js";

/** The trainable variables among `values`, each once: only these get a gradient from a recomputed block. */
export function trainableVariables(values: readonly unknown[]): tf.Variable[] {
  const vars = values.filter(
    (v): v is tf.Variable => v instanceof tf.Variable && v.trainable,
  );
  return [...new Set(vars)];
}

/** A Linear's trainable tensors: its weight and bias in full fine-tuning, and its adapter's active weights. */
export function linearVariables(layer: Linear): tf.Variable[] {
  return trainableVariables([
    layer.weight,
    layer.bias,
    ...(layer.adapter?.trainableVariables() ?? []),
  ]);
}

/** A block's trainable tensors: its own (norm weights) and its Linears', each once. */
export function blockVariables(
  own: readonly unknown[],
  linears: readonly Linear[],
): tf.Variable[] {
  return trainableVariables([...own, ...linears.flatMap(linearVariables)]);
}

/**
 * Runs `block(x, context)` keeping only x and `context` for the backward pass, which runs the block again for
 * dx and a gradient for each of `params`: the same gradients as the plain block, with one block's activations
 * alive at a time. `context` holds the other tensors the block reads (RoPE tables, masks) in plain objects and
 * arrays; they are saved with x, because the scope that made them ends before the backward pass runs.
 * `params` must hold every trainable variable the block reads (see `blockVariables`): one left out silently
 * gets no gradient, since the forward pass records nothing. Outside a gradient computation it is the block.
 *
 * @example
 * ```ts
 * // x: [B, T, C] -> [B, T, C], with the RoPE tables and mask saved for the recomputation
 * x = checkpointed(
 *   (h, c) => layer.forward(h, dims, c.rope, c.mask, i),
 *   x,
 *   { rope, mask },
 *   layer.trainableVariables(),
 * );
 * ```
 */
export function checkpointed<C>(
  block: (x: tf.Tensor3D, context: C) => tf.Tensor3D,
  x: tf.Tensor3D,
  context: C,
  params: readonly tf.Variable[],
): tf.Tensor3D {
  // No tape, no backward pass: nothing to save or recompute.
  if (!tf.engine().isTapeOn()) return block(x, context);
  const consts = contextTensors(context);
  const run = tf.customGrad(((...args: unknown[]) => {
    const save = args.at(-1) as tf.GradSaveFunc;
    // Clones sharing x's and the context's data, kept until the backward pass: no bytes are copied.
    save([x, ...consts]);
    return {
      // customGrad's forward runs with the tape off; the tidy frees the block's intermediates here rather than
      // when the caller's scope ends.
      value: tf.tidy(() => block(x, context)),
      gradFunc: (dy: tf.Tensor3D, saved: tf.Tensor[]) => {
        const [xSaved, ...constsSaved] = saved as [tf.Tensor3D, ...tf.Tensor[]];
        const contextSaved = withTensors(context, consts, constsSaved);
        return blockGradients(
          (h) => block(h, contextSaved),
          xSaved,
          params,
          dy,
        );
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return run(x, ...params) as tf.Tensor3D;
}

/**
 * One decoder block of a forward pass: checkpointed when `checkpoint` is on (training with
 * gradientCheckpointing), else in a scope of its own, so that only what the backward pass saved outlives it.
 *
 * @example
 * ```ts
 * x = runBlock(this.gradientCheckpointing && !cache, (h, c) => layer.forward(h, c.rope, c.mask), x,
 *   { rope, mask }, () => layer.trainableVariables());
 * ```
 */
export function runBlock<C>(
  checkpoint: boolean,
  block: (x: tf.Tensor3D, context: C) => tf.Tensor3D,
  x: tf.Tensor3D,
  context: C,
  params: () => tf.Variable[],
): tf.Tensor3D {
  return checkpoint
    ? checkpointed(block, x, context, params())
    : tf.tidy(() => block(x, context));
}

/**
 * Backward of a checkpointed block: recomputes y = block(x) under its own tape and returns [dx, ...dparams],
 * a zero gradient where the block does not depend on an input (customGrad needs one per input).
 */
function blockGradients(
  block: (x: tf.Tensor3D) => tf.Tensor3D,
  x: tf.Tensor3D,
  params: readonly tf.Variable[],
  dy: tf.Tensor3D,
): tf.Tensor[] {
  // Called from the outer backward pass: the recomputation records a tape of its own, freed as it goes, and
  // the outer pass gets its tape back afterwards (to free its saved tensors).
  const inputs = [x, ...params];
  const { value, grads } = gradientsFreeingAsTheyGo(() => block(x), inputs, dy);
  value.dispose();
  return grads.map((g, i) => g ?? tf.zerosLike(inputs[i]!));
}

/** Every tensor in `context` (plain objects and arrays are searched), in a fixed order. */
function contextTensors(context: unknown): tf.Tensor[] {
  if (context instanceof tf.Tensor) return [context];
  if (typeof context !== "object" || context === null) return [];
  const parts: unknown[] = Array.isArray(context)
    ? context
    : Object.values(context);
  return parts.flatMap(contextTensors);
}

/** `context` with each of `from` replaced by the tensor at the same index of `to`. */
function withTensors<C>(
  context: C,
  from: readonly tf.Tensor[],
  to: readonly tf.Tensor[],
): C {
  const swap = (c: unknown): unknown => {
    if (c instanceof tf.Tensor) return to[from.indexOf(c)]!;
    if (typeof c !== "object" || c === null) return c;
    if (Array.isArray(c)) return c.map(swap);
    return Object.fromEntries(Object.entries(c).map(([k, v]) => [k, swap(v)]));
  };
  return swap(context) as C;
}
