/**
 * What a stream may send of a continuation while it is still being generated. Text that could turn out to be the
 * start of a stop string is held back until the next tokens settle it: were "\n\n" a stop string, a trailing "\n"
 * might be its first half, and a client must never receive text that the finished answer does not contain.
 */

/**
 * The length of the prefix of `text` that is safe to send now. `text` is the continuation decoded so far, already
 * cut before any complete stop string (core's generate does that). Held back: the longest suffix that is a proper
 * prefix of a stop string, and trailing U+FFFD, which is how a multi-byte character split across tokens decodes
 * until its last byte arrives.
 */
export function sendableLength(text: string, stops: readonly string[]): number {
  let end = text.length;
  while (end > 0 && text[end - 1] === "\uFFFD") end--;
  let held = 0;
  for (const stop of stops) {
    for (let k = Math.min(stop.length - 1, text.length); k > held; k--) {
      if (text.endsWith(stop.slice(0, k))) {
        held = k;
        break;
      }
    }
  }
  return Math.min(end, text.length - held);
}

/**
 * The deltas of one streamed continuation: `next` with each new decoded text gives what to send now, `finish`
 * with the final text gives the rest. The deltas concatenated equal the final text.
 */
export class StreamedText {
  private sent = "";

  constructor(private readonly stops: readonly string[]) {}

  /** The new text that is safe to send, given the continuation decoded so far ("" when there is none). */
  next(text: string): string {
    // Decoding more tokens only appends, except for the held-back U+FFFD; if an earlier piece ever decoded
    // differently, wait until the text agrees with what was sent again.
    if (!text.startsWith(this.sent)) return "";
    const end = sendableLength(text, this.stops);
    if (end <= this.sent.length) return "";
    const delta = text.slice(this.sent.length, end);
    this.sent = text.slice(0, end);
    return delta;
  }

  /** Everything not sent yet, once generation has ended with `text` (cut before any stop string). */
  finish(text: string): string {
    if (!text.startsWith(this.sent)) return "";
    const delta = text.slice(this.sent.length);
    this.sent = text;
    return delta;
  }
}
