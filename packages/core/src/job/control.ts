/**
 * The handle a caller keeps on a running job: stop it, pause it, or skip the scoring in progress. Each call
 * answers at once; the run notices at its next step, row batch or decode step.
 */
import type { Trainer } from "../train/trainer.js";

export class JobControl {
  private readonly stopped = new AbortController();
  private scoring: AbortController | undefined;
  private trainer: Trainer | undefined;
  private pausedWhileScoring = false;

  /** Whether {@link stop} was called. */
  get stopRequested(): boolean {
    return this.stopped.signal.aborted;
  }

  /** @internal Aborted by {@link stop}: what the run's other long passes (paraphrasing) watch. */
  get stopSignal(): AbortSignal {
    return this.stopped.signal;
  }

  /** Ends the run: training after its current step (the adapter so far is kept), scoring at once. */
  stop(): void {
    this.stopped.abort(new DOMException("The run was stopped.", "AbortError"));
    this.scoring?.abort(this.stopped.signal.reason);
    this.trainer?.abort();
  }

  /** Cancels the scoring in progress; the run goes on without those metrics. */
  skipScoring(): void {
    this.scoring?.abort(new DOMException("Scoring was skipped.", "AbortError"));
  }

  /** Holds training between steps; a no-op while scoring. */
  pause(): void {
    if (this.trainer) this.trainer.pause();
    else this.pausedWhileScoring = true;
  }

  resume(): void {
    this.pausedWhileScoring = false;
    this.trainer?.resume();
  }

  /** @internal The signal a scoring pass watches: skipped or stopped. */
  startScoring(): AbortSignal {
    this.scoring = new AbortController();
    if (this.stopRequested) this.scoring.abort(this.stopped.signal.reason);
    return this.scoring.signal;
  }

  /** @internal */
  endScoring(): void {
    this.scoring = undefined;
  }

  /** @internal The Trainer now running, which stop and pause reach; undefined when it has finished. */
  attach(trainer: Trainer | undefined): void {
    this.trainer = trainer;
    if (!trainer) return;
    if (this.stopRequested) trainer.abort();
    if (this.pausedWhileScoring) trainer.pause();
  }
}
