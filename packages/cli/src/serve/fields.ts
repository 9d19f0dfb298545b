/**
 * Reading one field of a JSON request body, with OpenAI's rules: `null` means "not given", a wrong type or a value
 * out of range is a 400 that names the field (in the message and in `param`).
 */
import { badField } from "./errors.js";

/** A request body: a JSON object. */
export type Body = Record<string, unknown>;

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") return `the string ${JSON.stringify(value)}`;
  if (typeof value === "object") return "an object";
  return `${typeof value} ${String(value)}`;
}

/** The body itself, which must be a JSON object. */
export function asBody(value: unknown): Body {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw badField(
      "body",
      `The request body must be a JSON object, got ${describe(value)}.`,
      "invalid_type",
    );
  return value as Body;
}

/** Refuses fields the endpoint does not know, as OpenAI does, rather than ignoring what a client asked for. */
export function refuseUnknownFields(
  body: Body,
  known: readonly string[],
): void {
  for (const name of Object.keys(body))
    if (!known.includes(name))
      throw badField(
        name,
        `Unrecognized request argument supplied: ${name}. This endpoint accepts ${known.join(", ")}.`,
        "unknown_parameter",
      );
}

export function requiredString(body: Body, name: string): string {
  const value = body[name];
  if (value === undefined || value === null)
    throw badField(
      name,
      `Missing required parameter: '${name}'.`,
      "invalid_type",
    );
  if (typeof value !== "string")
    throw badField(
      name,
      `'${name}' must be a string, got ${describe(value)}.`,
      "invalid_type",
    );
  return value;
}

export function optionalBoolean(body: Body, name: string): boolean | undefined {
  const value = body[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "boolean")
    throw badField(
      name,
      `'${name}' must be true or false, got ${describe(value)}.`,
      "invalid_type",
    );
  return value;
}

/** A number in [min, max] (an integer when `integer`), or undefined when absent or null. */
export function optionalNumber(
  body: Body,
  name: string,
  range: { min?: number; max?: number; integer?: boolean },
): number | undefined {
  const value = body[name];
  if (value === undefined || value === null) return undefined;
  const kind = range.integer ? "an integer" : "a number";
  if (
    typeof value !== "number" ||
    !Number.isFinite(value) ||
    (range.integer && !Number.isSafeInteger(value))
  )
    throw badField(
      name,
      `'${name}' must be ${kind}, got ${describe(value)}.`,
      "invalid_type",
    );
  const { min = -Infinity, max = Infinity } = range;
  if (value < min || value > max) {
    const bounds = max === Infinity ? `>= ${min}` : `between ${min} and ${max}`;
    throw badField(name, `'${name}' must be ${kind} ${bounds}, got ${value}.`);
  }
  return value;
}

/** OpenAI's stop: a string or up to 4 strings. Empty strings match nothing and are dropped. */
export function optionalStop(body: Body, name = "stop"): string[] {
  const value = body[name];
  if (value === undefined || value === null) return [];
  const list = typeof value === "string" ? [value] : value;
  if (!Array.isArray(list) || list.some((s) => typeof s !== "string"))
    throw badField(
      name,
      `'${name}' must be a string or an array of up to 4 strings, got ${describe(value)}.`,
      "invalid_type",
    );
  if (list.length > 4)
    throw badField(
      name,
      `'${name}' holds ${list.length} strings; at most 4 are allowed.`,
    );
  return (list as string[]).filter((s) => s.length > 0);
}

/**
 * Refuses a field set to anything but its default: options the server does not implement are an error, never
 * silently ignored. `isDefault` says which values mean "off".
 */
export function refuseUnlessDefault(
  body: Body,
  name: string,
  isDefault: (value: unknown) => boolean,
  why: string,
): void {
  const value = body[name];
  if (value === undefined || value === null || isDefault(value)) return;
  throw badField(
    name,
    `'${name}' = ${JSON.stringify(value)} is not supported: ${why}`,
  );
}
