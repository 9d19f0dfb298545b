/**
 * A classification head on the page: a job whose model answers with a label per text (a sequence-classification
 * head) or a tag per word (a token-classification head) instead of text. The before/after panel asks the head
 * (the worker's predict), not the language model, and says so; the few-shot baseline, a prompt for text, is off.
 * Tagged words, a head's answer or a data row, are shown with their entities marked.
 */
import type { HeadPrediction, LoraConfig } from "@webtune/core";
import { byId } from "./dom.js";
import type { Task } from "./settings.js";

type Head = Exclude<Task, "causal-lm">;

/** How each head answers, what the panel does with the prompt, and where the test rows score it. */
const HEADS: Record<
  Head,
  { answers: string; panel: string; scored: string; button: string }
> = {
  "seq-cls": {
    answers:
      "a label for each text (a sequence-classification head), not with text",
    panel: "classify the prompt",
    scored: "the metrics table and the confusion matrix",
    button: "Classify with both",
  },
  "token-cls": {
    answers: "a tag for each word (a token-classification head), not with text",
    panel: "tag the prompt's words",
    scored: "the entity table",
    button: "Tag with both",
  },
};

export const FEW_SHOT_NOTE =
  "No few-shot or retrieval baseline for a classification head: it answers with labels, not text, so a prompt of examples is no baseline for it.";

/** What answers for each task, in the page's words. */
export const TASK_NAMES: Record<Task, string> = {
  "causal-lm": "the language model",
  "seq-cls": "a sequence-classification head",
  "token-cls": "a token-classification head",
};

/** What a job's adapter in the page's words, for the job line (nothing for a language model). */
export const HEAD_WORDS: Record<Task, string> = {
  "causal-lm": "",
  "seq-cls": ` with ${TASK_NAMES["seq-cls"]}`,
  "token-cls": ` with ${TASK_NAMES["token-cls"]}`,
};

/** The task of a loaded adapter, from PEFT's task_type. */
export function taskOfAdapter(config: Pick<LoraConfig, "task_type">): Task {
  if (config.task_type === "SEQ_CLS") return "seq-cls";
  if (config.task_type === "TOKEN_CLS") return "token-cls";
  return "causal-lm";
}

/**
 * Sets the before/after panel and the few-shot button for what the model answers with: `task`, from the adapter
 * in the worker when `trained`, else from the form (a head the next job trains, which cannot answer yet).
 */
export function showHeadNotes(task: Task, trained: boolean): void {
  const head = task === "causal-lm" ? undefined : HEADS[task];
  const note = byId("compare-note");
  note.hidden = !head;
  note.textContent = !head
    ? ""
    : trained
      ? `This adapter answers with ${head.answers}: both sides ${head.panel} with its head, the base model through the same head on its own weights. Its scores on the test rows are in ${head.scored} under 7 · Test metrics.`
      : `The job in the form trains a head that answers with ${head.answers}: once trained, this panel will ${head.panel} with it, and its scores on the test rows will be in ${head.scored} under 7 · Test metrics.`;
  byId("compare-sides").hidden = head !== undefined && !trained;
  byId("compare").textContent = head?.button ?? "Generate with both";
  // The button's tooltip, and a line under it (a disabled button's tooltip is easily missed).
  const why = head ? FEW_SHOT_NOTE : "";
  byId("few-shot").title = why;
  const fewShotNote = byId("few-shot-note");
  fewShotNote.hidden = !head;
  fewShotNote.textContent = why;
}

/**
 * A head's answer as the panel shows it: the words with their entities marked and the entities listed, or each
 * label with its probability, most likely first.
 */
export function describePrediction(p: HeadPrediction): string {
  if (p.task === "seq-cls")
    return (p.scores ?? [])
      .map((s) => `${s.label} ${(100 * s.score).toFixed(1)} %`)
      .join("\n");
  const entities = (p.entities ?? []).map((e) => `${e.type} ${e.text}`);
  return `${markEntities(p.words ?? [], p.tags ?? [])}\nentities: ${entities.length > 0 ? entities.join(" · ") : "none"}`;
}

/** A sentence with its entities marked, e.g. "So [Absalom]PER fled , and went to [Geshur]LOC". */
export function markEntities(
  words: readonly string[],
  tags: readonly string[],
): string {
  const out: string[] = [];
  let open: string | undefined;
  words.forEach((word, i) => {
    const tag = tags[i] ?? "O";
    const type = tag === "O" ? undefined : tag.slice(2);
    const continues = tag.startsWith("I-") && type === open;
    if (open && !continues) out[out.length - 1] += `]${open}`;
    if (type && !continues) out.push(`[${word}`);
    else out.push(word);
    open = type;
  });
  if (open) out[out.length - 1] += `]${open}`;
  return out.join(" ");
}
