/** The demo's GGUF downloads: which models and adapters llama.cpp can run, and why the others have no button. */
import { describe, expect, it } from "vitest";
import {
  adapterGgufBlocker,
  modelGgufBlocker,
} from "../../../demo/src/gguf.js";

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

describe("the demo's merged-model GGUF", () => {
  it("is offered for a language model, tuned in full or by an adapter, and not for a head", () => {
    expect(
      modelGgufBlocker({ hasAdapter: true, adapterTask: "causal-lm" }),
    ).toBeUndefined();
    expect(
      modelGgufBlocker({ hasAdapter: false, adapterTask: "causal-lm" }),
    ).toBeUndefined();
    expect(
      modelGgufBlocker({ hasAdapter: true, adapterTask: "seq-cls" }),
    ).toMatch(/classification head, which llama\.cpp cannot run/);
  });
});
