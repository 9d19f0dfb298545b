/** A bare page for end-to-end tests: one webtune worker, driven from Playwright through `window.trainer`. */
import { proxy } from "comlink";
import { createTrainer, type WorkerTrainer } from "@webtune/worker";

declare global {
  interface Window {
    trainer: WorkerTrainer;
    /** Comlink.proxy, for callbacks passed to the worker from page.evaluate. */
    comlinkProxy: typeof proxy;
  }
}

window.trainer = createTrainer();
window.comlinkProxy = proxy;
