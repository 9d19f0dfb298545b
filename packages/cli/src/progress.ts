/** Training progress: a bar with loss and tokens/s on a terminal, plain lines otherwise (logs, CI). */
import { SingleBar, Presets } from "cli-progress";
import type { TrainEvent } from "@webtune/core";

export interface Progress {
  event(e: TrainEvent): void;
  stop(): void;
}

/**
 * stderr as the bar should see it. bin/webtune.js runs the CLI behind a pipe (to drop Dawn's two warnings) and
 * says in WEBTUNE_STDERR_TTY whether its own stderr is a terminal: then the pipe is written to as one.
 */
function terminal(): NodeJS.WritableStream | undefined {
  if (process.stderr.isTTY) return process.stderr;
  if (process.env["WEBTUNE_STDERR_TTY"] !== "1") return undefined;
  return {
    isTTY: true,
    columns: Number(process.env["COLUMNS"]) || 100,
    write: (chunk: string) => process.stderr.write(chunk),
  } as unknown as NodeJS.WritableStream;
}

export function progress(totalSteps: number): Progress {
  const stream = terminal();
  if (stream) {
    const bar = new SingleBar(
      {
        format:
          "train [{bar}] {value}/{total} steps | loss {loss} | {tps} tok/s | eta {eta_formatted}",
        stream,
      },
      Presets.shades_classic,
    );
    bar.start(totalSteps, 0, { loss: "-", tps: "-" });
    return {
      event: (e) => {
        if (e.type === "step")
          bar.update(e.step, {
            loss: e.loss.toFixed(4),
            tps: e.tokensPerSec.toFixed(0),
          });
        else bar.update({ loss: `val ${e.loss.toFixed(4)}` });
      },
      stop: () => bar.stop(),
    };
  }
  return {
    event: (e) => {
      const line =
        e.type === "step"
          ? `step ${e.step}/${totalSteps} loss ${e.loss.toFixed(4)} lr ${e.lr.toExponential(2)} grad_norm ${e.gradNorm.toFixed(3)} ${e.tokensPerSec.toFixed(0)} tok/s`
          : `eval step ${e.step} loss ${e.loss.toFixed(4)} perplexity ${e.perplexity.toFixed(2)}`;
      process.stderr.write(`${line}\n`);
    },
    stop: () => {},
  };
}
