/**
 * `npm run task:<dates|fortunes|kjv>`: a demo preset's job (demo/src/presets.ts, the one recipe the page uses too),
 * run by the webtune CLI on Dawn. The CLI scores every test row and checks forgetting on reference.jsonl; more
 * flags after the name override the job (`npm run task:dates -- --max-steps 50`).
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { PRESETS } from "../demo/src/presets.js";

const [name, ...flags] = process.argv.slice(2);
const preset = PRESETS[name ?? ""];
if (!preset) {
  console.error(
    `task: name one of ${Object.keys(PRESETS).join(", ")}, got "${name ?? ""}".`,
  );
  process.exit(2);
}
// The page's files are under demo/public; the CLI reads them from there.
const served = (path: string) => `demo/public/${path}`;
const job = {
  ...preset.job,
  data: {
    ...preset.job.data,
    train: served(preset.job.data.train),
    test: served(preset.job.data.test),
  },
  ...(preset.job.replay?.source
    ? {
        replay: {
          ...preset.job.replay,
          source: served(preset.job.replay.source),
        },
      }
    : {}),
  evaluation: {
    ...preset.job.evaluation,
    testRows: null,
    reference: served("data/reference.jsonl"),
  },
  checkpointEvery: null,
};
mkdirSync("runs", { recursive: true });
const jobFile = `runs/${preset.name}.job.json`;
writeFileSync(jobFile, `${JSON.stringify(job, null, 2)}\n`);
const run = spawnSync(
  process.execPath,
  [
    "packages/cli/bin/webtune.js",
    "train",
    "--job",
    jobFile,
    "--out",
    `runs/${preset.name}`,
    "--overwrite",
    ...flags,
  ],
  { stdio: "inherit" },
);
process.exit(run.status ?? 1);
