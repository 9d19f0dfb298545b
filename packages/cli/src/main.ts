/**
 * The `webtune` command: webtune's core on Dawn (WebGPU in Node). Flags are parsed once here, by commander,
 * and each command lives in its own file. Any failure exits non-zero with one line saying why.
 */
import { Command, InvalidArgumentError } from "commander";
import { disposeRuntime } from "@webtune/core";
import { evalCommand } from "./eval.js";
import { generateCommand } from "./generate.js";
import { infoCommand } from "./info.js";
import { mergeCommand } from "./merge.js";
import { EMBEDDED_MODEL } from "./embedded.js";
import { trainCommand } from "./train.js";

export function int(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0)
      throw new InvalidArgumentError(`${name} must be a non-negative integer.`);
    return n;
  };
}

export function num(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n))
      throw new InvalidArgumentError(`${name} must be a number.`);
    return n;
  };
}

const program = new Command()
  .name("webtune")
  .description("LoRA fine-tuning of Hugging Face language models on WebGPU")
  .showHelpAfterError("(run with --help for usage)");

program
  .command("info")
  .description(
    "print a model's architecture, parameter count and Linear module names",
  )
  .option(
    "--model <src>",
    "hub id, URL or local folder (default: the embedded demo base model)",
    EMBEDDED_MODEL,
  )
  .action((o) => run(() => infoCommand(o)));

program
  .command("generate")
  .description("continue a prompt with a model (and optionally a LoRA adapter)")
  .option(
    "--model <src>",
    "hub id, URL or local folder (default: the embedded demo base model)",
    EMBEDDED_MODEL,
  )
  .option("--adapter <dir>", "a PEFT LoRA adapter folder")
  .requiredOption("--prompt <text>", "the text to continue")
  .option(
    "--max-new-tokens <n>",
    "tokens to generate",
    int("--max-new-tokens"),
    64,
  )
  .option("--temperature <t>", "0 for greedy", num("--temperature"), 0)
  .option(
    "--top-k <k>",
    "sample among the k most likely tokens",
    int("--top-k"),
    0,
  )
  .option("--top-p <p>", "nucleus sampling mass", num("--top-p"), 1)
  .option("--seed <n>", "sampling seed", int("--seed"), 0)
  .action((o) => run(() => generateCommand(o)));

program
  .command("train")
  .description(
    "train a LoRA adapter; writes PEFT files and metrics.jsonl to --out",
  )
  .option(
    "--model <src>",
    "hub id, URL or local folder (default: the embedded demo base model)",
    EMBEDDED_MODEL,
  )
  .requiredOption("--data <file>", "JSONL, CSV or text")
  .requiredOption(
    "--out <dir>",
    "output folder; one that holds another run is refused unless --overwrite",
  )
  .option(
    "--overwrite",
    "replace the run already in --out (its adapter or model, metrics.jsonl and checkpoints)",
    false,
  )
  .option(
    "--format <f>",
    "completion | instruction | chat | classification | tokens (default: detected)",
  )
  .option(
    "--skip-bad-rows",
    "drop rows that cannot be read (counted as malformed) instead of stopping at the first",
    false,
  )
  .option(
    "--mode <mode>",
    "lora (an adapter) or full (every weight; writes a full model folder)",
    "lora",
  )
  .option(
    "--dtype <d>",
    "storage of the frozen base: float32 | float16 (compute stays f32)",
    "float32",
  )
  .option(
    "--quantize <q>",
    "int8 | nf4: blockwise-quantized projections (QLoRA); embeddings stay in --dtype",
  )
  .option(
    "--double-quant",
    "quantize the block scales too (with --quantize)",
    false,
  )
  .option(
    "--gradient-checkpointing",
    "recompute each block in the backward pass: less memory, about a third more time",
    false,
  )
  .option(
    "--memory-budget <MiB>",
    "refuse to start when one step is expected to need more GPU memory than this",
    (v: string) => num("--memory-budget")(v) * 2 ** 20,
  )
  .option("--r <n>", "LoRA rank", int("--r"), 8)
  .option("--alpha <a>", "lora_alpha", num("--alpha"), 16)
  .option("--dropout <p>", "lora_dropout", num("--dropout"), 0.05)
  .option(
    "--target <list>",
    "comma-separated module names, or all-linear",
    "all-linear",
  )
  .option("--rslora", "rank-stabilised scaling alpha/√r", false)
  .option("--dora", "weight-decomposed LoRA", false)
  .option("--lr <lr>", "peak learning rate", num("--lr"), 2e-4)
  .option("--batch <n>", "examples per micro-batch", int("--batch"), 8)
  .option(
    "--grad-accum <n>",
    "micro-batches per optimizer step",
    int("--grad-accum"),
    1,
  )
  .option("--epochs <n>", "passes over the training split", int("--epochs"), 1)
  .option(
    "--max-steps <n>",
    "optimizer steps (overrides --epochs)",
    int("--max-steps"),
  )
  .option(
    "--seq-len <n>",
    "tokens per example (longer ones are truncated)",
    int("--seq-len"),
    256,
  )
  .option("--warmup <n>", "warmup steps", int("--warmup"), 0)
  .option("--schedule <s>", "constant | linear | cosine", "cosine")
  .option(
    "--seed <n>",
    "seed of the split, shuffling, init and dropout",
    int("--seed"),
    0,
  )
  .option(
    "--val-split <f>",
    "fraction held out for validation",
    num("--val-split"),
    0.1,
  )
  .option(
    "--test-split <f>",
    "fraction held out for testing",
    num("--test-split"),
    0,
  )
  .option(
    "--eval-every <n>",
    "evaluate on validation every n steps",
    int("--eval-every"),
    50,
  )
  .option(
    "--early-stop <patience>",
    "stop after this many evaluations without improvement",
    int("--early-stop"),
  )
  .option(
    "--checkpoint-every <n>",
    "save a resumable checkpoint every n steps to <out>/checkpoints",
    int("--checkpoint-every"),
  )
  .option(
    "--resume <dir>",
    "a checkpoints folder: continue from its latest checkpoint (in --out/checkpoints, metrics.jsonl keeps its rows up to it)",
  )
  .option(
    "--reference <file>",
    "general text to check forgetting on: its loss before and after tuning",
  )
  .option(
    "--test <file>",
    "a held-out test file in --data's format: the base and the tuned model are scored on it",
  )
  .action((o) => run(() => trainCommand(o)));

program
  .command("merge")
  .description(
    "fold a LoRA adapter into the weights and write a full Hugging Face model folder",
  )
  .option(
    "--model <src>",
    "hub id, URL or local folder (default: the embedded demo base model)",
    EMBEDDED_MODEL,
  )
  .requiredOption("--adapter <dir>", "a PEFT LoRA adapter folder")
  .requiredOption("--out <dir>", "output folder")
  .action((o) => run(() => mergeCommand(o)));

program
  .command("eval")
  .description(
    "loss and perplexity of a model (and adapter) on a dataset; the last line is JSON",
  )
  .option(
    "--model <src>",
    "hub id, URL or local folder (default: the embedded demo base model)",
    EMBEDDED_MODEL,
  )
  .option("--adapter <dir>", "a PEFT LoRA adapter folder")
  .requiredOption("--data <file>", "JSONL, CSV or text")
  .option("--format <f>", "dataset format (default: detected)")
  .option(
    "--skip-bad-rows",
    "drop rows that cannot be read (counted as malformed) instead of stopping at the first",
    false,
  )
  .option(
    "--seq-len <n>",
    "tokens per example (longer ones are truncated)",
    int("--seq-len"),
    1024,
  )
  .action((o) => run(() => evalCommand(o)));

/** Runs a command; any error becomes one line on stderr and exit code 1. Dawn keeps Node alive until exit. */
async function run(command: () => Promise<void>): Promise<void> {
  let code = 0;
  try {
    await command();
  } catch (error) {
    process.stderr.write(
      `webtune: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    code = 1;
  } finally {
    disposeRuntime();
  }
  process.exit(code);
}

await program.parseAsync(process.argv);
