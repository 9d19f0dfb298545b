/**
 * Fuzzing the safetensors reader (open, then info / read / readUint16 / readBytes / checkFinite of every tensor):
 * random bytes, generated headers (wrong dtypes, odd shapes, huge, negative, reversed and overlapping offsets,
 * prototype names such as "__proto__", repeated keys, bad metadata) and byte-level mutations of valid files. Every
 * input opens and reads, or is refused with a WebtuneError; never a TypeError, RangeError or a hang.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FormatError } from "../../../packages/core/src/errors.js";
import {
  DTYPE_BITS,
  READABLE_DTYPES,
} from "../../../packages/core/src/io/dtypes.js";
import {
  checkFinite,
  openSafetensors,
  writeSafetensors,
} from "../../../packages/core/src/io/safetensors.js";
import { fuzzParameters, Outcomes } from "./fuzz.js";

const DTYPES = Object.keys(DTYPE_BITS);
const PROTOTYPE_NAMES = [
  "__proto__",
  "constructor",
  "toString",
  "hasOwnProperty",
  "valueOf",
];

/** Opens the bytes and reads every tensor every way the reader offers. */
async function openAndReadAll(bytes: Uint8Array): Promise<void> {
  const file = await openSafetensors(bytes);
  for (const name of file.names) {
    const info = await file.info(name);
    await file.readBytes(name);
    if (info.dtype === "F16" || info.dtype === "BF16")
      await file.readUint16(name);
    if (READABLE_DTYPES.includes(info.dtype)) {
      checkFinite(await file.read(name), "fuzz.safetensors");
    } else {
      // Not convertible: refused by name, and the rest of the file still reads.
      await file.read(name).then(
        () => Promise.reject(new Error(`read() converted ${info.dtype}`)),
        (e: unknown) => expect(e).toBeInstanceOf(FormatError),
      );
    }
  }
}

/** A file: 8-byte little-endian length (as given, or the header's), the header text, then the data bytes. */
function fileOf(header: string, data: Uint8Array, length?: bigint): Uint8Array {
  const json = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, length ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

const nameArb = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom("w", "a.b", "lm_head.weight", "x") },
  { weight: 2, arbitrary: fc.constantFrom(...PROTOTYPE_NAMES, "__metadata__") },
  { weight: 1, arbitrary: fc.string({ maxLength: 6, unit: "binary" }) },
);

const entryArb = fc.record({
  name: nameArb,
  dtype: fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...DTYPES) },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
  ),
  shape: fc.oneof(
    { weight: 8, arbitrary: fc.array(fc.nat(5), { maxLength: 3 }) },
    {
      weight: 1,
      arbitrary: fc.array(
        fc.constantFrom(-1, 0.5, 2 ** 31, 2 ** 53, 2 ** 64, 1e300, -0),
        { maxLength: 3 },
      ),
    },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  ),
  layout: fc.oneof(
    { weight: 12, arbitrary: fc.constant("exact") },
    fc.constantFrom(
      "overlap",
      "gap",
      "reversed",
      "huge",
      "past-end",
      "negative",
      "random",
    ),
  ),
  delta: fc.integer({ min: 1, max: 16 }),
  random: fc.jsonValue({ maxDepth: 2 }),
  /** Extra fields written after the three, repeating one of them or not. */
  extra: fc.oneof(
    { weight: 4, arbitrary: fc.constant([] as [string, unknown][]) },
    fc.array(
      fc.tuple(
        fc.constantFrom("dtype", "shape", "data_offsets", "other"),
        fc.jsonValue({ maxDepth: 1 }),
      ),
      { maxLength: 2 },
    ),
  ),
});

/** A header (as text, so keys can repeat) and the data length its "exact" tensors need. */
function headerText(
  entries: (typeof entryArb extends fc.Arbitrary<infer E> ? E : never)[],
  metadata: unknown,
): { text: string; dataLength: number } {
  let cursor = 0;
  const parts: string[] = [];
  if (metadata !== undefined)
    parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  for (const e of entries) {
    const dims = Array.isArray(e.shape) ? (e.shape as unknown[]) : [];
    const elements = dims.reduce<number>(
      (n, d) => n * (typeof d === "number" ? d : 1),
      1,
    );
    const bits = Object.hasOwn(DTYPE_BITS, String(e.dtype))
      ? DTYPE_BITS[e.dtype as keyof typeof DTYPE_BITS]
      : 8;
    const bytes = Number.isSafeInteger(elements)
      ? Math.ceil((elements * bits) / 8)
      : e.delta;
    const offsets: unknown = {
      exact: [cursor, cursor + bytes],
      overlap: [Math.max(0, cursor - e.delta), cursor - e.delta + bytes],
      gap: [cursor + e.delta, cursor + e.delta + bytes],
      reversed: [cursor + bytes + e.delta, cursor],
      huge: [2 ** 53 - e.delta, 2 ** 53 - e.delta + bytes],
      "past-end": [cursor, cursor + bytes + 1000],
      negative: [-e.delta, bytes - e.delta],
      random: e.random,
    }[e.layout];
    if (e.layout === "exact" || e.layout === "gap")
      cursor = (offsets as number[])[1]!;
    const fields = [
      `"dtype":${JSON.stringify(e.dtype)}`,
      `"shape":${JSON.stringify(e.shape)}`,
      `"data_offsets":${JSON.stringify(offsets)}`,
      ...(e.extra as [string, unknown][]).map(
        ([k, v]) => `"${k}":${JSON.stringify(v)}`,
      ),
    ];
    parts.push(`${JSON.stringify(e.name)}:{${fields.join(",")}}`);
  }
  return { text: `{${parts.join(",")}}`, dataLength: cursor };
}

describe("fuzz: safetensors", () => {
  it("random bytes, with and without a plausible header length", async () => {
    const outcomes = new Outcomes();
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 300 }),
        fc.option(fc.nat(400)),
        async (bytes, length) => {
          const input =
            length === null
              ? bytes
              : fileOf(
                  new TextDecoder().decode(bytes),
                  new Uint8Array(0),
                  BigInt(length),
                );
          await outcomes.check(() => openAndReadAll(input));
        },
      ),
      fuzzParameters(1000, 1),
    );
    expect(outcomes.refused).toBeGreaterThan(outcomes.total / 5);
  });

  it("generated headers: wrong dtypes and shapes, bad offsets, prototype names, repeated keys", async () => {
    const outcomes = new Outcomes();
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          {
            weight: 4,
            arbitrary: fc.uniqueArray(entryArb, {
              selector: (e) => e.name,
              maxLength: 4,
            }),
          },
          fc.array(entryArb, { maxLength: 4 }),
        ),
        fc.oneof(
          { weight: 3, arbitrary: fc.constant(undefined) },
          {
            weight: 2,
            arbitrary: fc.dictionary(
              fc.constantFrom("format", ...PROTOTYPE_NAMES),
              fc.string(),
            ),
          },
          fc.jsonValue({ maxDepth: 2 }),
        ),
        fc.oneof(
          { weight: 4, arbitrary: fc.integer({ min: 0, max: 8 }) },
          fc.integer({ min: -4, max: -1 }),
        ),
        fc.oneof(
          { weight: 8, arbitrary: fc.constant("exact") },
          fc.constantFrom("short", "huge"),
        ),
        fc.uint8Array({ minLength: 64, maxLength: 64 }),
        async (entries, metadata, slack, lengthMode, noise) => {
          const { text, dataLength } = headerText(entries, metadata);
          // Capped: a header may ask for gigabytes, and the reader must refuse the short file, not the test allocate.
          const data = new Uint8Array(
            Math.min(4096, Math.max(0, dataLength + slack)),
          );
          for (let i = 0; i < data.length; i++) data[i] = noise[i % 64]!;
          const json = new TextEncoder().encode(text).length;
          const length = {
            exact: undefined,
            short: BigInt(Math.max(0, json - 1)),
            huge: 2n ** 63n + BigInt(json),
          }[lengthMode];
          await outcomes.check(() =>
            openAndReadAll(fileOf(text, data, length)),
          );
        },
      ),
      fuzzParameters(1500, 2),
    );
    // The generator reaches both sides: valid files that read, and each kind of refusal.
    expect(outcomes.parsed).toBeGreaterThan(outcomes.total / 20);
    expect(outcomes.refused).toBeGreaterThan(outcomes.total / 5);
  });

  it("byte-level mutations of valid files", async () => {
    const valid = writeSafetensors(
      {
        "base_model.model.q.lora_A.weight": {
          dtype: "F32",
          shape: [2, 3],
          data: new Float32Array([1, -2, 3, 0.5, 0, -0]),
        },
        half: {
          dtype: "F16",
          shape: [3],
          data: new Float32Array([1, 2, 65504]),
        },
        brain: { dtype: "BF16", shape: [2], data: new Float32Array([1, -1]) },
        ids: { dtype: "I64", shape: [2], data: new Int32Array([7, -7]) },
        mask: { dtype: "U8", shape: [4], data: new Uint8Array([0, 1, 2, 255]) },
      },
      { format: "pt" },
    );
    const headerEnd =
      8 + Number(new DataView(valid.buffer).getBigUint64(0, true));
    const mutation = fc.oneof(
      fc.record({
        op: fc.constant("set" as const),
        at: fc.nat(headerEnd + 8),
        byte: fc.oneof(
          fc.constantFrom(
            ...new TextEncoder().encode('{}[],:"\\0123456789-e.'),
          ),
          fc.nat(255),
        ),
      }),
      {
        // In the data: the header still holds, and the values become NaN, Inf or out-of-range I64s.
        weight: 3,
        arbitrary: fc.record({
          op: fc.constant("set" as const),
          at: fc.integer({ min: headerEnd, max: valid.length - 1 }),
          byte: fc.constantFrom(0x7f, 0x80, 0xff, 0x7c, 0xfc, 0xc0, 0),
        }),
      },
      fc.record({
        op: fc.constant("truncate" as const),
        at: fc.nat(valid.length),
      }),
      fc.record({
        op: fc.constant("insert" as const),
        at: fc.nat(valid.length),
        bytes: fc.uint8Array({ maxLength: 8 }),
      }),
      fc.record({
        op: fc.constant("length" as const),
        value: fc.oneof(
          fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
          fc
            .integer({ min: -8, max: 8 })
            .map((d) => BigInt(Math.max(0, headerEnd - 8 + d))),
        ),
      }),
    );
    const outcomes = new Outcomes();
    await fc.assert(
      fc.asyncProperty(
        fc.array(mutation, { minLength: 1, maxLength: 4 }),
        async (mutations) => {
          let bytes: Uint8Array = valid.slice();
          for (const m of mutations) {
            if (m.op === "set") {
              if (m.at < bytes.length) bytes[m.at] = m.byte;
            } else if (m.op === "truncate") bytes = bytes.slice(0, m.at);
            else if (m.op === "insert") {
              const at = Math.min(m.at, bytes.length);
              const out = new Uint8Array(bytes.length + m.bytes.length);
              out.set(bytes.subarray(0, at));
              out.set(m.bytes, at);
              out.set(bytes.subarray(at), at + m.bytes.length);
              bytes = out;
            } else if (bytes.length >= 8)
              new DataView(bytes.buffer, bytes.byteOffset).setBigUint64(
                0,
                m.value,
                true,
              );
          }
          await outcomes.check(() => openAndReadAll(bytes));
        },
      ),
      fuzzParameters(1500, 3),
    );
    expect(outcomes.parsed).toBeGreaterThan(outcomes.total / 20);
    expect(outcomes.refused).toBeGreaterThan(outcomes.total / 5);
  });

  it("regressions the fuzz found", async () => {
    const outcomes = new Outcomes();
    // A shape nested 50k deep: printing it for the message overflowed the stack (RangeError).
    const deep = `${"[".repeat(50_000)}${"]".repeat(50_000)}`;
    await outcomes.check(() =>
      openAndReadAll(
        fileOf(
          `{"t":{"dtype":"F32","shape":${deep},"data_offsets":[0,4]}}`,
          new Uint8Array(4),
        ),
      ),
    );
    expect(outcomes.refused).toBe(1);
  });
});
