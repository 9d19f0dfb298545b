/** One LoRA linear test case against the CPU reference, through the core's self-test harness. */
import {
  referenceLoraCase,
  runLoraCase,
  type LoraCheckCase,
} from "../../../packages/core/src/kernels/lora_linear/self_test.js";
import { expectClose } from "../../helpers/tensors.js";

export type LoraCase = LoraCheckCase;
export { runLoraCase as runCase };

/** Forward and every gradient within `rtol` (default 1e-4) of the CPU reference. */
export async function expectCaseMatchesReference(
  c: LoraCase,
  rtol = 1e-4,
): Promise<void> {
  const got = await runLoraCase(c);
  const want = referenceLoraCase(c);
  const name = JSON.stringify(c);
  for (const key of ["y", "dx", "dA", "dB"] as const)
    expectClose(got[key], want[key], rtol, `${name} ${key}`);
}
