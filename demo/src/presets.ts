/**
 * The datasets that ship with the demo (demo/public/data, see its README.md), each a partial FineTuneJob: its data
 * files, the settings that train the embedded default model well on it (those of the CLI's `npm run task:*`), and
 * a prompt to compare the models on. Choosing a preset chooses all three at once.
 */
import type { FineTuneJobInput } from "@webtune/core";

export interface Preset {
  name: string;
  /** The data files (demo-relative URLs, which name them in the job too) and settings. */
  job: FineTuneJobInput & { data: { train: string; test: string } };
  /** A prompt the before/after panel asks; by default the first test row's. */
  prompt?: string;
}

/** What all three tasks share: the embedded model takes a high rate, and every step is scored in seconds. */
const shared = {
  adapter: { r: 16, alpha: 32, dropout: 0 },
  // Forgetting is checked on the held-out general text (demo/public/data/reference.jsonl).
  evaluation: {
    valRows: 64,
    testRows: 100,
    scoreBase: true,
    reference: "data/reference.jsonl",
  },
  checkpointEvery: 25,
} satisfies FineTuneJobInput;

export const PRESETS: Record<string, Preset> = {
  dates: {
    name: "dates",
    job: {
      ...shared,
      data: {
        train: "data/dates/train.jsonl",
        test: "data/dates/test.jsonl",
        maxLength: 128,
      },
      training: {
        learningRate: 3e-3,
        batchSize: 16,
        maxSteps: 200,
        epochs: 1,
        warmupSteps: 20,
      },
      evaluation: { ...shared.evaluation, evalEvery: 50 },
    },
  },
  fortunes: {
    name: "fortunes",
    job: {
      ...shared,
      data: {
        train: "data/fortunes/train.jsonl",
        test: "data/fortunes/test.jsonl",
        maxLength: 128,
      },
      training: {
        learningRate: 3e-3,
        batchSize: 16,
        maxSteps: null,
        epochs: 4,
        warmupSteps: 5,
      },
      evaluation: { ...shared.evaluation, evalEvery: 20 },
    },
  },
  kjv: {
    name: "kjv",
    job: {
      ...shared,
      data: {
        train: "data/kjv/train.jsonl",
        test: "data/kjv/test.jsonl",
        maxLength: 256,
      },
      training: {
        learningRate: 3e-3,
        batchSize: 16,
        maxSteps: 24,
        epochs: 1,
        warmupSteps: 3,
      },
      evaluation: { ...shared.evaluation, evalEvery: 8 },
    },
    prompt: "And he said unto them,",
  },
  ner: {
    name: "ner",
    job: {
      ...shared,
      data: {
        train: "data/ner/train.jsonl",
        test: "data/ner/test.jsonl",
        maxLength: 96,
      },
      // A token-classification head (PER, LOC tags per word) trained in full beside the adapter.
      adapter: { ...shared.adapter, task: "token-cls" },
      training: {
        learningRate: 3e-3,
        batchSize: 16,
        maxSteps: null,
        epochs: 2,
        warmupSteps: 10,
      },
      evaluation: { ...shared.evaluation, evalEvery: 40 },
    },
    prompt:
      "And Moses went up from the plains of Moab unto the mountain of Nebo.",
  },
};

/** The preset whose data files a job names, if any (a downloaded preset job, loaded again). */
export function presetOf(job: FineTuneJobInput): Preset | undefined {
  return Object.values(PRESETS).find(
    (p) => p.job.data.train === job.data?.train,
  );
}

/** Fetches a preset's file from the demo's own folder. */
export async function fetchPresetFile(path: string): Promise<string> {
  const url = new URL(path, document.baseURI);
  const response = await fetch(url);
  if (!response.ok)
    throw new Error(
      `${url.href}: HTTP ${response.status} ${response.statusText}`,
    );
  return response.text();
}
