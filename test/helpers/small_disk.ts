/**
 * A real full disk for tests: a small tmpfs mounted on a fresh folder. Mounting needs root, or a user and mount
 * namespace (`unshare -rm npx vitest run ...`, where the test runs as root of the namespace). Without either this
 * throws, so that a test of disk-full handling never passes without a full disk.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface SmallDisk {
  dir: string;
  unmount(): void;
}

export function mountSmallDisk(sizeKiB: number): SmallDisk {
  const dir = mkdtempSync(join(tmpdir(), "webtune-small-disk-"));
  try {
    execFileSync(
      "mount",
      ["-t", "tmpfs", "-o", `size=${sizeKiB}k`, "tmpfs", dir],
      { stdio: "pipe" },
    );
  } catch (error) {
    rmdirSync(dir);
    const why = (error as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(
      `Cannot mount a ${sizeKiB} KiB tmpfs on ${dir} (${why || String(error)}): this test needs a real full disk. ` +
        "Run it as root, or inside `unshare -rm` (a user and mount namespace).",
      { cause: error },
    );
  }
  return {
    dir,
    unmount() {
      execFileSync("umount", [dir]);
      rmdirSync(dir);
    },
  };
}
