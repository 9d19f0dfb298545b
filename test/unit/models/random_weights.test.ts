/**
 * The TypeScript port of the golden fixtures' weight generator agrees bit for bit with the Python one
 * (test/fixtures/golden/weights_check.json, written by make_golden.py).
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { lowbias32 } from "../../../packages/core/src/kernels/lora_linear/dropout.js";
import { fnv1a32, generateTensor } from "../../helpers/random_weights.js";

interface Check {
  fnv1a32_test_vectors: Record<string, number>;
  lowbias32_test_vectors: Record<string, number>;
  tensors: {
    name: string;
    model_type: string;
    shape: number[];
    indices: number[];
    values_f32_hex: string[];
  }[];
}

const check = JSON.parse(
  readFileSync(
    new URL("../../fixtures/golden/weights_check.json", import.meta.url),
    "utf8",
  ),
) as Check;

function hex(v: number): string {
  const b = new DataView(new ArrayBuffer(4));
  b.setFloat32(0, v);
  return b.getUint32(0).toString(16).padStart(8, "0");
}

describe("deterministic weights", () => {
  it("hashes as the Python generator does", () => {
    for (const [text, h] of Object.entries(check.fnv1a32_test_vectors))
      expect(fnv1a32(text), text).toBe(h);
    for (const [x, h] of Object.entries(check.lowbias32_test_vectors))
      expect(lowbias32(Number(x)), x).toBe(h);
  });

  it("generates the same f32 bits for every checked tensor", () => {
    expect(check.tensors.length).toBeGreaterThanOrEqual(5);
    for (const t of check.tensors) {
      const size = Math.max(...t.indices) + 1;
      const values = generateTensor(t.name, size, t.model_type);
      expect(
        t.indices.map((i) => hex(values[i]!)),
        t.name,
      ).toEqual(t.values_f32_hex);
    }
  });
});
