/**
 * A KV cache the compiled decoding graphs write in place: per layer, keys (after RoPE) and values, each one
 * buffer [B, G, S, D] that outlives every run. A run of T tokens at position p writes rows p..p+T−1 and reads
 * rows 0..p+T−1; nothing is concatenated or reallocated per token, unlike the tape path's cache.
 *
 * Letters: L layers, B rows, G kv heads, S positions, D head dim.
 */
import { ShapeError } from "../errors.js";
import type { BufferCopy } from "./engine.js";
import { destroyEngineBuffer, engineBuffer } from "./executor.js";
import type { StepGraph } from "./graph.js";
import type { LayerCache } from "./ops/kv_cache.js";

export interface KvCacheShape {
  layers: number;
  B: number;
  G: number;
  S: number;
  D: number;
}

export class KvCache {
  private readonly k: GPUBuffer[] = [];
  private readonly v: GPUBuffer[] = [];

  constructor(
    device: GPUDevice,
    readonly shape: KvCacheShape,
  ) {
    const { layers, B, G, S, D } = shape;
    const bytes = 4 * B * G * S * D;
    if (bytes > device.limits.maxStorageBufferBindingSize)
      throw new ShapeError(
        `A KV cache of [${B} rows, ${G} kv heads, ${S} positions, ${D}] takes ${bytes} bytes per layer, over this ` +
          `device's maxStorageBufferBindingSize (${device.limits.maxStorageBufferBindingSize}); decode fewer rows ` +
          `or fewer tokens at once.`,
      );
    for (let i = 0; i < layers; i++) {
      this.k.push(engineBuffer(device, `webtune kv cache ${i} k`, bytes));
      this.v.push(engineBuffer(device, `webtune kv cache ${i} v`, bytes));
    }
  }

  /** Bytes on the GPU. */
  get bytes(): number {
    return (
      this.k.length *
      2 *
      4 *
      this.shape.B *
      this.shape.G *
      this.shape.S *
      this.shape.D
    );
  }

  /** Layer i's cache as externals of `g`. */
  bind(g: StepGraph, layer: number): LayerCache {
    const { B, G, S, D } = this.shape;
    const dims = [B, G, S, D];
    return {
      k: g.external(`layers.${layer}.k cache`, dims, () => this.k[layer]!),
      v: g.external(`layers.${layer}.v cache`, dims, () => this.v[layer]!),
      S,
    };
  }

  /** The copies that give row `to` of `target` everything row `from` of this cache holds, every layer. */
  copyRow(from: number, target: KvCache, to: number): BufferCopy[] {
    const { G, S, D } = this.shape;
    const t = target.shape;
    if (t.layers !== this.shape.layers || t.G !== G || t.S !== S || t.D !== D)
      throw new ShapeError(
        `KV cache rows copy between caches of different shapes ([${G}, ${S}, ${D}] and [${t.G}, ${t.S}, ${t.D}]).`,
      );
    const size = 4 * G * S * D;
    return this.k.flatMap((_, i) => [
      {
        from: this.k[i]!,
        fromOffset: from * size,
        to: target.k[i]!,
        toOffset: to * size,
        size,
      },
      {
        from: this.v[i]!,
        fromOffset: from * size,
        to: target.v[i]!,
        toOffset: to * size,
        size,
      },
    ]);
  }

  dispose(): void {
    for (const b of [...this.k, ...this.v]) destroyEngineBuffer(b);
    this.k.length = 0;
    this.v.length = 0;
  }
}
