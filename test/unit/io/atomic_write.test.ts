/**
 * Saving results without ever losing the previous good one, against real faults: a full disk (a 64 KiB tmpfs) and
 * a process killed with SIGKILL in the middle of saving. The folder always holds a complete adapter, the temporary
 * files go away, and a full disk is a WebtuneError that names the folder.
 */
import { spawn } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { WebtuneError } from "../../../packages/core/src/errors.js";
import { directoryStore } from "../../../packages/core/src/io/checkpoint_store.js";
import { writeFilesAtomically } from "../../../packages/core/src/io/atomic_write.js";
import {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  saveAdapterToDirectory,
} from "../../../packages/core/src/io/peft.js";
import { adapterVersion } from "../../helpers/save_loop.js";
import { mountSmallDisk, type SmallDisk } from "../../helpers/small_disk.js";

const root = fileURLToPath(new URL("../../..", import.meta.url));
let disk: SmallDisk | undefined;

afterEach(() => {
  disk?.unmount();
  disk = undefined;
});

const snapshot = (dir: string) =>
  Object.fromEntries(
    readdirSync(dir)
      .sort()
      .map((f) => [f, readFileSync(join(dir, f))]),
  );

describe("saving an adapter", () => {
  it("replaces a previous adapter and leaves no temporary file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "webtune-save-"));
    await saveAdapterToDirectory(adapterVersion(1, 1000), dir);
    await saveAdapterToDirectory(adapterVersion(2, 3000), dir);
    expect(readdirSync(dir).sort()).toEqual([ADAPTER_CONFIG, ADAPTER_WEIGHTS]);
    expect(readFileSync(join(dir, ADAPTER_CONFIG), "utf8")).toBe(
      '{"version":2}',
    );
    expect(readFileSync(join(dir, ADAPTER_WEIGHTS))).toEqual(
      Buffer.from(adapterVersion(2, 3000)[ADAPTER_WEIGHTS]),
    );
  });

  it("on a full disk throws a WebtuneError naming the folder, removes its temporary files and keeps the previous adapter byte for byte", async () => {
    disk = mountSmallDisk(64);
    const dir = join(disk.dir, "run");
    await saveAdapterToDirectory(adapterVersion(1, 16 * 1024), dir);
    writeFileSync(join(dir, "metrics.jsonl"), '{"type":"step","step":1}\n');
    const before = snapshot(dir);
    const error = await saveAdapterToDirectory(
      adapterVersion(2, 128 * 1024),
      dir,
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WebtuneError);
    expect((error as Error).message).toMatch(
      new RegExp(
        `^Cannot save the adapter in ${dir}: the disk is full \\(ENOSPC\\)\\. The files already in ${dir} are unchanged\\.`,
      ),
    );
    expect(snapshot(dir)).toEqual(before);

    // The space the failed save took is free again: a save that fits goes through.
    await saveAdapterToDirectory(adapterVersion(3, 20 * 1024), dir);
    expect(readFileSync(join(dir, ADAPTER_CONFIG), "utf8")).toBe(
      '{"version":3}',
    );
  });

  it("a checkpoint that does not fit leaves no partial folder and the earlier checkpoints as they were", async () => {
    disk = mountSmallDisk(64);
    const store = directoryStore(join(disk.dir, "checkpoints"));
    await store.save("step-000001", { "weights.bin": new Uint8Array(8000) });
    const error = await store
      .save("step-000002", { "weights.bin": new Uint8Array(200_000) })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WebtuneError);
    expect((error as Error).message).toMatch(
      /^Cannot save checkpoint step-000002 in .*checkpoints: the disk is full/,
    );
    expect(readdirSync(join(disk.dir, "checkpoints"))).toEqual(["step-000001"]);
    expect(await store.list()).toEqual(["step-000001"]);
    expect((await store.load("step-000001"))["weights.bin"]).toHaveLength(8000);
  });

  it("a save killed with SIGKILL leaves either the old or the new complete adapter, never a truncated file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "webtune-crash-"));
    const size = 8 << 20;
    let killedMidWrite = 0;
    for (let round = 0; round < 5; round++) {
      const saves = await killMidSave(dir, size, round * 100, 50 + 60 * round);
      expect(saves, "the child saved at least once").toBeGreaterThan(0);
      const config = JSON.parse(
        readFileSync(join(dir, ADAPTER_CONFIG), "utf8"),
      ) as { version: number };
      const weights = readFileSync(join(dir, ADAPTER_WEIGHTS));
      expect(weights.length).toBe(size);
      const byte = weights[0]!;
      expect(weights.every((b) => b === byte)).toBe(true);
      // The weights are renamed before the config: the config is that of these weights or, killed between the two
      // renames, the previous version's, never a newer one.
      expect([config.version % 251, (config.version + 1) % 251]).toContain(
        byte,
      );
      if (readdirSync(dir).some((f) => f.endsWith(".tmp"))) killedMidWrite++;
    }
    expect(killedMidWrite, "some kill landed mid-write").toBeGreaterThan(0);
    // The next save removes the temporary files of the killed processes.
    await saveAdapterToDirectory(adapterVersion(7, 10), dir);
    expect(readdirSync(dir).sort()).toEqual([ADAPTER_CONFIG, ADAPTER_WEIGHTS]);
    expect(existsSync(join(dir, ADAPTER_CONFIG))).toBe(true);
  });

  it("renames in the order given, so a failing rename leaves the earlier files replaced and says which", async () => {
    const dir = mkdtempSync(join(tmpdir(), "webtune-order-"));
    await writeFilesAtomically(dir, [
      ["a.bin", "old a"],
      ["b.json", "old b"],
    ]);
    // A folder under b.json's name makes its rename fail (EISDIR) after a.bin's went through.
    rmSync(join(dir, "b.json"));
    mkdirSync(join(dir, "b.json"));
    writeFileSync(join(dir, "b.json", "x"), "");
    const error = await writeFilesAtomically(dir, [
      ["a.bin", "new a"],
      ["b.json", "new b"],
    ]).catch((e: unknown) => e);
    expect((error as Error).message).toMatch(
      /a\.bin was already replaced; the other files in .* are unchanged/,
    );
    expect(readFileSync(join(dir, "a.bin"), "utf8")).toBe("new a");
    expect(readdirSync(dir).sort()).toEqual(["a.bin", "b.json"]);
  });
});

/** Starts the save loop, kills it with SIGKILL `delayMs` after its first save, and returns how many saves it made. */
function killMidSave(
  dir: string,
  size: number,
  first: number,
  delayMs: number,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        "test/helpers/save_loop.ts",
        dir,
        String(size),
        String(first),
      ],
      { cwd: root, stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    let err = "";
    let timer: NodeJS.Timeout | undefined;
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      timer ??= setTimeout(() => child.kill("SIGKILL"), delayMs);
    });
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      if (signal !== "SIGKILL")
        reject(new Error(`save loop exited with ${code}: ${err}`));
      else resolve(out.split("\n").filter((l) => l.startsWith("saved")).length);
    });
  });
}
