/**
 * The kernel scenario alone (`lib/kernels.ts`): fused LoRA linear forward+backward against the same maths composed
 * from stock tfjs ops, in one process, on the same device and shapes. Prints a table; the last line is JSON:
 *   {"kernel_speedup_fwd_bwd": <geometric mean of naive_ms / fused_ms>, "device": "..."}
 * The GPU recipe (gpu/) bundles this file; `npm run bench -- --scenarios kernels` runs the same inside the full
 * benchmark.
 *
 * Usage: npm run bench:kernels [-- --reps 5 --variant shared|direct --tokens 1024]
 */
import { parseArgs } from "node:util";
import Table from "cli-table3";
import {
  disposeRuntime,
  initRuntime,
  setLoraKernelVariant,
  type KernelKind,
} from "@webtune/core";
import { benchKernelShape, kernelShapes } from "./lib/kernels.js";
import { geometricMean } from "./lib/stats.js";

const { values: args } = parseArgs({
  options: {
    reps: { type: "string", default: "3" },
    variant: { type: "string" },
    tokens: { type: "string", default: "1024" },
  },
});
const reps = Number(args.reps);
const tokens = Number(args.tokens);
if (!Number.isInteger(reps) || reps < 1)
  throw new Error(`--reps must be a positive integer, got ${args.reps}`);
if (!Number.isInteger(tokens) || tokens < 1)
  throw new Error(`--tokens must be a positive integer, got ${args.tokens}`);
if (
  args.variant !== undefined &&
  args.variant !== "shared" &&
  args.variant !== "direct"
) {
  throw new Error(
    `--variant must be 'shared' or 'direct', got ${args.variant}`,
  );
}
setLoraKernelVariant(args.variant as KernelKind | undefined);

const info = await initRuntime();
const device = `${info.vendor} ${info.architecture} ${info.description}`.trim();
const table = new Table({
  head: [
    "shape",
    "T×in→out, r",
    "naive ms",
    "fused ms",
    "speedup",
    "fused GFLOP/s",
  ],
});
const ratios: number[] = [];
for (const shape of kernelShapes(tokens)) {
  const r = await benchKernelShape(shape, reps);
  ratios.push(r.speedup);
  table.push([
    shape.name,
    `${shape.T}×${shape.IN}→${shape.OUT}, ${shape.R}`,
    r.naive_ms.toFixed(1),
    r.fused_ms.toFixed(1),
    `${r.speedup.toFixed(2)}×`,
    r.fused_gflops.toFixed(2),
  ]);
}
console.log(
  `device: ${device}; kernel variant: ${args.variant ?? "auto"}; median of ${reps} runs after a warm-up`,
);
console.log(table.toString());
console.log(
  JSON.stringify({
    kernel_speedup_fwd_bwd: Number(geometricMean(ratios).toFixed(3)),
    device,
  }),
);
disposeRuntime();
process.exit(0);
