/**
 * `webtune generate`: stream a continuation of --prompt (or of --input in the adapter's prompt template) to stdout.
 * An adapter with a classification head answers instead: each label's probability (SEQ_CLS), or the prompt's
 * words with their tags and the entities they spell (TOKEN_CLS), then the same as one JSON line.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  applyPromptTemplate,
  ConfigError,
  fitsPromptTemplate,
  predictWithHead,
  type HeadPrediction,
} from "@webtune/core";
import { loadForCommand } from "./common.js";
import { JOB_FILE } from "./train.js";

/** The prompt template saved with an adapter by `webtune train` (in its job file), if any. */
async function adapterTemplate(adapter?: string): Promise<string | null> {
  if (!adapter) return null;
  const text = await readFile(join(adapter, JOB_FILE), "utf8").catch(
    () => undefined,
  );
  if (text === undefined) return null;
  try {
    const job = JSON.parse(text) as { data?: { promptTemplate?: unknown } };
    const template = job.data?.promptTemplate;
    return typeof template === "string" ? template : null;
  } catch {
    return null;
  }
}

/** The text to continue: --prompt as given, or --input put into the adapter's template. */
function promptOf(
  o: { prompt?: string; input?: string; adapter?: string },
  template: string | null,
): string {
  if ((o.prompt === undefined) === (o.input === undefined))
    throw new ConfigError(
      "give --prompt (the text to continue) or --input (put into the adapter's prompt template), one of them.",
    );
  if (o.input !== undefined) {
    if (!template)
      throw new ConfigError(
        `--input needs a prompt template, and ${o.adapter ? `--adapter ${o.adapter} has none (no ${JOB_FILE} with one: it was not trained on instruction data by webtune train)` : "no --adapter was given"}; use --prompt with the whole prompt.`,
      );
    return applyPromptTemplate(template, o.input);
  }
  if (template && !fitsPromptTemplate(template, o.prompt!)) {
    const head = template.slice(0, template.indexOf("{input}"));
    const input = o.prompt!.startsWith(head)
      ? o.prompt!.slice(head.length)
      : o.prompt!;
    process.stderr.write(
      `note: this adapter was trained on prompts shaped ${JSON.stringify(template)}; --input fills that in ` +
        `(here --input ${JSON.stringify(input)}); --prompt is used exactly as given.\n`,
    );
  }
  return o.prompt!;
}

export async function generateCommand(o: {
  model: string;
  adapter?: string;
  prompt?: string;
  input?: string;
  maxNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
}): Promise<void> {
  const prompt = promptOf(o, await adapterTemplate(o.adapter));
  const { model, peft } = await loadForCommand(o.model, o.adapter);
  // The adapter's head, or the head a merged classification model was saved with.
  const head = model.lm.taskHead;
  if (head) {
    const p = await predictWithHead(peft, model.tokenizer!, head, prompt);
    process.stdout.write(`${describePrediction(p)}\n${JSON.stringify(p)}\n`);
    peft.dispose();
    model.dispose();
    return;
  }
  let printed = "";
  const result = await peft.generate(prompt, {
    maxNewTokens: o.maxNewTokens,
    temperature: o.temperature,
    topK: o.topK,
    topP: o.topP,
    seed: o.seed,
    onToken: ({ text }) => {
      // Decoding the whole continuation each time keeps multi-byte characters whole; print what is new.
      if (text.startsWith(printed))
        process.stdout.write(text.slice(printed.length));
      printed = text;
    },
  });
  process.stdout.write(`\n`);
  process.stderr.write(
    `[${result.ids.length} tokens, stopped by ${result.stopReason}]\n`,
  );
  peft.dispose();
  model.dispose();
}

/** A head's answer for the terminal: labels by probability, or tagged words and their entities. */
function describePrediction(p: HeadPrediction): string {
  if (p.scores)
    return p.scores
      .map((s) => `${s.label.padEnd(16)} ${s.score.toFixed(4)}`)
      .join("\n");
  const tagged = p
    .words!.map((w, i) => (p.tags![i] === "O" ? w : `${w}/${p.tags![i]}`))
    .join(" ");
  const entities = p.entities!.map((e) => `${e.type}: ${e.text}`).join("; ");
  return `${tagged}\nentities: ${entities || "none"}`;
}
