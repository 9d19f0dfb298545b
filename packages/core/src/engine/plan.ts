/**
 * The buffer plan of a step graph: each activation's lifetime (the dispatches from its first use to its last) and
 * a place for it in a few large arenas, so that no two activations alive at once overlap. llm.c allocates every
 * activation of a step in one malloc; this does the same with liveness, so a buffer is reused once its last
 * reader has run (greedy by size, as TFLite's arena planner).
 *
 * Pure: no GPU. `executor.ts` allocates the arenas and binds each activation at its offset.
 */
import { ShapeError } from "../errors.js";
import type { GraphTensor, StepGraph } from "./graph.js";

export interface Lifetime {
  tensor: GraphTensor;
  /** Index of the first and last dispatch that binds it. */
  first: number;
  last: number;
}

export interface Placement {
  arena: number;
  /** Byte offset in the arena, a multiple of the alignment. */
  offset: number;
}

export interface BufferPlan {
  lifetimes: Lifetime[];
  place: Map<GraphTensor, Placement>;
  /** Bytes of each arena. */
  arenas: number[];
}

export interface PlanOptions {
  /** Offset alignment of every activation (minStorageBufferOffsetAlignment or more). Default 256. */
  alignment?: number;
  /** The most bytes one arena may take (maxBufferSize). */
  maxArenaBytes: number;
}

/**
 * Each activation's first and last use. Activations the host reads back are left out: they get a buffer of
 * their own graph's, so that a graph run after them in the same pass cannot overwrite them in a shared arena.
 */
export function lifetimes(graph: StepGraph): Lifetime[] {
  const spans = new Map<GraphTensor, Lifetime>();
  const kept = new Set(graph.readbacks);
  graph.dispatches.forEach((d, i) => {
    for (const { tensor } of d.bindings) {
      if (tensor.source.kind !== "activation" || kept.has(tensor)) continue;
      const span = spans.get(tensor);
      if (span) span.last = i;
      else spans.set(tensor, { tensor, first: i, last: i });
    }
  });
  const bound = new Set(
    graph.dispatches.flatMap((d) => d.bindings.map((b) => b.tensor)),
  );
  for (const t of kept)
    if (!bound.has(t))
      throw new ShapeError(`${t.name} is read back but no dispatch writes it.`);
  return [...spans.values()];
}

const overlaps = (a: Lifetime, b: Lifetime) =>
  a.first <= b.last && b.first <= a.last;

/**
 * Places every activation: largest first, each at the lowest aligned offset of the first arena where it overlaps
 * no activation alive at the same time; a new arena when none has room under `maxArenaBytes`.
 */
export function planBuffers(
  graph: StepGraph,
  options: PlanOptions,
): BufferPlan {
  const align = options.alignment ?? 256;
  const spans = lifetimes(graph).sort(
    (a, b) => b.tensor.bytes - a.tensor.bytes || a.first - b.first,
  );
  const placed: { span: Lifetime; arena: number; offset: number }[] = [];
  const arenas: number[] = [];
  const place = new Map<GraphTensor, Placement>();
  for (const span of spans) {
    const bytes = alignUp(span.tensor.bytes, align);
    if (bytes > options.maxArenaBytes)
      throw new ShapeError(
        `${span.tensor.name} takes ${bytes} bytes, over the ${options.maxArenaBytes}-byte buffer limit.`,
      );
    let spot: Placement | undefined;
    for (let a = 0; a < arenas.length && !spot; a++) {
      const busy = placed
        .filter((p) => p.arena === a && overlaps(p.span, span))
        .map((p) => [p.offset, p.offset + alignUp(p.span.tensor.bytes, align)])
        .sort((x, y) => x[0]! - y[0]!);
      let offset = 0;
      for (const [start, end] of busy) {
        if (offset + bytes <= start!) break;
        offset = Math.max(offset, end!);
      }
      if (offset + bytes <= options.maxArenaBytes) spot = { arena: a, offset };
    }
    spot ??= { arena: arenas.push(0) - 1, offset: 0 };
    arenas[spot.arena] = Math.max(arenas[spot.arena]!, spot.offset + bytes);
    placed.push({ span, ...spot });
    place.set(span.tensor, spot);
  }
  return { lifetimes: spans, place, arenas };
}

export function alignUp(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}
