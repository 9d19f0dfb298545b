/**
 * One generation at a time on the GPU, first come first served. A model holds one set of weights and one active
 * adapter, and two interleaved generations would only share the GPU's time, so jobs wait their turn; none is lost,
 * and a job that fails or is stopped lets the next one start.
 */
export class GenerationQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private waitingJobs = 0;
  private runningJobs = 0;

  /** Jobs waiting for their turn. */
  get waiting(): number {
    return this.waitingJobs;
  }

  /** Jobs running now: 0 or 1. */
  get running(): number {
    return this.runningJobs;
  }

  /** Runs `job` after every job queued before it; resolves or rejects as the job does. */
  run<T>(job: () => Promise<T>): Promise<T> {
    this.waitingJobs++;
    const result = this.tail.then(async () => {
      this.waitingJobs--;
      this.runningJobs++;
      try {
        return await job();
      } finally {
        this.runningJobs--;
      }
    });
    this.tail = result.catch(() => undefined);
    return result;
  }

  /** Resolves once every job queued so far has ended. */
  async idle(): Promise<void> {
    await this.tail;
  }
}
