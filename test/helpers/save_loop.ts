/**
 * A child process for crash tests: saves adapters into a folder in a loop until it is killed, alternating between
 * versions. Version v is a config `{"version": v}` and a weights file of `size` bytes, all equal to v % 251, so a
 * reader can tell which version each file is and whether it is complete. Prints "saved <v>" after each save.
 *
 *   node --import tsx test/helpers/save_loop.ts <dir> <size> <first version>
 */
import { saveAdapterToDirectory } from "../../packages/core/src/io/peft.js";

export function adapterVersion(v: number, size: number) {
  return {
    "adapter_config.json": JSON.stringify({ version: v }),
    "adapter_model.safetensors": new Uint8Array(size).fill(v % 251),
  };
}

if (process.argv[1]?.endsWith("save_loop.ts")) {
  const [dir, size, first] = process.argv.slice(2);
  for (let v = Number(first); ; v++) {
    await saveAdapterToDirectory(adapterVersion(v, Number(size)), dir!);
    process.stdout.write(`saved ${v}\n`);
  }
}
