/**
 * Starting WebGPU in tests. A test that needs a GPU fails with the runtime's DeviceError when there is none;
 * only WEBTUNE_ALLOW_NO_GPU=1 turns that into an explicit, reported skip.
 */
import { initRuntime, type GpuInfo } from "@webtune/core";
import type { TestContext } from "vitest";

export const allowNoGpu = process.env["WEBTUNE_ALLOW_NO_GPU"] === "1";

let started: Promise<GpuInfo | undefined> | undefined;

/** Call in beforeAll. Throws the DeviceError unless WEBTUNE_ALLOW_NO_GPU=1. */
export function startGpu(): Promise<GpuInfo | undefined> {
  started ??= initRuntime().catch((error: unknown) => {
    if (allowNoGpu) {
      console.warn(
        `WEBTUNE_ALLOW_NO_GPU=1: GPU tests are skipped because WebGPU did not start: ${String(error)}`,
      );
      return undefined;
    }
    throw error;
  });
  return started;
}

/** Call first in each GPU test: skips it, visibly, only when WebGPU is absent and that was allowed. */
export async function needGpu(ctx: TestContext): Promise<GpuInfo> {
  const info = await startGpu();
  if (!info) ctx.skip("no WebGPU and WEBTUNE_ALLOW_NO_GPU=1");
  return info!;
}
