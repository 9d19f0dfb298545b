/**
 * Which run a checkpoint belongs to. A checkpoint restores weights, moments and a step; resuming it into a run with
 * another adapter shape, other data or other hyperparameters would mix two runs silently (or fail deep inside
 * tfjs). So every checkpoint stores the identity of its run, and a resume compares it field by field before it
 * changes anything, naming the first field that differs.
 */
import { ConfigError, FormatError } from "../errors.js";
import type { NamedVariable } from "./trainable.js";
import type { BatchSequence } from "./train_batch.js";

/** Field → value; the Trainer fills its own fields, and a caller adds what only it knows (model, LoRA config). */
export type RunIdentity = Record<string, string | number | boolean | null>;

/** FNV-1a over 32-bit words, as eight hex digits. */
class Fnv {
  private h = 0x811c9dc5;
  word(v: number): void {
    this.h = Math.imul(this.h ^ (v >>> 0), 0x01000193) >>> 0;
  }
  text(s: string): void {
    for (let i = 0; i < s.length; i++) this.word(s.charCodeAt(i));
  }
  get hex(): string {
    return this.h.toString(16).padStart(8, "0");
  }
}

/** The trainable tensors: how many, and a digest of their keys and shapes (another rank or target differs). */
export function trainableIdentity(vars: NamedVariable[]): string {
  const h = new Fnv();
  for (const { key, variable } of vars)
    h.text(`${key}:${variable.shape.join("x")};`);
  return `${vars.length} tensors, ${h.hex}`;
}

/**
 * The training batches: how many, and a digest of one epoch's ids and labels in order (each epoch of a lazy
 * sequence is a reshuffle of the same rows, fixed by its seed, which the identity holds too).
 */
export function dataIdentity(train: BatchSequence): string {
  const h = new Fnv();
  const scan = Math.min(train.epochLength ?? train.length, train.length);
  for (let i = 0; i < scan; i++) {
    const b = train.at(i)!;
    for (const rows of [b.inputIds, b.labels])
      for (const row of rows) {
        h.word(row.length);
        for (const v of row) h.word(v);
      }
  }
  return `${train.length} batches, ${h.hex}`;
}

/** What a field stands for, where its name alone would not say. */
const MEANING: Record<string, string> = {
  trainable:
    "the tensors trained: the adapter's rank and target modules, or the model",
  data: "a digest of the training batches, in order",
  steps: "the run's length, which shapes the learning-rate schedule",
};

/**
 * Refuses to resume a checkpoint made by another run: every field both identities hold must be equal. A checkpoint
 * written before identities were stored (none) is taken as it is.
 */
export function checkRunIdentity(
  saved: RunIdentity | undefined,
  current: RunIdentity,
  source: string,
): void {
  if (!saved) return;
  for (const [field, value] of Object.entries(current)) {
    if (!Object.hasOwn(saved, field)) continue;
    const was = saved[field];
    if (was !== value)
      throw new ConfigError(
        `${source} was saved by another run: its ${field}${Object.hasOwn(MEANING, field) ? ` (${MEANING[field]})` : ""} ` +
          `is ${JSON.stringify(was)}, this run's is ` +
          `${JSON.stringify(value)}. Resume with the same settings, or start a new run in another folder.`,
      );
  }
}

/** Reads a stored identity, refusing anything but a flat object of plain values. */
export function parseRunIdentity(
  value: unknown,
  source: string,
): RunIdentity | undefined {
  if (value === undefined) return undefined;
  const plain = (v: unknown) =>
    v === null || ["string", "number", "boolean"].includes(typeof v);
  if (
    typeof value !== "object" ||
    value === null ||
    Array.isArray(value) ||
    !Object.values(value).every(plain)
  )
    throw new FormatError(
      `${source}: "run" in trainer_state.json must be an object of plain values; the checkpoint is damaged.`,
    );
  return value as RunIdentity;
}
