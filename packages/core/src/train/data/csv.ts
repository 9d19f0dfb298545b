/**
 * An RFC 4180 CSV reader that keeps line numbers: fields separated by a delimiter (default `,`), records by `\r\n`,
 * `\n` or `\r`; a field in double quotes may hold delimiters, line breaks and `""` (one quote). As in Python's csv
 * module, a quote inside an unquoted field is kept as text. Blank lines are skipped. A record whose quoted field is
 * never closed, or has text after its closing quote, is reported as a failure, and reading goes on after it.
 */

/** One record: its fields and the lines it spans (1-based; a quoted line break makes a record span several). */
export interface CsvRecord {
  ok: true;
  line: number;
  lastLine: number;
  fields: string[];
}

/** A record that could not be read, and why. */
export interface CsvFailure {
  ok: false;
  line: number;
  lastLine: number;
  message: string;
}

/** Reads the records of CSV text, in order. */
export function* csvRecords(
  text: string,
  delimiter = ",",
): Generator<CsvRecord | CsvFailure> {
  const reader = new CsvReader(text, delimiter);
  while (!reader.done()) {
    const record = reader.next();
    if (record !== undefined) yield record;
  }
}

class CsvReader {
  private i = 0;
  private line = 1;

  constructor(
    private readonly text: string,
    private readonly delimiter: string,
  ) {}

  done(): boolean {
    return this.i >= this.text.length;
  }

  /** The next record, or undefined for a blank line. */
  next(): CsvRecord | CsvFailure | undefined {
    const line = this.line;
    const fields: string[] = [];
    let quoted = false;
    for (;;) {
      const isQuoted = this.text[this.i] === '"';
      quoted ||= isQuoted;
      const field = isQuoted ? this.quotedField() : this.plainField();
      if (typeof field !== "string") {
        const message = `${field.error} (field ${fields.length + 1})`;
        return { ok: false, line, lastLine: this.line, message };
      }
      fields.push(field);
      if (this.text[this.i] !== this.delimiter) break;
      this.i++;
    }
    const lastLine = this.line;
    this.endOfLine();
    const blank = !quoted && fields.length === 1 && fields[0]!.trim() === "";
    return blank ? undefined : { ok: true, line, lastLine, fields };
  }

  private plainField(): string {
    const start = this.i;
    while (this.i < this.text.length && !this.atFieldEnd()) this.i++;
    return this.text.slice(start, this.i);
  }

  private quotedField(): string | { error: string } {
    const openedOn = this.line;
    let value = "";
    this.i++; // the opening quote
    for (;;) {
      if (this.i >= this.text.length) {
        return {
          error: `a quoted field opened on line ${openedOn} is never closed; check for a missing '"'`,
        };
      }
      const c = this.text[this.i]!;
      if (c === '"') {
        if (this.text[this.i + 1] === '"') {
          value += '"';
          this.i += 2;
          continue;
        }
        this.i++; // the closing quote
        break;
      }
      if (c === "\n" || (c === "\r" && this.text[this.i + 1] !== "\n")) {
        this.line++;
      }
      value += c;
      this.i++;
    }
    if (this.i < this.text.length && !this.atFieldEnd()) {
      this.skipRestOfLine();
      return {
        error:
          'text follows the closing quote of a quoted field; a quote inside a quoted field must be doubled ("")',
      };
    }
    return value;
  }

  private atFieldEnd(): boolean {
    const c = this.text[this.i];
    return c === this.delimiter || c === "\n" || c === "\r";
  }

  private skipRestOfLine(): void {
    while (this.i < this.text.length && !/[\r\n]/.test(this.text[this.i]!)) {
      this.i++;
    }
    this.endOfLine();
  }

  /** Steps over one line break (`\r\n`, `\n` or `\r`), if there is one. */
  private endOfLine(): void {
    const c = this.text[this.i];
    if (c === "\r") {
      this.i += this.text[this.i + 1] === "\n" ? 2 : 1;
      this.line++;
    } else if (c === "\n") {
      this.i++;
      this.line++;
    }
  }
}
