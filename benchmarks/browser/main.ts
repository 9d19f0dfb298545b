/**
 * The benchmark page: the same scenarios as under Node, on the browser's WebGPU. `npm run bench -- --browser`
 * serves it and calls `window.webtuneBench(options)`; the embedded model comes from the demo's public folder,
 * fetched into Blobs first so that loading measures parsing, not the network.
 */
import { initRuntime } from "@webtune/core";
import {
  runBenchmarks,
  type BenchSize,
  type RuntimeRun,
  type Scenario,
} from "../lib/run.js";

const MODEL = "models/webtune-demo-base";
const FILES = [
  "config.json",
  "generation_config.json",
  "model.safetensors",
  "tokenizer.json",
  "tokenizer_config.json",
];

const logBox = document.getElementById("log")!;
function log(line: string): void {
  logBox.textContent += `${line}\n`;
  console.log(line);
}

async function modelFiles(): Promise<File[]> {
  return Promise.all(
    FILES.map(async (name) => {
      const response = await fetch(`${MODEL}/${name}`);
      if (!response.ok)
        throw new Error(`${MODEL}/${name}: HTTP ${response.status}`);
      return new File([await response.blob()], name);
    }),
  );
}

async function webtuneBench(options: {
  scenarios: Scenario[];
  size: BenchSize;
  profile: boolean;
}): Promise<RuntimeRun> {
  await initRuntime();
  const files = await modelFiles();
  const weights = files.find((f) => f.name === "model.safetensors")!;
  return runBenchmarks(
    {
      runtime: "browser",
      embeddedModel: files,
      openEmbeddedWeights: async () => weights,
      readEmbeddedWeightsRaw: async () =>
        (await weights.arrayBuffer()).byteLength,
      log,
    },
    options,
  );
}

Object.assign(window, { webtuneBench });
