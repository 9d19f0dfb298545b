/**
 * Cleaning: every row is kept or dropped for one counted reason, checked in this order: malformed (cannot be read
 * or tokenized), empty (nothing to train on), duplicate (the same record as an earlier row, compared on the fields
 * its format reads), too long (more than `maxLength` tokens; or, with `truncate`, cut to `maxLength` and kept when
 * some loss tokens remain).
 */
import { FormatError } from "../../errors.js";
import { keyDigest } from "../../hash.js";
import type { Rendered } from "./render.js";
import {
  IGNORE_INDEX,
  rowError,
  type CleaningReport,
  type DropReason,
  type DroppedRow,
  type Example,
  type OnError,
  type OptionNames,
  type RowProblem,
} from "./types.js";

export interface CleaningOptions {
  source: string;
  onError: OnError;
  /** Longest example in tokens; none when undefined. */
  maxLength: number | undefined;
  /** Cut examples over `maxLength` (keeping the start) instead of dropping them. */
  truncate: boolean;
  /** Drop exact duplicates. */
  dedupe: boolean;
  /** The model's vocabulary size: a rendered token id at or above it makes the row malformed. */
  vocabSize?: number;
  /** How messages name the options a user can change. Default: the API's names. */
  names?: OptionNames;
}

const MAX_LISTED = 1000;

/** Collects kept examples and the report. */
export class Cleaner {
  readonly examples: Example[] = [];
  private readonly seen = new Set<string>();
  private readonly dropped: Record<DropReason, number> = {
    empty: 0,
    duplicate: 0,
    tooLong: 0,
    malformed: 0,
  };
  private readonly rows: DroppedRow[] = [];
  private truncated = 0;

  constructor(private readonly options: CleaningOptions) {}

  /** A row that was skipped while parsing. */
  skipped(row: DroppedRow): void {
    this.drop(row.line, row.reason, row.message);
  }

  /** A row that does not fit its format: thrown or counted, by `onError`. */
  malformed(line: number, problem: RowProblem, cause?: unknown): void {
    if (this.options.onError === "throw") {
      throw rowError(
        this.options.source,
        line,
        problem,
        cause,
        this.options.names?.skip,
      );
    }
    this.drop(line, "malformed", problem.message);
  }

  /**
   * Offers one row: `key` identifies its content for deduplication, `render` tokenizes it (its FormatError makes the
   * row malformed).
   */
  offer(
    line: number,
    key: string,
    empty: boolean,
    render: () => Rendered,
  ): void {
    if (empty) return this.drop(line, "empty", "nothing to train on");
    if (this.options.dedupe && this.seen.has(key)) {
      return this.drop(line, "duplicate", "the same as an earlier row");
    }
    this.seen.add(key);
    let rendered: Rendered;
    try {
      rendered = render();
    } catch (e) {
      if (!(e instanceof FormatError)) throw e;
      return this.malformed(line, { message: e.message }, e);
    }
    const outside = this.outsideVocabulary(rendered.inputIds);
    if (outside) return this.malformed(line, { message: outside });
    this.keep(line, key, rendered);
  }

  /** What is wrong when the tokenizer gave an id that the model has no embedding for. */
  private outsideVocabulary(ids: number[]): string | undefined {
    const V = this.options.vocabSize;
    if (V === undefined) return undefined;
    const at = ids.findIndex((id) => id >= V);
    if (at < 0) return undefined;
    return (
      `token ${at} has id ${ids[at]}, outside the model's vocabulary of ${V} ids (0 to ${V - 1}); the ` +
      "tokenizer does not match the model"
    );
  }

  private keep(line: number, key: string, rendered: Rendered): void {
    const hasLoss = (labels: number[]) =>
      labels.some((l) => l !== IGNORE_INDEX);
    if (!hasLoss(rendered.labels)) {
      return this.drop(line, "empty", "no token carries loss");
    }
    let { inputIds, labels } = rendered;
    const { maxLength, truncate } = this.options;
    if (maxLength !== undefined && inputIds.length > maxLength) {
      const name = this.options.names?.maxLength ?? "maxLength";
      const over = `${inputIds.length} tokens; ${name} is ${maxLength}`;
      if (!truncate) return this.drop(line, "tooLong", over);
      inputIds = inputIds.slice(0, maxLength);
      labels = labels.slice(0, maxLength);
      if (!hasLoss(labels)) {
        return this.drop(
          line,
          "tooLong",
          `${over}, and the prompt alone fills it`,
        );
      }
      this.truncated++;
    }
    this.examples.push({
      ...rendered,
      inputIds,
      labels,
      line,
      key: keyDigest(key),
    });
  }

  private drop(line: number, reason: DropReason, message: string): void {
    this.dropped[reason]++;
    if (this.rows.length < MAX_LISTED)
      this.rows.push({ line, reason, message });
  }

  report(): CleaningReport {
    const dropped = { ...this.dropped };
    const kept = this.examples.length;
    const total = kept + Object.values(dropped).reduce((a, b) => a + b, 0);
    return {
      total,
      kept,
      dropped,
      truncated: this.truncated,
      rows: [...this.rows].sort((a, b) => a.line - b.line),
    };
  }
}
