/** The device panel: the WebGPU adapter the worker got, and the kernel check against the CPU reference. */
import type { GpuInfo, LoraCheckResult } from "@webtune/core";
import type { WorkerTrainer } from "@webtune/worker";
import { byId, fillList, formatBytes, tableRow } from "./dom.js";

/** The relative error webtune's tests allow in f32. */
const TOLERANCE = 1e-4;

/** What the page publishes for end-to-end tests. */
export interface KernelCheckReport {
  info: GpuInfo;
  results: LoraCheckResult[];
}

declare global {
  interface Window {
    webtuneCheck?: KernelCheckReport | { error: string };
  }
}

export function showDevice(info: GpuInfo): void {
  const limit = (name: string) => formatBytes(info.limits[name] ?? 0);
  fillList(byId("device"), [
    ["backend", info.backend],
    [
      "adapter",
      [info.vendor, info.architecture, info.description]
        .filter(Boolean)
        .join(" / ") || "unnamed",
    ],
    [
      "software",
      info.software
        ? "yes: shaders run on the CPU, so training is slow"
        : "no (a hardware GPU)",
    ],
    ["features", info.features.join(", ") || "none"],
    ["max buffer binding", limit("maxStorageBufferBindingSize")],
    ["max buffer", limit("maxBufferSize")],
  ]);
}

const caseLabel = ({ case: c }: LoraCheckResult) =>
  `T${c.T} ${c.IN}→${c.OUT} r${c.R} ${c.weightLayout}${c.bias ? " +b" : ""}${c.dropout ? ` p${c.dropout}` : ""}`;

/** Runs the kernel check in the worker and fills the table with each case's errors and verdict. */
export async function checkKernels(trainer: WorkerTrainer): Promise<void> {
  try {
    const info = await trainer.api.gpuInfo();
    const results = await trainer.api.verifyKernels();
    const body = byId("check").querySelector("tbody")!;
    body.replaceChildren(
      ...results.map((r) => {
        const errors = [r.errors.y, r.errors.dx, r.errors.dA, r.errors.dB];
        const pass = errors.every((e) => e <= TOLERANCE);
        const tr = tableRow([
          caseLabel(r),
          // One significant digit is enough against the tolerance, and keeps the table inside the card.
          ...errors.map((e) => e.toExponential(0)),
          pass ? "pass" : "FAIL",
        ]);
        tr.lastElementChild!.className = pass ? "pass" : "fail";
        return tr;
      }),
    );
    byId("check").hidden = false;
    window.webtuneCheck = { info, results };
  } catch (error) {
    window.webtuneCheck = { error: String(error) };
    throw error;
  }
}
