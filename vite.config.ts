/**
 * One Vite config: the demo app (root `demo/`), the worker bundles it imports, and the test projects.
 * Tests import packages by their public names; the aliases point those at the sources so no build is needed.
 */
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

export const aliases = {
  // Before "@webtune/core", which would take it for a path under index.ts. The job's types and JOB_DEFAULTS alone,
  // for the demo's main thread, which must not bundle the whole core (tfjs) to show a form's defaults.
  "@webtune/core/job": here("./packages/core/src/job/job.ts"),
  "@webtune/core": here("./packages/core/src/index.ts"),
  "@webtune/worker": here("./packages/worker/src/index.ts"),
};

export default defineConfig({
  root: here("./demo"),
  // The embedded demo model and datasets (demo/public/models, demo/public/data) are served as they are.
  publicDir: here("./demo/public"),
  resolve: { alias: aliases },
  worker: { format: "es" },
  build: {
    outDir: here("./dist/demo"),
    emptyOutDir: true,
    target: "es2022",
    // The worker bundles tfjs and the tokenizers (several MB); it loads once, off the main thread, so Vite's
    // 500 kB advice about splitting the page's code does not apply to it.
    chunkSizeWarningLimit: 8192,
    rolldownOptions: {
      // Rolldown's note on how long plugins ran (mostly the nested worker build): nothing to act on.
      checks: { bundlerTimings: false },
      onLog(level, log, handler) {
        // onnxruntime-web, which @xenova/transformers' tokenizers import (webtune runs no ONNX model), has a
        // direct `eval`. Only that package's EVAL is dropped, so one anywhere else still shows.
        const inOrt = /[\\/]node_modules[\\/]onnxruntime-web[\\/]/;
        if (log.code === "EVAL" && inOrt.test(log.id ?? "")) return;
        handler(level, log);
      },
    },
  },
  test: {
    root: here("."),
    reporters: ["default", here("./test/reporters/summary.ts")],
    // Dawn on lavapipe already uses every core; test files run one at a time.
    fileParallelism: false,
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          include: ["test/unit/**/*.test.ts"],
          pool: "forks",
          testTimeout: 180_000,
          hookTimeout: 180_000,
        },
      },
      {
        extends: true,
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          pool: "forks",
          testTimeout: 300_000,
          hookTimeout: 300_000,
        },
      },
    ],
  },
});
