/**
 * The regular expressions of an adapter config (target_modules and exclude_modules as strings, rank_pattern and
 * alpha_pattern keys, layers_pattern), compiled with RE2 (re2js). RE2 matches in time linear in the name, so a
 * hostile pattern such as `(.*)*X` cannot hang the loader (or the worker) the way a backtracking JavaScript
 * RegExp does. Its syntax is Python's without lookarounds and backreferences; a pattern that uses them, or that
 * is not a regex at all, is a ConfigError naming the field and the pattern.
 */
import { RE2JS } from "re2js";
import { ConfigError } from "../errors.js";

/** Longest pattern compiled: real ones are a few hundred characters; compiling takes time linear in the length. */
export const MAX_PATTERN_CHARS = 10_000;
/** Most regex keys (keys that are not plain module names) one rank_pattern or alpha_pattern may hold. */
export const MAX_REGEX_KEYS = 1_000;

const CACHE_LIMIT = 512;
const cache = new Map<string, RE2JS>();

/** A plain name: letters, digits, "_", "-" and "." (which, in a regex, matches any character). */
const PLAIN = /^[\w.-]*$/;
/** Printable ASCII: one character per code point, and no newline for "." to refuse. */
const ASCII = /^[\x20-\x7e]*$/;

/** Checks one pattern of `field` on its own: a string that RE2 compiles, not too long. */
export function checkPattern(field: string, pattern: unknown): void {
  if (typeof pattern !== "string")
    throw new ConfigError(
      `LoraConfig: ${field} must be a string (a module name or a regex), got ${JSON.stringify(pattern) ?? typeof pattern}.`,
    );
  compiled(field, pattern, pattern);
}

/** Checks every key of a rank_pattern / alpha_pattern map. */
export function checkPatternKeys(field: string, keys: string[]): void {
  const regexKeys = keys.filter((k) => !PLAIN.test(k));
  if (regexKeys.length > MAX_REGEX_KEYS)
    throw new ConfigError(
      `LoraConfig: ${field} has ${regexKeys.length} keys that are regexes rather than module names; webtune ` +
        `compiles at most ${MAX_REGEX_KEYS}. Key it by module names, or merge the regexes with "|".`,
    );
  for (const key of regexKeys) checkPattern(`${field} key`, key);
}

/** Python's re.fullmatch(pattern, name). */
export function fullMatch(
  field: string,
  pattern: string,
  name: string,
): boolean {
  return compiled(field, pattern, pattern).matches(name);
}

/**
 * PEFT's get_pattern_key test, `re.match(rf"(.*\.)?({key})$", name)`: the key matches the end of the name, after
 * a dot or from its start. Plain keys (module names, the common case) are compared without a regex.
 */
export function matchesPatternKey(
  field: string,
  key: string,
  name: string,
): boolean {
  if (PLAIN.test(key) && ASCII.test(name)) return plainSuffix(key, name);
  return compiled(field, key, `(?:.*\\.)?(?:${key})`).matches(name);
}

/** `key` (its "." matching any character) is the whole name or its end after a ".". */
function plainSuffix(key: string, name: string): boolean {
  const start = name.length - key.length;
  if (start < 0 || (start > 0 && name[start - 1] !== ".")) return false;
  for (let i = 0; i < key.length; i++)
    if (key[i] !== "." && key[i] !== name[start + i]) return false;
  return true;
}

/**
 * PEFT's layer index, `re.match(rf".*\.{pattern}\.(\d+)\.", name)`: the number after the last `.<pattern>.` in the
 * name. The pattern is grouped, so that an alternation ("layers|h") or a group of its own keeps the number last.
 */
export function layerIndexAfter(
  field: string,
  pattern: string,
  name: string,
): number | undefined {
  const re = compiled(field, pattern, `.*\\.(?:${pattern})\\.(\\d+)\\.`);
  const m = re.matcher(name);
  if (!m.lookingAt()) return undefined;
  return Number(m.group(re.groupCount()));
}

/** `regex` (which is `pattern`, wrapped) compiled once; `pattern` is checked on its own first. */
function compiled(field: string, pattern: string, regex: string): RE2JS {
  const hit = cache.get(regex);
  if (hit) return hit;
  if (pattern.length > MAX_PATTERN_CHARS)
    throw new ConfigError(
      `LoraConfig: ${field} ${shown(pattern)} is ${pattern.length} characters long; webtune compiles patterns of ` +
        `at most ${MAX_PATTERN_CHARS}. List module names instead.`,
    );
  let re: RE2JS;
  try {
    // Alone first, so that a pattern cannot close the group it is wrapped in ("a)|(b").
    if (regex !== pattern) RE2JS.compile(pattern);
    re = RE2JS.compile(regex);
  } catch (cause) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    throw new ConfigError(
      `LoraConfig: ${field} ${shown(pattern)} is not a regex webtune can match (${reason}). Patterns use RE2 ` +
        `syntax: Python's, without lookarounds ("(?=", "(?!", "(?<=") or backreferences ("\\1"), so that matching ` +
        `takes linear time. Fix the pattern or list the module names.`,
      { cause },
    );
  }
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(regex, re);
  return re;
}

function shown(pattern: string): string {
  return JSON.stringify(
    pattern.length > 80 ? `${pattern.slice(0, 80)}...` : pattern,
  );
}
