/** The check page: starts the worker, shows the device and the kernel errors, and publishes the report for tests. */
import type { GpuInfo, LoraCheckResult } from "@webtune/core";
import { createTrainer } from "@webtune/worker";

/** What the page publishes for end-to-end tests. */
export interface KernelCheckReport {
  info: GpuInfo;
  results: LoraCheckResult[];
}

const TOLERANCE = 1e-4;

declare global {
  interface Window {
    webtuneCheck?: KernelCheckReport | { error: string };
  }
}

function row(cells: string[], verdict?: boolean): HTMLTableRowElement {
  const tr = document.createElement("tr");
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.append(td);
  }
  if (verdict !== undefined) {
    const td = document.createElement("td");
    td.textContent = verdict ? "pass" : "FAIL";
    td.className = verdict ? "pass" : "fail";
    tr.append(td);
  }
  return tr;
}

function showDevice(entries: [string, string][]): void {
  const dl = document.querySelector("#device")!;
  dl.replaceChildren();
  for (const [k, v] of entries) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    dl.append(dt, dd);
  }
}

async function main(): Promise<void> {
  const trainer = createTrainer();
  try {
    const info = await trainer.api.init();
    const results = await trainer.api.verifyKernels();
    showDevice([
      ["backend", info.backend],
      [
        "adapter",
        [info.vendor, info.architecture, info.description]
          .filter(Boolean)
          .join(" / "),
      ],
      ["software", info.software ? "yes (shaders run on the CPU)" : "no"],
      ["features", info.features.join(", ") || "none"],
      [
        "max binding",
        `${((info.limits["maxStorageBufferBindingSize"] ?? 0) / 2 ** 20).toFixed(0)} MiB`,
      ],
    ]);
    const body = document.querySelector("#check tbody")!;
    for (const r of results) {
      const c = r.case;
      const errs = [r.errors.y, r.errors.dx, r.errors.dA, r.errors.dB];
      const label = `T${c.T} ${c.IN}→${c.OUT} r${c.R} ${c.weightLayout}${c.bias ? " +b" : ""}${c.dropout ? ` p${c.dropout}` : ""}`;
      body.append(
        row(
          [label, ...errs.map((e) => e.toExponential(1))],
          errs.every((e) => e <= TOLERANCE),
        ),
      );
    }
    window.webtuneCheck = { info, results };
  } catch (error) {
    showDevice([["error", String(error)]]);
    window.webtuneCheck = { error: String(error) };
  } finally {
    await trainer.terminate();
  }
}

void main();
