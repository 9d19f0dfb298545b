/**
 * Cleaning: every row is kept or dropped for one counted reason, checked in this order: malformed (cannot be read
 * or tokenized), empty (nothing to train on), duplicate (the same record as an earlier row, compared on the fields
 * its format reads), too long (more than `maxLength` tokens; or, with `truncate`, cut to `maxLength` and kept when
 * some loss tokens remain).
 */
import { FormatError } from "../../errors.js";
import type { Rendered } from "./render.js";
import {
  IGNORE_INDEX,
  rowError,
  type CleaningReport,
  type DropReason,
  type DroppedRow,
  type Example,
  type OnError,
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
      throw rowError(this.options.source, line, problem, cause);
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
    this.keep(line, rendered);
  }

  private keep(line: number, rendered: Rendered): void {
    const hasLoss = (labels: number[]) =>
      labels.some((l) => l !== IGNORE_INDEX);
    if (!hasLoss(rendered.labels)) {
      return this.drop(line, "empty", "no token carries loss");
    }
    let { inputIds, labels } = rendered;
    const { maxLength, truncate } = this.options;
    if (maxLength !== undefined && inputIds.length > maxLength) {
      const over = `${inputIds.length} tokens; maxLength is ${maxLength}`;
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
    this.examples.push({ ...rendered, inputIds, labels, line });
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
