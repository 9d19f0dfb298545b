/**
 * A classification head on the page: a job whose model answers with labels (a sequence-classification head) or a
 * tag per word (a token-classification head) instead of text. Its answers are read in the test metrics, so the
 * before/after panel and the few-shot baseline, which prompt for text, say so instead of running.
 */
import type { LoraConfig } from "@webtune/core";
import { byId } from "./dom.js";
import type { Task } from "./settings.js";

/** How each head answers, and where the page scores its answers. */
const ANSWERS: Record<Exclude<Task, "causal-lm">, string> = {
  "seq-cls":
    "a label for each text (a sequence-classification head), not with text: its answers are scored in the accuracy and the confusion matrix under 7 · Test metrics.",
  "token-cls":
    "a tag for each word (a token-classification head), not with text: its answers are scored in the entity table under 7 · Test metrics.",
};

const FEW_SHOT_NOTE =
  "No few-shot baseline for a classification head: it answers with labels, not text, so a prompt of examples is no baseline for it.";

/** What a job's adapter in the page's words, for the job line (nothing for a language model). */
export const HEAD_WORDS: Record<Task, string> = {
  "causal-lm": "",
  "seq-cls": " with a sequence-classification head",
  "token-cls": " with a token-classification head",
};

/** The task of a loaded adapter, from PEFT's task_type. */
export function taskOfAdapter(config: Pick<LoraConfig, "task_type">): Task {
  if (config.task_type === "SEQ_CLS") return "seq-cls";
  if (config.task_type === "TOKEN_CLS") return "token-cls";
  return "causal-lm";
}

/**
 * Shows or hides the notes of a head: in the before/after panel (whose answers are hidden, not generated) and on
 * the few-shot button.
 */
export function showHeadNotes(task: Task): void {
  const head = task !== "causal-lm";
  const note = byId("compare-note");
  note.hidden = !head;
  note.textContent = head ? `This model answers with ${ANSWERS[task]}` : "";
  byId("compare-sides").hidden = head;
  // The button's tooltip, and a line under it (a disabled button's tooltip is easily missed).
  const why = head ? FEW_SHOT_NOTE : "";
  byId("few-shot").title = why;
  const fewShotNote = byId("few-shot-note");
  fewShotNote.hidden = !head;
  fewShotNote.textContent = why;
}
