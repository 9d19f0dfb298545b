/**
 * The `webtune` command: webtune's core on Dawn (WebGPU in Node). Flags are parsed once here, by commander,
 * and each command lives in its own file. Any failure exits non-zero with one line saying why.
 */
import { Command, InvalidArgumentError, Option } from "commander";
import { disposeRuntime, GGUF_DTYPES, JOB_DEFAULTS } from "@webtune/core";
import { evalCommand } from "./eval.js";
import { exportCommand } from "./export.js";
import { generateCommand } from "./generate.js";
import { infoCommand } from "./info.js";
import { mergeCommand } from "./merge.js";
import { monitorCommand } from "./monitor.js";
import { collectAdapter, serveCommand } from "./serve/index.js";
import { EMBEDDED_MODEL } from "./embedded.js";
import { sweepCommand } from "./sweep.js";
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
  .option("--prompt <text>", "the text to continue, exactly as given")
  .option(
    "--input <text>",
    "the input alone, put into the prompt template that webtune train saved with --adapter",
  )
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
  .command("serve")
  .description(
    "serve a model and its LoRA adapters over an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, /v1/models) with Prometheus /metrics",
  )
  .option(
    "--model <src>",
    "hub id, URL or local folder (default: the embedded demo base model)",
    EMBEDDED_MODEL,
  )
  .option(
    "--adapter <name=dir>",
    "a PEFT LoRA adapter, served as model <name> (dir alone: named after its folder); repeat for several",
    collectAdapter,
    [],
  )
  .option(
    "--host <host>",
    "address to listen on; anything but loopback exposes the model without authentication",
    "127.0.0.1",
  )
  .option(
    "--port <n>",
    "port to listen on (0: any free port)",
    int("--port"),
    8000,
  )
  .action((o) => run(() => serveCommand(o)));

const D = JOB_DEFAULTS;
const none = (v: unknown) => (v === null ? "none" : String(v));

program
  .command("train")
  .description(
    "train a LoRA adapter (or every weight); writes PEFT files, the job and metrics.jsonl to --out",
  )
  .option(
    "--job <file>",
    "a job file (from --print-job or the demo); flags given as well override its fields",
  )
  .option(
    "--print-job",
    "print the job that the job file and flags describe, defaults filled in, and exit",
  )
  .option(
    "--model <src>",
    "hub id, URL or local folder (default: the embedded demo base model)",
  )
  .option(
    "--data <files>",
    "JSONL, CSV or text; several, comma-separated, train one adapter on each task (multitask)",
  )
  .option(
    "--mix <shares>",
    "multitask: each --data file's share of every batch, comma-separated (e.g. 0.5,0.5)",
  )
  .option(
    "--mix-temperature <t>",
    `multitask without --mix: shares by rows^(1/t); 1 is by size, more evens them out (default: ${D.data.mixTemperature})`,
    num("--mix-temperature"),
  )
  .option(
    "--replay <file>",
    "general text (e.g. demo/public/data/replay.jsonl) mixed into every batch against forgetting",
  )
  .option(
    "--replay-ratio <f>",
    `--replay's share of every batch, in (0, 1) (default: ${D.replay.ratio})`,
    num("--replay-ratio"),
  )
  .option(
    "--continue-from <dir>",
    "sequential fine-tuning: go on training this PEFT adapter (its config sets r, alpha and targets)",
  )
  .option(
    "--retention <files>",
    "earlier tasks' test files, scored before and after (default with --continue-from: its webtune_job.json's test files)",
  )
  .option(
    "--out <dir>",
    "output folder; one that holds another run is refused unless --overwrite",
  )
  .option(
    "--overwrite",
    "replace the run already in --out (its adapter or model, metrics.jsonl and checkpoints)",
  )
  .option(
    "--format <f>",
    "completion | instruction | chat | classification | tokens (default: detected)",
  )
  .option(
    "--skip-bad-rows",
    "drop rows that cannot be read (counted as malformed) instead of stopping at the first",
  )
  .option(
    "--task <task>",
    `causal-lm (next token; classes by label likelihood) | seq-cls (a sequence-classification head on {"text","label"} rows) | ` +
      `token-cls (a token-classification head on {"tokens","tags"} rows or CoNLL files); a head trains in full beside the adapter ` +
      `(default: ${D.adapter.task})`,
  )
  .option(
    "--label-subwords <which>",
    `token-cls: first (a word's first subword carries its tag) | all (every subword) (default: ${D.data.labelSubwords})`,
  )
  .option(
    "--mode <mode>",
    `lora (an adapter) or full (every weight; writes a full model folder) (default: ${D.method})`,
  )
  .option(
    "--dtype <d>",
    `storage of the frozen base: float32 | float16 (compute stays f32) (default: ${D.model.dtype})`,
  )
  .option(
    "--quantize <q>",
    "int8 | nf4: blockwise-quantized projections (QLoRA); embeddings stay in --dtype",
  )
  .option("--double-quant", "quantize the block scales too (with --quantize)")
  .option(
    "--gradient-checkpointing",
    "recompute each block in the backward pass: less memory, about a third more time",
  )
  .option(
    "--memory-budget <MiB>",
    "refuse to start when one step is expected to need more GPU memory than this",
    (v: string) => num("--memory-budget")(v) * 2 ** 20,
  )
  .option("--r <n>", `LoRA rank (default: ${D.adapter.r})`, int("--r"))
  .option(
    "--alpha <a>",
    `lora_alpha (default: ${D.adapter.alpha})`,
    num("--alpha"),
  )
  .option(
    "--dropout <p>",
    `lora_dropout (default: ${D.adapter.dropout})`,
    num("--dropout"),
  )
  .option(
    "--target <list>",
    `comma-separated module names, or all-linear (default: ${D.adapter.targetModules})`,
  )
  .option("--rslora", "rank-stabilised scaling alpha/√r")
  .option("--dora", "weight-decomposed LoRA")
  .option(
    "--lr <lr>",
    `peak learning rate (default: ${D.training.learningRate})`,
    num("--lr"),
  )
  .option(
    "--batch <n>",
    `examples per micro-batch (default: ${D.training.batchSize})`,
    int("--batch"),
  )
  .option(
    "--grad-accum <n>",
    `micro-batches per optimizer step (default: ${D.training.gradAccum})`,
    int("--grad-accum"),
  )
  .option(
    "--epochs <n>",
    `passes over the training split (default: ${D.training.epochs})`,
    int("--epochs"),
  )
  .option(
    "--max-steps <n>",
    "optimizer steps (overrides --epochs)",
    int("--max-steps"),
  )
  .option(
    "--seq-len <n>",
    `tokens per example; longer ones are truncated (default: ${D.data.maxLength})`,
    int("--seq-len"),
  )
  .option(
    "--warmup <n>",
    `warmup steps (default: ${D.training.warmupSteps})`,
    int("--warmup"),
  )
  .option(
    "--schedule <s>",
    `constant | linear | cosine (default: ${D.training.schedule})`,
  )
  .option(
    "--seed <n>",
    `seed of the split, shuffling, init and dropout (default: ${D.training.seed})`,
    int("--seed"),
  )
  .option(
    "--val-split <f>",
    `fraction held out for validation (default: ${D.data.valSplit})`,
    num("--val-split"),
  )
  .option(
    "--test-split <f>",
    `fraction held out for testing (default: ${D.data.testSplit})`,
    num("--test-split"),
  )
  .option(
    "--eval-every <n>",
    `evaluate on validation every n steps (default: ${none(D.evaluation.evalEvery)})`,
    int("--eval-every"),
  )
  .option(
    "--val-rows <n>",
    "score only the first n validation rows at each check (default: all)",
    int("--val-rows"),
  )
  .option(
    "--early-stop <patience>",
    "stop after this many evaluations without improvement, keeping the best",
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
    "--few-shot <k>",
    "also score the base model with k training examples in each test prompt: the few-shot baseline",
    int("--few-shot"),
  )
  .option(
    "--reference <file>",
    "general text to check forgetting on: its loss before and after tuning",
  )
  .option(
    "--test <files>",
    "a held-out test file in --data's format (one per --data file): the base and the tuned model are scored on it",
  )
  .option(
    "--test-rows <n>",
    "score only the first n test rows (default: all)",
    int("--test-rows"),
  )
  .option(
    "--skip-base-score",
    "do not score the base model on the test rows before training",
  )
  .option(
    "--prompt-template <text>",
    'how prompts wrap an input, with {input} where it goes (default: derived from the data, e.g. "Date: {input}\\nWritten out:")',
  )
  .option(
    "--augment <kinds>",
    "augment the training split: eda=N word-operation variants and/or paraphrase=N samples of the base model per row (e.g. eda=4,paraphrase=2)",
  )
  .option(
    "--augment-ops <ops>",
    `eda's operations, taken in turn (default: ${D.augment.edaOps.join(",")})`,
  )
  .option(
    "--augment-alpha <a>",
    `share of a row's words an eda operation changes (default: ${D.augment.edaAlpha})`,
    num("--augment-alpha"),
  )
  .option(
    "--lexicon <file>",
    "synonyms for eda, word<TAB>synonyms lines (default: the shipped WordNet lexicon)",
  )
  .option(
    "--paraphrase-prompt <text>",
    `what the base model continues with a paraphrase, {text} where the row goes (default: ${JSON.stringify(D.augment.paraphrasePrompt)})`,
  )
  .option(
    "--paraphrase-min-logprob <x>",
    `keep a paraphrase whose mean log-likelihood per token is at least x (default: ${D.augment.paraphraseMinLogProb})`,
    num("--paraphrase-min-logprob"),
  )
  .option(
    "--paraphrase-min-gain <x>",
    `keep a paraphrase that the row's text makes likelier by at least x nats per token (default: ${D.augment.paraphraseMinGain})`,
    num("--paraphrase-min-gain"),
  )
  .option(
    "--paraphrase-temperature <t>",
    `sampling temperature of paraphrases (default: ${D.augment.paraphraseTemperature})`,
    num("--paraphrase-temperature"),
  )
  .action((o) => run(() => trainCommand(o)));

program
  .command("sweep")
  .description(
    "search a job's hyperparameters (a grid or random samples) with successive halving; writes sweep.jsonl, best.job.json and the best adapter to --out",
  )
  .option("--job <file>", "the job file whose fields the sweep varies")
  .option(
    "--grid <params...>",
    "the parameters: a train flag or job field, then values (lr=1e-3,3e-3 r=8,16), or a range lo:hi with --random (lr=1e-4:1e-2)",
  )
  .option(
    "--random <n>",
    "random search: n samples (a list is sampled from; a range log-uniformly for lr, r, alpha, batch and weight decay, uniformly otherwise)",
    int("--random"),
  )
  .option("--seed <n>", "the random search's seed", int("--seed"), 0)
  .option(
    "--min-steps <k>",
    "successive halving: every trial trains k steps, the best 1/eta go on to eta×k, ... up to the job's steps (default: no halving)",
    int("--min-steps"),
  )
  .option("--eta <n>", "successive halving's reduction factor", int("--eta"), 3)
  .option(
    "--out <dir>",
    "output folder; running the same sweep again goes on where it stopped",
  )
  .option("--overwrite", "replace a different sweep (or run) in --out")
  .option(
    "--max-runs <n>",
    "stop after n trial-rungs (run again to go on)",
    int("--max-runs"),
  )
  .action((o) => run(() => sweepCommand(o)));

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
  .command("export")
  .description(
    "write a model, a merged model or a LoRA adapter as a GGUF file for llama.cpp (Ollama, LM Studio, node-llama-cpp)",
  )
  .option(
    "--model <src>",
    "hub id, URL or local folder (default: the embedded demo base model)",
    EMBEDDED_MODEL,
  )
  .option(
    "--adapter <dir>",
    "a PEFT LoRA adapter folder: exported alone as a llama.cpp LoRA adapter (use it with the base model's GGUF), or merged with --merged",
  )
  .option(
    "--merged",
    "fold --adapter into the weights and export the tuned model",
  )
  .requiredOption("--format <format>", "gguf")
  .addOption(
    new Option(
      "--dtype <type>",
      "storage of the 2-D weights (norms and biases stay f32) (default: f16 for a model, f32 for an adapter)",
    ).choices(GGUF_DTYPES),
  )
  .requiredOption("--out <file>", "the .gguf file to write")
  .option("--overwrite", "replace --out if it exists")
  .action((o) => run(() => exportCommand(o)));

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
  .option(
    "--few-shot <k>",
    "the few-shot baseline: score each row with k examples of --train in front",
    int("--few-shot"),
  )
  .option(
    "--retrieve <k>",
    "the retrieval baseline: score each row with its k nearest --train rows in front, in one table with the base model, --few-shot and --adapter",
    int("--retrieve"),
  )
  .option(
    "--retriever <name>",
    "how --retrieve finds the nearest rows: bm25 (words) or hidden (the model's mean hidden states) (default: bm25)",
  )
  .option(
    "--train <file>",
    "the training file --few-shot draws from and --retrieve searches",
  )
  .option("--seed <n>", "seed of the --few-shot draw", int("--seed"), 0)
  .action((o) => run(() => evalCommand(o)));

program
  .command("monitor")
  .description(
    "score new labelled rows with a trained adapter and compare them with its training run's test scores: metric change with a bootstrap interval, input-length and label shift; --retrain goes on training it on them; the last line is JSON",
  )
  .option("--adapter <dir>", "the adapter folder webtune train wrote")
  .option(
    "--data <file>",
    "new labelled rows (JSONL, CSV), in the adapter's format",
  )
  .option(
    "--model <src>",
    "hub id, URL or local folder (default: the adapter's job's model, else the embedded demo base model)",
  )
  .option(
    "--baseline <file>",
    "the metrics.jsonl whose last tuned test scores are the baseline (default: <adapter>/metrics.jsonl)",
  )
  .option(
    "--baseline-task <name>",
    "the task to compare with, when the adapter's run trained several",
  )
  .option(
    "--format <f>",
    "dataset format of --data (default: the adapter's job's, else detected)",
  )
  .option(
    "--seq-len <n>",
    "tokens per row, longer ones truncated (default: the adapter's job's)",
    int("--seq-len"),
  )
  .option("--seed <n>", "seed of the bootstrap", int("--seed"))
  .option(
    "--resamples <n>",
    "bootstrap resamples (default: 2000)",
    int("--resamples"),
  )
  .option(
    "--fail-on-drift",
    "exit with code 3 when drift is flagged (for cron or CI)",
  )
  .option(
    "--retrain",
    "go on training the adapter on --data (part held out), replaying its old training file; writes to --out",
  )
  .option("--out <dir>", "--retrain: the folder the retrained adapter goes to")
  .option(
    "--replay <file>",
    "--retrain: the file replayed into every batch (default: the adapter's job's training file)",
  )
  .option(
    "--replay-ratio <f>",
    "--retrain: --replay's share of every batch (default: 0.25)",
    num("--replay-ratio"),
  )
  .option(
    "--max-steps <n>",
    "--retrain: optimizer steps (default: the adapter's job's)",
    int("--max-steps"),
  )
  .option(
    "--lr <lr>",
    "--retrain: peak learning rate (default: the adapter's job's)",
    num("--lr"),
  )
  .option(
    "--holdout <f>",
    "--retrain: share of --data held out to score before and after (default: 0.3)",
    num("--holdout"),
  )
  .action((o) => run(() => monitorCommand(o)));

/**
 * Runs a command; any error becomes one line on stderr and exit code 1, else the exit code the command gives (0 when
 * none). Dawn keeps Node alive until exit.
 */
async function run(command: () => Promise<void | number>): Promise<void> {
  let code: number;
  try {
    code = (await command()) ?? 0;
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
