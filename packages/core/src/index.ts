/**
 * @webtune/core: LoRA fine-tuning of pretrained language models on WebGPU, in a page, a Web Worker or Node (Dawn).
 *
 * - runtime: the WebGPU device and tfjs backend, memory accounting (`initRuntime`, `gpuMemory`);
 * - models: GPT-2, Llama, Qwen2/2.5 and Gemma 3 text from a hub id, a URL, picked files or a folder, with their
 *   tokenizers, chat templates and KV-cached generation; the frozen base optionally stored as f16, int8 or NF4
 *   (`loadModel`);
 * - lora: adapters in Hugging Face PEFT's format, with DoRA, rsLoRA, named adapters and merging (`LoraModel`);
 * - train: datasets, the Trainer on a compiled training step, evaluation, early stopping and checkpoints
 *   (`buildDataset`, `Trainer`, `evaluate`);
 * - job: a whole fine-tuning run as one serialisable FineTuneJob (model, data, split, adapter, training,
 *   evaluation), its defaults (`JOB_DEFAULTS`), its check and its run; the CLI, the worker and the demo run these;
 * - io, kernels, errors: model files, downloads and caching; the fused WGSL kernels; typed errors.
 *
 * The same run as one job: `await FineTuneJob.from({ model: { source }, data: { train: "train.jsonl" } })
 * .run({ readFile })`. Or piece by piece:
 *
 * @example
 * ```ts
 * import {
 *   batches, buildDataset, initRuntime, loadModel, LoraModel, saveAdapterToDirectory, Trainer,
 * } from "@webtune/core";
 *
 * await initRuntime(); // WebGPU in a page or a worker; Dawn in Node
 * const model = await loadModel("HuggingFaceTB/SmolLM2-135M");
 * const peft = new LoraModel(model);
 * peft.addAdapter("default", { r: 8, loraAlpha: 16, targetModules: ["q_proj", "v_proj"] });
 * const data = buildDataset(text, model.tokenizer!, { source: "train.jsonl" });
 * const train = [...batches(data.examples, { batchSize: 8, padId: 0, seed: 0, epoch: 0 })];
 * await new Trainer(peft, { learningRate: 2e-4 }).train({ train });
 * await saveAdapterToDirectory(await peft.saveAdapter(), "my-adapter"); // PeftModel.from_pretrained reads it
 * ```
 */
export * from "./errors.js";
export * from "./runtime/index.js";
export * from "./kernels/index.js";
export * from "./io/index.js";
export * from "./models/index.js";
export * from "./lora/index.js";
export * from "./train/index.js";
export * from "./train/data/index.js";
export * from "./job/index.js";
export * from "./gguf/index.js";
