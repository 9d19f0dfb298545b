/** The demo's GGUF downloads: which adapters llama.cpp's LoRA format holds, and why the others have no button. */
import { describe, expect, it } from "vitest";
import { adapterGgufBlocker } from "../../../demo/src/gguf.js";

describe("the demo's adapter GGUF", () => {
  it("is offered for a plain LoRA adapter, and says why not for DoRA or a head", () => {
    expect(
      adapterGgufBlocker({ adapterDora: false, adapterTask: "causal-lm" }),
    ).toBeUndefined();
    expect(
      adapterGgufBlocker({ adapterDora: true, adapterTask: "causal-lm" }),
    ).toMatch(/DoRA .* download the merged model's GGUF instead/);
    for (const task of ["seq-cls", "token-cls"] as const)
      expect(
        adapterGgufBlocker({ adapterDora: false, adapterTask: task }),
      ).toMatch(/classification head, which llama\.cpp cannot run/);
  });
});
