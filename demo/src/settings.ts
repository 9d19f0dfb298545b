/**
 * The LoRA and training settings form: each field with its default and a line of help, read back as the worker's
 * options. Presets fill in the values that worked for their task (the same as `npm run task:*`).
 */
import type { LoraConfigInput } from "@webtune/core";
import type { WorkerLoadOptions, WorkerTrainOptions } from "@webtune/worker";
import { byId } from "./dom.js";

interface Field {
  name: string;
  label: string;
  help: string;
  value: string;
  /** A number input's step; text inputs have none. */
  step?: string;
  /** A checkbox; `value` "true" checks it. */
  checkbox?: boolean;
}

const FIELDS: Field[] = [
  {
    name: "r",
    label: "rank r",
    help: "Adapter rank: capacity of the update. 8–16 is typical.",
    value: "16",
    step: "1",
  },
  {
    name: "alpha",
    label: "alpha",
    help: "Scale of the update is alpha / r. Twice r is a good start.",
    value: "32",
    step: "1",
  },
  {
    name: "dropout",
    label: "dropout",
    help: "Dropout on the adapter's input, against overfitting small data.",
    value: "0",
    step: "0.05",
  },
  {
    name: "targets",
    label: "target modules",
    help: "Comma-separated Linear names, or all-linear (PEFT's shorthand).",
    value: "all-linear",
  },
  {
    name: "lr",
    label: "learning rate",
    help: "Peak, after warm-up; cosine decay to 0. LoRA takes larger rates than full tuning.",
    value: "0.003",
    step: "any",
  },
  {
    name: "batch",
    label: "batch size",
    help: "Examples per step. Larger is smoother and needs more GPU memory.",
    value: "16",
    step: "1",
  },
  {
    name: "epochs",
    label: "epochs",
    help: "Passes over the training split (unless max steps is set).",
    value: "1",
    step: "1",
  },
  {
    name: "maxSteps",
    label: "max steps",
    help: "Stop after this many steps; 0 means run the epochs.",
    value: "200",
    step: "1",
  },
  {
    name: "warmup",
    label: "warm-up steps",
    help: "Steps of linear warm-up from 0 to the peak rate.",
    value: "20",
    step: "1",
  },
  {
    name: "evalEvery",
    label: "validate every",
    help: "Steps between validation losses (the orange line). 0: only at the end.",
    value: "50",
    step: "1",
  },
  {
    name: "valRows",
    label: "validation rows",
    help: "Rows each validation check scores; fewer check faster.",
    value: "64",
    step: "1",
  },
  {
    name: "patience",
    label: "early-stop patience",
    help: "Stop when validation has not improved for this many checks, and keep the best; 0 turns it off.",
    value: "0",
    step: "1",
  },
  {
    name: "gradientCheckpointing",
    label: "gradient checkpointing",
    help: "Keep only each block's input and recompute the block in the backward pass: far less memory, about a third more time.",
    value: "false",
    checkbox: true,
  },
  {
    name: "checkpointEvery",
    label: "checkpoint every",
    help: "Steps between checkpoints in this browser's storage, so a reload can resume; 0: none.",
    value: "25",
    step: "1",
  },
  {
    name: "maxLength",
    label: "max tokens per row",
    help: "Longer rows are truncated.",
    value: "128",
    step: "1",
  },
  {
    name: "testRows",
    label: "test rows to score",
    help: "Exact match decodes every row; fewer rows evaluate faster.",
    value: "100",
    step: "1",
  },
];

/** What the form says, as worker options. */
export interface Settings {
  lora: LoraConfigInput;
  train: WorkerTrainOptions;
  maxLength: number;
  testRows: number;
}

/** Builds the form's fields. */
export function renderSettings(): void {
  const form = byId<HTMLFormElement>("settings");
  form.replaceChildren(
    ...FIELDS.map((f) => {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.name = f.name;
      input.id = `setting-${f.name}`;
      input.value = f.value;
      if (f.checkbox) {
        input.type = "checkbox";
        input.checked = f.value === "true";
      } else if (f.step) {
        input.type = "number";
        input.step = f.step;
        input.min = "0";
      }
      const help = document.createElement("small");
      help.textContent = f.help;
      label.append(f.label, input, help);
      return label;
    }),
  );
}

/** Sets fields by name, e.g. a preset's tuned values. */
export function applySettings(values: Record<string, string | number>): void {
  for (const [name, value] of Object.entries(values)) {
    const input = byId<HTMLInputElement>(`setting-${name}`);
    if (input.type === "checkbox") input.checked = String(value) === "true";
    else input.value = String(value);
  }
}

/** Every field's current text, for saving a run. */
export function currentValues(): Record<string, string> {
  return Object.fromEntries(
    FIELDS.map((f) => {
      const input = byId<HTMLInputElement>(`setting-${f.name}`);
      return [f.name, f.checkbox ? String(input.checked) : input.value];
    }),
  );
}

function numberField(name: string, integer: boolean): number {
  const field = FIELDS.find((f) => f.name === name)!;
  const value = Number(byId<HTMLInputElement>(`setting-${name}`).value);
  if (
    !Number.isFinite(value) ||
    value < 0 ||
    (integer && !Number.isInteger(value))
  )
    throw new RangeError(
      `Setting "${field.label}" must be a ${integer ? "whole " : ""}number ≥ 0.`,
    );
  return value;
}

/** Reads the form; a bad field throws a RangeError that names it. */
export function readSettings(): Settings {
  const int = (name: string) => numberField(name, true);
  const num = (name: string) => numberField(name, false);
  const targets = byId<HTMLInputElement>("setting-targets").value.trim();
  const maxSteps = int("maxSteps");
  const patience = int("patience");
  return {
    lora: {
      r: int("r"),
      loraAlpha: num("alpha"),
      loraDropout: num("dropout"),
      targetModules:
        targets === "all-linear" || targets === ""
          ? "all-linear"
          : targets.split(",").map((t) => t.trim()),
    },
    train: {
      learningRate: num("lr"),
      schedule: "cosine",
      batchSize: Math.max(1, int("batch")),
      epochs: Math.max(1, int("epochs")),
      maxSteps: maxSteps > 0 ? maxSteps : undefined,
      warmupSteps: int("warmup"),
      evalEvery: int("evalEvery") || undefined,
      valRows: Math.max(1, int("valRows")),
      earlyStopping: patience > 0 ? { patience } : undefined,
      checkpointEvery: int("checkpointEvery") || undefined,
      gradientCheckpointing: byId<HTMLInputElement>(
        "setting-gradientCheckpointing",
      ).checked,
      // Advice (a diverging run's) names this page's controls.
      optionNames: {
        learningRate: '"learning rate" at',
        warmupSteps: '"warm-up steps" at',
      },
    },
    maxLength: Math.max(8, int("maxLength")),
    testRows: Math.max(1, int("testRows")),
  };
}

/** The base-weights choice of the model panel as load options: NF4 and int8 keep the embeddings in f16. */
export function weightStorage(choice: string): WorkerLoadOptions {
  if (choice === "float16") return { dtype: "float16" };
  if (choice === "int8" || choice === "nf4")
    return { dtype: "float16", quantize: choice, doubleQuant: true };
  return {};
}
