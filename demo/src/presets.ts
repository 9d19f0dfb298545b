/**
 * The datasets that ship with the demo (demo/public/data, see its README.md), each with the settings that
 * train the embedded default model well on it: the same as the CLI's `npm run task:*` scripts.
 */
export interface Preset {
  name: string;
  train: string;
  test: string;
  settings: Record<string, string | number>;
}

const shared = { r: 16, alpha: 32, dropout: 0, lr: 0.003, batch: 16 };

export const PRESETS: Record<string, Preset> = {
  dates: {
    name: "dates",
    train: "data/dates/train.jsonl",
    test: "data/dates/test.jsonl",
    settings: {
      ...shared,
      maxSteps: 200,
      epochs: 1,
      warmup: 20,
      evalEvery: 50,
    },
  },
  fortunes: {
    name: "fortunes",
    train: "data/fortunes/train.jsonl",
    test: "data/fortunes/test.jsonl",
    settings: { ...shared, maxSteps: 0, epochs: 4, warmup: 5, evalEvery: 20 },
  },
  kjv: {
    name: "kjv",
    train: "data/kjv/train.jsonl",
    test: "data/kjv/test.jsonl",
    settings: { ...shared, maxSteps: 24, epochs: 1, warmup: 3, evalEvery: 8 },
  },
};

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
