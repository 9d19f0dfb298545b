/** Runs webtune's kernel self-test on this browser's WebGPU, inside a dedicated worker. */
import * as Comlink from "comlink";
import { initRuntime, verifyLoraKernels } from "@webtune/core";
import type { KernelCheckApi } from "./check_api.js";

const api: KernelCheckApi = {
  async run() {
    const info = await initRuntime();
    const results = await verifyLoraKernels();
    const inWorker =
      typeof (globalThis as { WorkerGlobalScope?: unknown })
        .WorkerGlobalScope !== "undefined";
    return { info, results, inWorker };
  },
};

Comlink.expose(api);
