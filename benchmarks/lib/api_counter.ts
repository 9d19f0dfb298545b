/**
 * Counts WebGPU API calls at the API itself, whatever code above makes them (the engine, tfjs, webtune), by
 * wrapping the prototype methods of GPUDevice, GPUQueue, GPUCommandEncoder, GPUComputePassEncoder and GPUBuffer
 * between `install()` and `restore()`: the idea of ../shared/tools/dawn_counters.mjs, for a window instead of a
 * process. The classes are globals in browsers and workers, and in Node once webtune's runtime has installed the
 * `webgpu` package's globals.
 *
 * Objects created in the window (buffers, bind groups, pipelines, shader modules) are also traced: the label of
 * the first few of each kind and where they were made, so that one created in a steady step can be found.
 */

/** What is counted: [class, method, counter]. Two methods may feed one counter. */
const METHODS = [
  ["GPUDevice", "createBuffer", "buffers"],
  ["GPUDevice", "createBindGroup", "bindGroups"],
  ["GPUDevice", "createComputePipeline", "pipelines"],
  ["GPUDevice", "createComputePipelineAsync", "pipelines"],
  ["GPUDevice", "createShaderModule", "shaderModules"],
  ["GPUDevice", "createBindGroupLayout", "bindGroupLayouts"],
  ["GPUDevice", "createCommandEncoder", "encoders"],
  ["GPUQueue", "writeBuffer", "writeBuffers"],
  ["GPUQueue", "submit", "submits"],
  ["GPUCommandEncoder", "beginComputePass", "passes"],
  ["GPUCommandEncoder", "copyBufferToBuffer", "copies"],
  ["GPUCommandEncoder", "clearBuffer", "clears"],
  ["GPUComputePassEncoder", "dispatchWorkgroups", "dispatches"],
  ["GPUComputePassEncoder", "dispatchWorkgroupsIndirect", "dispatches"],
  ["GPUComputePassEncoder", "setPipeline", "setPipelines"],
  ["GPUComputePassEncoder", "setBindGroup", "setBindGroups"],
  ["GPUBuffer", "mapAsync", "maps"],
] as const;

export type Counter = (typeof METHODS)[number][2];
export type Counts = Record<Counter, number>;

/** The counters whose calls create an object that a steady step should not need. */
const TRACED = new Set<Counter>([
  "buffers",
  "bindGroups",
  "pipelines",
  "shaderModules",
  "bindGroupLayouts",
]);

/** One object created in the window: which call, its descriptor's label, and the frames that called it. */
export interface Creation {
  call: string;
  label: string;
  at: string;
}

export function zeroCounts(): Counts {
  return Object.fromEntries(METHODS.map(([, , c]) => [c, 0])) as Counts;
}

type Method = (this: unknown, ...args: unknown[]) => unknown;

export class ApiCounter {
  private counts = zeroCounts();
  private creations: Creation[] = [];
  private readonly originals: [Record<string, unknown>, string, Method][] = [];

  /** @param traceLimit how many creations of each call to trace per window (each costs a stack trace). */
  constructor(private readonly traceLimit = 3) {}

  get installed(): boolean {
    return this.originals.length > 0;
  }

  install(): void {
    if (this.installed) throw new Error("ApiCounter: already installed");
    const scope = globalThis as unknown as Record<
      string,
      { prototype: Record<string, unknown> } | undefined
    >;
    for (const [cls, name, counter] of METHODS) {
      const proto = scope[cls]?.prototype;
      if (!proto) {
        this.restore();
        throw new Error(
          `ApiCounter: no global ${cls}; count after the WebGPU runtime has started (initRuntime)`,
        );
      }
      const original = proto[name];
      if (typeof original !== "function") continue; // e.g. no dispatchWorkgroupsIndirect
      const method = original as Method;
      this.originals.push([proto, name, method]);
      const call = `${cls}.${name}`;
      const seen = (args: unknown[]) => this.seen(counter, call, args);
      proto[name] = function (this: unknown, ...args: unknown[]) {
        seen(args);
        return method.apply(this, args);
      };
    }
  }

  /** Puts every wrapped method back. Safe to call when nothing is installed. */
  restore(): void {
    for (const [proto, name, method] of this.originals.splice(0).reverse())
      proto[name] = method;
  }

  /** The counts and creations since the last take (or install), and starts a new window. */
  take(): { counts: Counts; creations: Creation[] } {
    const out = { counts: this.counts, creations: this.creations };
    this.counts = zeroCounts();
    this.creations = [];
    return out;
  }

  /** Counts so far in this window, without starting a new one. */
  peek(): Counts {
    return { ...this.counts };
  }

  private seen(counter: Counter, call: string, args: unknown[]): void {
    this.counts[counter]++;
    if (!TRACED.has(counter)) return;
    if (this.creations.filter((c) => c.call === call).length >= this.traceLimit)
      return;
    const label = (args[0] as { label?: unknown } | undefined)?.label;
    this.creations.push({
      call,
      label: typeof label === "string" ? label : "",
      at: callers(),
    });
  }
}

/** The first frames of the stack outside this file, each shortened to function folder/file:line. */
function callers(): string {
  const lines = (new Error().stack ?? "").split("\n").slice(1);
  return lines
    .map((l) => l.trim().replace(/^at\s+/, ""))
    .filter((l) => !l.includes("api_counter"))
    .slice(0, 4)
    .map((l) =>
      l.replace(/\(?[^()\s]*?([^/()\s]+\/[^/()\s]+:\d+):\d+\)?$/, "$1"),
    )
    .join(" < ");
}
