/**
 * A machine with no WebGPU adapter, made real by pointing the Vulkan loader at no driver in a child process:
 * the runtime raises DeviceError with instructions, or starts the CPU fallback when asked to.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const root = fileURLToPath(new URL("../../..", import.meta.url));

/** Runs `initRuntime(options)` in a fresh Node process with no Vulkan driver, printing the outcome as JSON. */
async function initWithoutDriver(
  options: string,
): Promise<{ ok: boolean; backend?: string; name?: string; message?: string }> {
  const script = `
    import { initRuntime } from "./packages/core/src/index.ts";
    try {
      const info = await initRuntime(${options});
      console.log("RESULT " + JSON.stringify({ ok: true, backend: info.backend }));
    } catch (e) {
      console.log("RESULT " + JSON.stringify({ ok: false, name: e.name, message: e.message }));
    }
    process.exit(0);`;
  const { stdout } = await run(
    process.execPath,
    ["--import", "tsx", "--input-type=module", "-e", script],
    {
      cwd: root,
      env: {
        ...process.env,
        VK_ICD_FILENAMES: "/nonexistent/icd.json",
        VK_DRIVER_FILES: "/nonexistent/icd.json",
      },
    },
  );
  const line = stdout.split("\n").find((l) => l.startsWith("RESULT "));
  expect(line, stdout).toBeDefined();
  return JSON.parse(line!.slice("RESULT ".length));
}

describe("runtime without an adapter", () => {
  it("raises DeviceError telling the user how to get WebGPU", async () => {
    const result = await initWithoutDriver("{}");
    expect(result.ok).toBe(false);
    expect(result.name).toBe("DeviceError");
    expect(result.message).toMatch(
      /^No WebGPU adapter was found\. On Linux without a GPU, install Mesa's Vulkan driver/,
    );
    expect(result.message).toMatch(/scripts\/setup-system\.sh/);
  });

  it("falls back to the CPU backend when the caller opted in", async () => {
    const result = await initWithoutDriver('{ fallback: "cpu" }');
    expect(result).toEqual({ ok: true, backend: "cpu" });
  });
});
