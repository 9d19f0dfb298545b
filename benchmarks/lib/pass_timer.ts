/**
 * GPU time of the compute passes that some code encodes itself (the engine: one pass per run), without that code
 * knowing: while installed, every pass begun while `tag` is set gets timestamp writes at its start and end (a
 * query set of this timer's), and each queue submit is followed by a resolve of the queries begun since the last
 * one and a readback. `passes` then holds each timed pass's tag and GPU milliseconds.
 *
 * It wraps GPUCommandEncoder.prototype.beginComputePass and GPUQueue.prototype.submit, like `api_counter.ts`, and
 * makes its own calls through the original methods captured at install, so an ApiCounter installed after it (and
 * restored before it) counts none of them. Its resolve runs in an error scope of its own, so that a problem with
 * it never reads as the timed code's error.
 *
 * Needs the device's `timestamp-query` feature (webtune's runtime asks for it wherever the adapter offers it):
 * `available` says; without it nothing is timed. Dawn rounds timestamps down to multiples of 65,536 ns unless it
 * was created with `disable-dawn-features=timestamp_quantization`. A pass's time is from the GPU starting its first
 * dispatch to finishing its last, gaps between dispatches included.
 */

type Method = (this: unknown, ...args: unknown[]) => unknown;

/** One timed pass: the tag that was set when it began, and its GPU time (null when the timestamps were invalid). */
export interface TimedPass {
  tag: string;
  ms: Promise<number | null>;
}

/** Queries in the query set: two per pass. WebGPU allows at most 4096. */
const QUERIES = 4096;

export class PassTimer {
  readonly available: boolean;
  /** Passes begun while this is set are timed and carry it. */
  tag: string | undefined;
  readonly passes: TimedPass[] = [];
  /** Passes begun while tagged that got no timestamps: the query set was full, or the pass had its own. */
  skipped = 0;
  private readonly querySet: GPUQuerySet | undefined;
  private next = 0;
  /** Passes begun since the last resolve: their first query index and their result's resolver. */
  private pending: { index: number; resolve: (ms: number | null) => void }[] =
    [];
  private readonly originals: [Record<string, unknown>, string, Method][] = [];
  private calls: {
    createCommandEncoder: Method;
    createBuffer: Method;
    copyBufferToBuffer: Method;
    submit: Method;
    mapAsync: Method;
  } | null = null;

  constructor(private readonly device: GPUDevice) {
    this.available = device.features.has("timestamp-query");
    this.querySet = this.available
      ? device.createQuerySet({
          type: "timestamp",
          count: QUERIES,
          label: "pass timer",
        })
      : undefined;
  }

  get installed(): boolean {
    return this.originals.length > 0;
  }

  install(): void {
    if (this.installed) throw new Error("PassTimer: already installed");
    const scope = globalThis as unknown as Record<
      string,
      { prototype: Record<string, unknown> } | undefined
    >;
    const proto = (cls: string) => {
      const p = scope[cls]?.prototype;
      if (!p)
        throw new Error(
          `PassTimer: no global ${cls}; install after the WebGPU runtime has started (initRuntime)`,
        );
      return p;
    };
    const [device, encoder, queue, buffer] = [
      "GPUDevice",
      "GPUCommandEncoder",
      "GPUQueue",
      "GPUBuffer",
    ].map(proto) as [
      Record<string, Method>,
      Record<string, Method>,
      Record<string, Method>,
      Record<string, Method>,
    ];
    this.calls = {
      createCommandEncoder: device["createCommandEncoder"]!,
      createBuffer: device["createBuffer"]!,
      copyBufferToBuffer: encoder["copyBufferToBuffer"]!,
      submit: queue["submit"]!,
      mapAsync: buffer["mapAsync"]!,
    };
    const begin = encoder["beginComputePass"]!;
    const submit = queue["submit"]!;
    this.originals.push(
      [encoder, "beginComputePass", begin],
      [queue, "submit", submit],
    );
    const slot = (d: GPUComputePassDescriptor | undefined) => this.slot(d);
    const resolvePending = (q: GPUQueue) => this.resolvePending(q);
    encoder["beginComputePass"] = function (this: unknown, ...args: unknown[]) {
      const descriptor = args[0] as GPUComputePassDescriptor | undefined;
      const writes = slot(descriptor);
      return begin.call(
        this,
        writes ? { ...descriptor, timestampWrites: writes } : descriptor,
      );
    };
    queue["submit"] = function (this: unknown, ...args: unknown[]) {
      const out = submit.apply(this, args);
      resolvePending(this as GPUQueue);
      return out;
    };
  }

  /** Puts the wrapped methods back. Passes already timed still resolve. */
  restore(): void {
    for (const [proto, name, method] of this.originals.splice(0).reverse())
      proto[name] = method;
  }

  /** The GPU ms of every pass, by tag (a pass with invalid timestamps is left out). */
  async byTag(): Promise<Map<string, number[]>> {
    const ms = await Promise.all(this.passes.map((p) => p.ms));
    const out = new Map<string, number[]>();
    this.passes.forEach((p, i) => {
      const t = ms[i];
      if (t === null || t === undefined) return;
      out.set(p.tag, [...(out.get(p.tag) ?? []), t]);
    });
    return out;
  }

  dispose(): void {
    this.restore();
    this.querySet?.destroy();
  }

  /** The timestamp writes for a pass begun now, or undefined when it is not timed. */
  private slot(
    descriptor: GPUComputePassDescriptor | undefined,
  ): GPUComputePassTimestampWrites | undefined {
    if (this.tag === undefined || !this.querySet) return undefined;
    if (descriptor?.timestampWrites || this.next + 2 > QUERIES) {
      this.skipped++;
      return undefined;
    }
    const index = this.next;
    this.next += 2;
    const tag = this.tag;
    let resolve!: (ms: number | null) => void;
    const ms = new Promise<number | null>((r) => (resolve = r));
    this.passes.push({ tag, ms });
    this.pending.push({ index, resolve });
    return {
      querySet: this.querySet,
      beginningOfPassWriteIndex: index,
      endOfPassWriteIndex: index + 1,
    };
  }

  /** After a submit: resolves the queries of the passes begun since the last one, and reads them back. */
  private resolvePending(queue: GPUQueue): void {
    if (this.pending.length === 0 || !this.calls || !this.querySet) return;
    const pending = this.pending;
    this.pending = [];
    const first = pending[0]!.index;
    const count = pending.at(-1)!.index + 2 - first;
    const bytes = count * 8;
    const c = this.calls;
    const device = this.device;
    device.pushErrorScope("validation");
    const resolved = c.createBuffer.call(device, {
      size: bytes,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      label: "pass timer resolve",
    }) as GPUBuffer;
    const staging = c.createBuffer.call(device, {
      size: bytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      label: "pass timer read",
    }) as GPUBuffer;
    const encoder = c.createCommandEncoder.call(device, {
      label: "pass timer",
    }) as GPUCommandEncoder;
    encoder.resolveQuerySet(this.querySet, first, count, resolved, 0);
    c.copyBufferToBuffer.call(encoder, resolved, 0, staging, 0, bytes);
    c.submit.call(queue, [encoder.finish()]);
    const scope = device.popErrorScope();
    const fail = () => pending.forEach((p) => p.resolve(null));
    void scope.then((error) => {
      if (error) {
        console.log(`PassTimer: resolve refused: ${error.message}`);
        fail();
        return;
      }
      (c.mapAsync.call(staging, GPUMapMode.READ) as Promise<void>)
        .then(() => {
          const t = new BigUint64Array(staging.getMappedRange().slice(0));
          for (const p of pending) {
            const begin = t[p.index - first]!;
            const end = t[p.index - first + 1]!;
            p.resolve(
              begin > 0n && end >= begin ? Number(end - begin) / 1e6 : null,
            );
          }
          staging.unmap();
        })
        .catch(fail)
        .finally(() => {
          staging.destroy();
          resolved.destroy();
        });
    });
  }
}
