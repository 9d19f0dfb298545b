/** Small in-memory datasets and a job run over them, as the job and worker tests use them. */
import {
  FineTuneJob,
  type FineTuneJobInput,
  type JobEvent,
} from "@webtune/core";

export const jsonl = (rows: object[]) =>
  rows.map((r) => JSON.stringify(r)).join("\n");

export const ANIMALS = [
  "cat",
  "dog",
  "bird",
  "fox",
  "cow",
  "pig",
  "owl",
  "hen",
];

/** 24 classification rows (beast or bird) and two test rows. */
export const KINDS_FILES = {
  "kinds.jsonl": jsonl(
    ANIMALS.flatMap((a, i) =>
      ["sat", "ran", "slept"].map((v) => ({
        text: `the ${a} ${v}.`,
        label: i % 2 ? "bird" : "beast",
      })),
    ),
  ),
  "kinds_test.jsonl": jsonl([
    { text: "the cat sat.", label: "beast" },
    { text: "the owl ran.", label: "bird" },
  ]),
};

/** 16 classification rows, calm or busy, and two test rows. */
export const PETS_FILES = {
  "pets.jsonl": jsonl(
    ANIMALS.flatMap((a, i) =>
      ["mat", "rug"].map((p) => ({
        text: `the ${a} sat on the ${p}`,
        label: i % 2 === 0 ? "calm" : "busy",
      })),
    ),
  ),
  "pets_test.jsonl": jsonl([
    { text: "the rat sat on the bed", label: "calm" },
    { text: "the ant sat on the box", label: "busy" },
  ]),
};

/**
 * Runs `input` on `model` (a folder) with its files from `files` (a missing one rejects naming its field), at a
 * high rate on small batches, and keeps every event.
 */
export async function runOnFiles(
  files: Record<string, string>,
  model: string,
  input: FineTuneJobInput,
) {
  const events: JobEvent[] = [];
  const job = FineTuneJob.from({
    ...input,
    model: { source: model },
    training: {
      learningRate: 1e-2,
      batchSize: 4,
      seed: 2,
      ...input.training,
    },
    evaluation: { evalEvery: 3, ...input.evaluation },
  });
  const result = await job.run({
    readFile: async (source, field) => {
      const text = files[source];
      if (text === undefined) throw new Error(`${field}: no file ${source}`);
      return text;
    },
    onEvent: (e) => events.push(e),
  });
  return { result, events };
}
