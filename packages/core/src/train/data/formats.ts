/**
 * Dataset formats: which one a row follows (from the fields it has), and reading a row into a typed record of its
 * format, with a precise problem (field and what was wrong) when it does not fit.
 */
import { FormatError } from "../../errors.js";
import type { ChatMessage } from "../../models/tokenizer.js";
import type { Row } from "./parse.js";
import { IGNORE_INDEX, type DatasetFormat, type RowProblem } from "./types.js";

export type DatasetRecord =
  | { format: "completion"; text: string }
  | { format: "instruction"; prompt: string; completion: string }
  | {
      format: "alpaca";
      instruction: string;
      input: string;
      completion: string;
    }
  | { format: "chat"; messages: ChatMessage[] }
  | { format: "classification"; text: string; label: string }
  | { format: "tokens"; inputIds: number[]; labels: number[] | undefined };

const has = (row: Row, field: string) => Object.hasOwn(row, field);

/**
 * The format of a row, from its fields: `input_ids` is tokens; `messages` is chat; `prompt` and `completion`, or
 * `instruction` and `output`, is instruction; `text` and `label` is classification; `text` alone is completion.
 * Other fields are ignored. Throws a FormatError when none fits.
 *
 * @example
 * ```ts
 * detectFormat({ instruction: 'Add 2 and 3.', input: '', output: '5' }); // 'instruction'
 * detectFormat({ text: 'great film', label: 'pos' }); // 'classification'
 * ```
 */
export function detectFormat(
  row: Row,
  formatOption: string | null = "format",
): DatasetFormat {
  if (has(row, "input_ids")) return "tokens";
  if (has(row, "messages")) return "chat";
  if (has(row, "prompt") && has(row, "completion")) return "instruction";
  if (has(row, "instruction") && has(row, "output")) return "instruction";
  if (has(row, "text") && has(row, "label")) return "classification";
  if (has(row, "text")) return "completion";
  throw new FormatError(
    `A row with fields (${Object.keys(row).join(", ") || "none"}) fits no dataset format; expected "text" ` +
      `(completion), "prompt"+"completion" or "instruction"+"input"+"output" (instruction), "messages" (chat), ` +
      `"text"+"label" (classification) or "input_ids" (tokens). Rename the columns${formatOption === null ? "" : `, or pass ${formatOption} explicitly`}.`,
  );
}

/**
 * Reads a row as a record of `format`, or says what is wrong with it. `vocabSize`, when given, bounds the ids of
 * the tokens format: each must be below it.
 */
export function readRecord(
  row: Row,
  format: DatasetFormat,
  vocabSize?: number,
): DatasetRecord | RowProblem {
  try {
    return readOrThrow(row, format, vocabSize);
  } catch (e) {
    if (e instanceof FieldProblem)
      return { message: e.message, field: e.field };
    throw e;
  }
}

class FieldProblem extends Error {
  constructor(
    readonly field: string,
    what: string,
  ) {
    super(`field "${field}" ${what}`);
  }
}

function readOrThrow(
  row: Row,
  format: DatasetFormat,
  vocabSize: number | undefined,
): DatasetRecord {
  switch (format) {
    case "completion":
      return { format, text: text(row, "text") };
    case "instruction":
      if (!has(row, "prompt") && has(row, "instruction")) {
        return {
          format: "alpaca",
          instruction: text(row, "instruction"),
          input:
            has(row, "input") && row["input"] != null ? text(row, "input") : "",
          completion: text(row, "output"),
        };
      }
      return {
        format,
        prompt: text(row, "prompt"),
        completion: text(row, "completion"),
      };
    case "chat":
      return { format, messages: messages(row) };
    case "classification":
      return { format, text: text(row, "text"), label: label(row) };
    case "tokens":
      return tokens(row, vocabSize);
  }
}

function describe(value: unknown): string {
  if (value === undefined) return "is missing";
  if (value === null) return "is null";
  if (Array.isArray(value)) return "is an array";
  return `is a ${typeof value}`;
}

function text(row: Row, field: string): string {
  const value = row[field];
  if (typeof value === "string") return value;
  const hint =
    Array.isArray(value) && field !== "text"
      ? ' (for a list of chat messages, use the chat format\'s "messages")'
      : "";
  throw new FieldProblem(field, `${describe(value)}; expected a string${hint}`);
}

/** Labels are strings; numbers and booleans (as in many Hugging Face datasets) become their text. */
function label(row: Row): string {
  const value = row["label"];
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean")
    return String(value);
  throw new FieldProblem(
    "label",
    `${describe(value)}; expected a string or a number`,
  );
}

/** An array field, which a CSV cell holds as JSON text. */
function array(row: Row, field: string): unknown[] {
  let value = row[field];
  if (typeof value === "string" && value.trimStart().startsWith("[")) {
    try {
      value = JSON.parse(value);
    } catch {
      throw new FieldProblem(field, "is text that is not a valid JSON array");
    }
  }
  if (Array.isArray(value)) return value;
  throw new FieldProblem(field, `${describe(value)}; expected an array`);
}

function messages(row: Row): ChatMessage[] {
  return array(row, "messages").map((m, i) => {
    const at = `messages[${i}]`;
    if (typeof m !== "object" || m === null || Array.isArray(m)) {
      throw new FieldProblem(
        at,
        `${describe(m)}; expected an object with "role" and "content"`,
      );
    }
    const message = m as Record<string, unknown>;
    for (const key of ["role", "content"]) {
      if (typeof message[key] !== "string") {
        throw new FieldProblem(
          `${at}.${key}`,
          `${describe(message[key])}; expected a string`,
        );
      }
    }
    return {
      role: message["role"] as string,
      content: message["content"] as string,
    };
  });
}

function tokens(row: Row, vocabSize: number | undefined): DatasetRecord {
  const inputIds = array(row, "input_ids");
  const vocabulary =
    vocabSize === undefined ? "" : ` below the vocabulary size, ${vocabSize}`;
  const outside = (id: unknown) =>
    vocabSize !== undefined && (id as number) >= vocabSize
      ? `; the model's vocabulary has ${vocabSize} ids (0 to ${vocabSize - 1}), so these ids were made for another model or tokenizer`
      : "";
  inputIds.forEach((id, i) => {
    if (
      !Number.isInteger(id) ||
      (id as number) < 0 ||
      (vocabSize !== undefined && (id as number) >= vocabSize)
    ) {
      throw new FieldProblem(
        `input_ids[${i}]`,
        `is ${JSON.stringify(id)}${outside(id) || `; expected a token id (an integer >= 0${vocabulary})`}`,
      );
    }
  });
  const present = has(row, "labels") && row["labels"] != null;
  const labels = present ? array(row, "labels") : undefined;
  labels?.forEach((id, i) => {
    if (
      !Number.isInteger(id) ||
      ((id as number) < 0 && id !== IGNORE_INDEX) ||
      (vocabSize !== undefined && (id as number) >= vocabSize)
    ) {
      throw new FieldProblem(
        `labels[${i}]`,
        `is ${JSON.stringify(id)}${outside(id) || `; expected a token id${vocabulary} or ${IGNORE_INDEX}`}`,
      );
    }
  });
  if (labels !== undefined && labels.length !== inputIds.length) {
    throw new FieldProblem(
      "labels",
      `has ${labels.length} entries; input_ids has ${inputIds.length}. Give one label per token`,
    );
  }
  return {
    format: "tokens",
    inputIds: inputIds as number[],
    labels: labels as number[] | undefined,
  };
}

/** Whether a record has nothing to train on: blank text, a blank prompt or completion, no assistant answer. */
export function isEmptyRecord(record: DatasetRecord): boolean {
  const blank = (s: string) => s.trim() === "";
  switch (record.format) {
    case "completion":
      return blank(record.text);
    case "instruction":
      return blank(record.prompt) || blank(record.completion);
    case "alpaca":
      return blank(record.instruction) || blank(record.completion);
    case "chat":
      return !record.messages.some(
        (m) => m.role === "assistant" && !blank(m.content),
      );
    case "classification":
      return blank(record.text) || blank(record.label);
    case "tokens":
      return record.inputIds.length === 0;
  }
}
