/** Early stopping's memory: the best evaluation so far and a copy of the trainable values at that point. */
import * as tf from "@tensorflow/tfjs";
import type { EvalEvent } from "./trainer.js";

/** The trainable values at the best validation loss so far, kept on the GPU, for early stopping. */
export class BestWeights {
  event: EvalEvent | undefined;
  private saved: tf.Tensor[] | undefined;

  constructor(
    private readonly vars: tf.Variable[],
    private readonly minDelta = 0,
  ) {}

  /** True when `e` improves on the best so far (and then snapshots the adapter). */
  offer(e: EvalEvent): boolean {
    if (this.event && !(e.loss < this.event.loss - this.minDelta)) return false;
    this.event = e;
    if (this.saved) tf.dispose(this.saved);
    this.saved = this.vars.map((v) => tf.keep(v.clone()));
    return true;
  }

  restore(): void {
    this.saved?.forEach((t, i) => this.vars[i]!.assign(t));
  }

  dispose(): void {
    if (this.saved) tf.dispose(this.saved);
    this.saved = undefined;
  }
}
