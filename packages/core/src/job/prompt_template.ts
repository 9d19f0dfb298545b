/**
 * An instruction dataset's prompt template: the text every training prompt shares before and after the part
 * that varies ("Date: {input}\nWritten out:"), so that a user who types only the input gets the prompt the
 * adapter was trained on.
 */

/** Where the input goes in a template. */
export const INPUT = "{input}";

/**
 * The template the prompts share, or null when they share nothing around a varying middle (or are too few to
 * tell). The shared prefix ends, and the shared suffix starts, at whitespace, so that an input's common first
 * digits ("19" of 1911 and 1980) stay the input's.
 */
export function derivePromptTemplate(prompts: string[]): string | null {
  if (prompts.length < 2) return null;
  const shortest = Math.min(...prompts.map((p) => p.length));
  let prefix = 0;
  while (
    prefix < shortest &&
    prompts.every((p) => p[prefix] === prompts[0]![prefix])
  )
    prefix++;
  let suffix = 0;
  const last = (p: string) => p[p.length - 1 - suffix];
  while (
    suffix < shortest - prefix &&
    prompts.every((p) => last(p) === last(prompts[0]!))
  )
    suffix++;
  const first = prompts[0]!;
  let head = first.slice(0, prefix);
  head = head.slice(
    0,
    Math.max(...[" ", "\n", "\t"].map((w) => head.lastIndexOf(w))) + 1,
  );
  let tail = first.slice(first.length - suffix);
  const cut = Math.min(
    ...[" ", "\n", "\t"].map((w) =>
      tail.includes(w) ? tail.indexOf(w) : tail.length,
    ),
  );
  tail = tail.slice(cut);
  if (head.trim() === "" && tail.trim() === "") return null;
  return `${head}${INPUT}${tail}`;
}

/** The prompt for `input`. */
export function applyPromptTemplate(template: string, input: string): string {
  return template.replace(INPUT, input);
}

/** Whether `prompt` is already in the template's shape (starts and ends as it does). */
export function fitsPromptTemplate(template: string, prompt: string): boolean {
  const [head, tail] = template.split(INPUT) as [string, string];
  return (
    prompt.length >= head.length + tail.length &&
    prompt.startsWith(head) &&
    prompt.endsWith(tail)
  );
}
