/** The main thread's side: start the worker and get a typed proxy of its API. */
import * as Comlink from "comlink";
import type { TrainerApi } from "./api.js";

export interface WorkerTrainer {
  /** Every TrainerApi method, called in the worker; errors arrive as rejected promises. */
  api: Comlink.Remote<TrainerApi>;
  /** Releases the GPU device in the worker, then ends the worker. */
  terminate(): Promise<void>;
}

/**
 * Starts webtune in a dedicated module worker.
 *
 * @example
 * ```ts
 * import { createTrainer } from "@webtune/worker";
 * const trainer = createTrainer();
 * const info = await trainer.api.init();
 * console.log(info.description);
 * await trainer.terminate();
 * ```
 */
export function createTrainer(
  worker: Worker = new Worker(new URL("./worker.js", import.meta.url), {
    type: "module",
  }),
): WorkerTrainer {
  const api = Comlink.wrap<TrainerApi>(worker);
  return {
    api,
    async terminate() {
      try {
        await api.dispose();
      } finally {
        api[Comlink.releaseProxy]();
        worker.terminate();
      }
    },
  };
}
