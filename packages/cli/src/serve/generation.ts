/**
 * One generation on the served model: choose the request's adapter (or none), run core's generate, and stop
 * before its next step once the request's signal is aborted (its client left, or the server is closing). Runs inside
 * the GenerationQueue, so it owns the model while it runs.
 */
import type { LoraModel } from "@webtune/core";
import type { FinishReason } from "./responses.js";
import type { RequestTrace } from "./trace.js";

export interface GenerationJob {
  /** The adapter to apply, or undefined for the base model alone. */
  adapter: string | undefined;
  promptIds: number[];
  maxTokens: number;
  temperature: number;
  topP: number;
  seed: number;
  stop: string[];
  /** Aborted when the answer is no longer wanted; its reason is what the generation throws. */
  signal: AbortSignal;
  /** After each token: the continuation decoded so far, cut before any stop string. */
  onText?: (text: string) => void;
}

export interface GenerationOutcome {
  text: string;
  completionTokens: number;
  finishReason: FinishReason;
}

/** Runs a job, noting its times and token count on `trace` as it goes (they stay there if it is stopped). */
export async function runGeneration(
  peft: LoraModel,
  job: GenerationJob,
  trace: RequestTrace,
): Promise<GenerationOutcome> {
  // A request whose client left while it waited is dropped before it costs any GPU time.
  job.signal.throwIfAborted();
  trace.generationStartedAt = performance.now();
  trace.completionTokens = 0;
  const result = await withAdapter(peft, job.adapter, () =>
    peft.generate(job.promptIds, {
      maxNewTokens: job.maxTokens,
      temperature: job.temperature,
      topP: job.topP,
      seed: job.seed,
      stop: job.stop,
      signal: job.signal,
      onToken: ({ text }) => {
        const now = performance.now();
        trace.firstTokenAt ??= now;
        trace.lastTokenAt = now;
        trace.completionTokens = (trace.completionTokens ?? 0) + 1;
        // A client that left gets no more text; generate stops before its next step.
        if (!job.signal.aborted) job.onText?.(text);
      },
    }),
  );
  // An EOS token ends generation without an onToken call: the last token time is now.
  trace.lastTokenAt = performance.now();
  trace.firstTokenAt ??= trace.lastTokenAt;
  trace.completionTokens = result.ids.length;
  const finishReason = result.stopReason === "length" ? "length" : "stop";
  trace.finishReason = finishReason;
  return {
    text: result.text,
    completionTokens: result.ids.length,
    finishReason,
  };
}

/** Runs `fn` with one adapter active (or all disabled), then puts the LoraModel's choice back as it was. */
async function withAdapter<T>(
  peft: LoraModel,
  adapter: string | undefined,
  fn: () => Promise<T>,
): Promise<T> {
  if (adapter === undefined) return peft.withAdaptersDisabled(fn);
  const before = peft.activeAdapter;
  const wasDisabled = peft.state.disabled;
  peft.setAdapter(adapter);
  peft.enableAdapters();
  try {
    return await fn();
  } finally {
    if (before !== undefined) peft.setAdapter(before);
    if (wasDisabled) peft.disableAdapters();
  }
}
