#!/usr/bin/env node
// The compiled CLI (npm run build); see packages/cli/src/main.ts.
//
// Dawn prints two warnings from native code when it opens an adapter whose driver reports huge dynamic-offset
// limits (lavapipe: "maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to 16 ..."). They
// are harmless (webtune uses no dynamic offsets) and no Dawn option or hook reaches them, so the CLI runs as a child
// whose stderr passes through here with exactly those lines dropped; everything else is forwarded as it comes.
import { spawn } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";

const CHILD = "WEBTUNE_CLI_CHILD";
const DAWN_NOISE =
  /^Warning: maxDynamic(Uniform|Storage)BuffersPerPipelineLayout artificially reduced from \d+ to \d+ to fit dynamic offset allocation limit\.\r?$/;
const PREFIX = "Warning: maxDynamic";

if (process.env[CHILD]) {
  await import("../dist/main.js");
} else {
  const child = spawn(
    process.execPath,
    [
      ...process.execArgv,
      fileURLToPath(import.meta.url),
      ...process.argv.slice(2),
    ],
    {
      stdio: ["inherit", "inherit", "pipe"],
      // The child's stderr is a pipe: say whether ours is a terminal, for its progress bar.
      env: {
        ...process.env,
        [CHILD]: "1",
        WEBTUNE_STDERR_TTY: process.stderr.isTTY ? "1" : "",
        COLUMNS: String(process.stderr.columns ?? ""),
      },
    },
  );
  let pending = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk) => {
    pending += chunk;
    const lines = pending.split("\n");
    pending = lines.pop();
    for (const line of lines)
      if (!DAWN_NOISE.test(line)) process.stderr.write(`${line}\n`);
    // A partial line goes out at once (a progress bar redraws with \r), unless it may be the warning's start.
    if (!(PREFIX.startsWith(pending) || pending.startsWith(PREFIX))) {
      process.stderr.write(pending);
      pending = "";
    }
  });
  child.stderr.on("end", () => {
    if (pending && !DAWN_NOISE.test(pending)) process.stderr.write(pending);
  });
  // Ctrl-C reaches the child from the terminal; a signal sent to this process alone is passed on.
  process.on("SIGINT", () => {});
  process.on("SIGTERM", () => child.kill("SIGTERM"));
  child.on("close", (code, signal) => {
    if (!signal) process.exit(code ?? 1);
    // Ended by a signal: end the same way, so that a shell sees what the child saw.
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
  });
}
