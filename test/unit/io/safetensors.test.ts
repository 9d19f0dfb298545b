/**
 * safetensors round trips: every dtype written then read, metadata, the writer's layout, and reading one
 * tensor at a time from memory, a Blob, a Node file and HTTP Range requests.
 */
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FormatError } from "../../../packages/core/src/errors.js";
import {
  blobSource,
  bytesSource,
  httpByteSource,
  nodeFileSource,
  openSafetensors,
  writeSafetensors,
  type ByteSource,
  type TensorToWrite,
} from "../../../packages/core/src/io/index.js";
import { startHubServer, type HubServer } from "../../helpers/hub_server.js";

/** One tensor of every dtype webtune reads, with what read() must return. */
const CASES: Record<
  string,
  { write: TensorToWrite; expected: ArrayLike<number> }
> = {
  f32: {
    write: {
      dtype: "F32",
      shape: [2, 3],
      data: Float32Array.from([1, -2.5, 0.1, 1e30, -0, 3]),
    },
    expected: Float32Array.from([1, -2.5, 0.1, 1e30, -0, 3]),
  },
  f16: {
    // Raw f16 bits: 1, -2.5, 65504, smallest subnormal, infinity.
    write: {
      dtype: "F16",
      shape: [5],
      data: Uint16Array.from([0x3c00, 0xc100, 0x7bff, 0x0001, 0x7c00]),
    },
    expected: [1, -2.5, 65504, 2 ** -24, Infinity],
  },
  f16FromF32: {
    write: {
      dtype: "F16",
      shape: [2, 2],
      data: Float32Array.from([1, -2.5, 65504, 1e6]),
    },
    expected: [1, -2.5, 65504, Infinity],
  },
  bf16: {
    write: {
      dtype: "BF16",
      shape: [4],
      data: Uint16Array.from([0x3f80, 0xc020, 0x0001, 0xff80]),
    },
    expected: [1, -2.5, 2 ** -133, -Infinity],
  },
  i32: {
    write: {
      dtype: "I32",
      shape: [3],
      data: Int32Array.from([0, -1, 2 ** 31 - 1]),
    },
    expected: [0, -1, 2 ** 31 - 1],
  },
  i64: {
    write: {
      dtype: "I64",
      shape: [4],
      data: BigInt64Array.from([0n, -1n, 2n ** 31n - 1n, -(2n ** 31n)]),
    },
    expected: [0, -1, 2 ** 31 - 1, -(2 ** 31)],
  },
  i64FromI32: {
    write: { dtype: "I64", shape: [2], data: Int32Array.from([7, -7]) },
    expected: [7, -7],
  },
  u8: {
    write: { dtype: "U8", shape: [3], data: Uint8Array.from([0, 128, 255]) },
    expected: [0, 128, 255],
  },
  bool: {
    write: { dtype: "BOOL", shape: [2, 1], data: Uint8Array.from([1, 0]) },
    expected: [1, 0],
  },
  empty: {
    write: { dtype: "F32", shape: [0, 4], data: new Float32Array(0) },
    expected: [],
  },
  scalar: {
    write: { dtype: "F32", shape: [], data: Float32Array.from([42]) },
    expected: [42],
  },
};

const EXPECTED_TYPE = {
  F32: Float32Array,
  F16: Float32Array,
  BF16: Float32Array,
  I32: Int32Array,
  I64: Int32Array,
  U8: Uint8Array,
  BOOL: Uint8Array,
} as const;

describe("safetensors round trip", () => {
  it("reads back every dtype it writes, converted to the documented typed array", async () => {
    const file = await openSafetensors(
      writeSafetensors(
        Object.fromEntries(Object.entries(CASES).map(([k, c]) => [k, c.write])),
      ),
    );
    expect([...file.names].sort()).toEqual(Object.keys(CASES).sort());
    for (const [name, { write, expected }] of Object.entries(CASES)) {
      const tensor = await file.read(name);
      expect(tensor.dtype, name).toBe(write.dtype);
      expect(tensor.shape, name).toEqual(write.shape);
      expect(tensor.data, name).toBeInstanceOf(
        EXPECTED_TYPE[write.dtype as keyof typeof EXPECTED_TYPE],
      );
      expect(Array.from(tensor.data), name).toEqual(Array.from(expected));
    }
    expect(Object.is((await file.read("f32")).data[4], -0)).toBe(true);
  });

  it("reads F16 and BF16 as raw 16-bit patterns for half-precision storage", async () => {
    const file = await openSafetensors(
      writeSafetensors({
        f16: CASES["f16"]!.write,
        bf16: CASES["bf16"]!.write,
      }),
    );
    expect(Array.from(await file.readUint16("f16"))).toEqual([
      0x3c00, 0xc100, 0x7bff, 0x0001, 0x7c00,
    ]);
    expect(Array.from(await file.readUint16("bf16"))).toEqual([
      0x3f80, 0xc020, 0x0001, 0xff80,
    ]);
  });

  it("keeps F16 NaN a NaN", async () => {
    const file = await openSafetensors(
      writeSafetensors({
        x: { dtype: "F16", shape: [1], data: Uint16Array.from([0x7e00]) },
      }),
    );
    expect((await file.read("x")).data[0]).toBeNaN();
  });

  it("keeps __metadata__ and exposes it", async () => {
    const file = await openSafetensors(
      writeSafetensors(
        { a: CASES["u8"]!.write },
        { format: "pt", note: "ünïcode" },
      ),
    );
    expect(file.metadata).toEqual({ format: "pt", note: "ünïcode" });
    const none = await openSafetensors(
      writeSafetensors({ a: CASES["u8"]!.write }),
    );
    expect(none.metadata).toEqual({});
  });

  it("lists dtypes it cannot convert and reads them only as raw bytes", async () => {
    const f64 = Float64Array.from([1.5, -2]);
    const file = await openSafetensors(
      writeSafetensors({
        w: { dtype: "F64", shape: [2], data: f64 },
        f8: { dtype: "F8_E4M3", shape: [3], data: Uint8Array.from([1, 2, 3]) },
      }),
    );
    expect((await file.info("w")).dtype).toBe("F64");
    expect(new Float64Array((await file.readBytes("w")).buffer)).toEqual(f64);
    await expect(file.read("w")).rejects.toThrow(FormatError);
    await expect(file.read("w")).rejects.toThrow(
      /Tensor "w" in <memory> has dtype F64, which webtune cannot load; it reads F32, F16, BF16, I32, I64, U8, BOOL/,
    );
    await expect(file.read("f8")).rejects.toThrow(/"f8" .* dtype F8_E4M3/);
    await expect(file.readUint16("w")).rejects.toThrow(
      /readUint16 reads F16 or BF16 tensors only/,
    );
  });

  it("refuses I64 values that do not fit in int32, naming the tensor", async () => {
    const file = await openSafetensors(
      writeSafetensors({
        ids: {
          dtype: "I64",
          shape: [2],
          data: BigInt64Array.from([1n, 2n ** 40n]),
        },
      }),
    );
    await expect(file.read("ids")).rejects.toThrow(FormatError);
    await expect(file.read("ids")).rejects.toThrow(
      /Tensor "ids" .* holds 1099511627776 at index 1, which does not fit in int32/,
    );
  });
});

describe("writeSafetensors layout", () => {
  it("pads the header with spaces to 8 bytes and packs tensors without gaps, largest elements first", () => {
    const bytes = writeSafetensors({
      small: { dtype: "F16", shape: [3], data: new Uint16Array(3) },
      big: { dtype: "F32", shape: [2], data: new Float32Array(2) },
      bytes: { dtype: "U8", shape: [1], data: new Uint8Array(1) },
    });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const headerText = new TextDecoder().decode(bytes.subarray(8, 8 + n));
    expect(headerText).toMatch(/^\{.*\} *$/);
    const header = JSON.parse(headerText) as Record<
      string,
      { data_offsets: number[] }
    >;
    expect(Object.keys(header)).toEqual(["big", "small", "bytes"]);
    expect(header["big"]!.data_offsets).toEqual([0, 8]);
    expect(header["small"]!.data_offsets).toEqual([8, 14]);
    expect(header["bytes"]!.data_offsets).toEqual([14, 15]);
    expect(bytes.length).toBe(8 + n + 15);
    // An empty file is just the padded "{}".
    expect(writeSafetensors({})).toHaveLength(8 + 8);
  });

  it("refuses data that disagrees with the dtype and shape", () => {
    expect(() =>
      writeSafetensors({
        w: { dtype: "F32", shape: [2, 2], data: new Float32Array(3) },
      }),
    ).toThrow(
      /Tensor "w": F32 with shape \[2, 2\] needs 16 bytes, but its data has 12/,
    );
    expect(() =>
      writeSafetensors({
        w: { dtype: "F32", shape: [2], data: new Int32Array(2) },
      }),
    ).toThrow(
      /F32 data must be a Float32Array or its raw bytes as a Uint8Array, found a Int32Array/,
    );
    expect(() =>
      writeSafetensors({
        __metadata__: { dtype: "U8", shape: [1], data: new Uint8Array(1) },
      }),
    ).toThrow(/reserved/);
  });
});

describe("byte sources", () => {
  const tensors = {
    first: {
      dtype: "F32",
      shape: [1024],
      data: Float32Array.from({ length: 1024 }, (_, i) => i),
    },
    second: { dtype: "BF16", shape: [2], data: Float32Array.from([1, -2.5]) },
  } satisfies Record<string, TensorToWrite>;
  const bytes = writeSafetensors(tensors, { format: "pt" });
  let dir: string;
  let hub: HubServer;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "webtune-io-"));
    await mkdir(join(dir, "org/m/main"), { recursive: true });
    await writeFile(join(dir, "org/m/main/model.safetensors"), bytes);
    hub = await startHubServer(dir);
  });
  afterAll(async () => {
    await hub.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function expectReadable(source: ByteSource) {
    const file = await openSafetensors(source);
    expect(file.metadata).toEqual({ format: "pt" });
    expect(Array.from((await file.read("second")).data)).toEqual([1, -2.5]);
    expect((await file.read("first")).data).toEqual(tensors.first.data);
  }

  it("reads from an ArrayBuffer, a Uint8Array view at an odd offset, and a Blob", async () => {
    await expectReadable(bytesSource(bytes.slice().buffer));
    // An odd byteOffset makes every tensor unaligned: reads must still give aligned typed arrays.
    const shifted = new Uint8Array(bytes.length + 1);
    shifted.set(bytes, 1);
    await expectReadable(bytesSource(shifted.subarray(1)));
    await expectReadable(blobSource(new Blob([bytes]), "model.safetensors"));
    await expectReadable(
      await openSafetensors(new Blob([bytes])).then((f) => f.byteSource),
    );
  });

  it("reads from a Node file path", async () => {
    await expectReadable(
      await nodeFileSource(join(dir, "org/m/main/model.safetensors")),
    );
  });

  it("reads over HTTP with Range requests, fetching only the bytes asked for", async () => {
    hub.requests.length = 0;
    const url = `${hub.url}/org/m/resolve/main/model.safetensors`;
    const file = await openSafetensors(await httpByteSource(url));
    await file.read("second");
    const gets = hub.requests.filter((r) => r.method === "GET");
    expect(gets.length).toBeGreaterThan(0);
    expect(gets.every((r) => r.range !== undefined)).toBe(true);
    // Header and one 4-byte tensor: far less than the 4 KiB tensor beside it.
    const fetched = gets
      .map((r) => /bytes=(\d+)-(\d+)/.exec(r.range!)!)
      .reduce((n, m) => n + Number(m[2]) - Number(m[1]) + 1, 0);
    expect(fetched).toBeLessThan(bytes.length / 4);
    await expectReadable(await httpByteSource(url));
  });

  it("follows the hub's redirects and finds the size without HEAD", async () => {
    hub.redirectLargeFiles = true;
    hub.refuseHead = true;
    try {
      await expectReadable(
        await httpByteSource(`${hub.url}/org/m/resolve/main/model.safetensors`),
      );
      expect(hub.requests.some((r) => r.path.startsWith("/cdn/"))).toBe(true);
    } finally {
      hub.redirectLargeFiles = false;
      hub.refuseHead = false;
    }
  });

  it("refuses a server that ignores Range, saying what to do", async () => {
    hub.ignoreRange = true;
    try {
      const source = await httpByteSource(
        `${hub.url}/org/m/resolve/main/model.safetensors`,
      );
      await expect(source.read(0, 8)).rejects.toThrow(
        /ignored a Range request \(HTTP 200 instead of 206 Partial Content\).*enable the cache/,
      );
    } finally {
      hub.ignoreRange = false;
    }
  });
});
