/**
 * Live training charts with uPlot: loss (train and validation), learning rate and tokens/s against the step.
 * Events arrive from the worker; redraws are batched into one per animation frame.
 */
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { TrainEvent } from "@webtune/core";
import { byId } from "./dom.js";

const WIDTH = 300;
const HEIGHT = 190;
/** Steps are whole numbers: the step axis ticks at these spacings only. */
const STEP_INCREMENTS = [1, 2, 5]
  .flatMap((m) => [1, 10, 100, 1000, 10000].map((p) => m * p))
  .sort((a, b) => a - b);

function chart(id: string, series: { label: string; stroke: string }[]) {
  const el = byId(id);
  el.replaceChildren();
  return new uPlot(
    {
      width: el.clientWidth || WIDTH,
      height: HEIGHT,
      scales: {
        // A lone first point gets the step after it too, instead of a span of fractions around it.
        x: {
          time: false,
          range: (_u, min, max) =>
            Number.isFinite(min) ? [min, Math.max(max, min + 1)] : [0, 1],
        },
      },
      axes: [
        { label: "step", incrs: STEP_INCREMENTS },
        // Ticks 20 px apart, so that even a narrow range gets several labels.
        { size: 60, space: 20 },
      ],
      legend: { live: false },
      series: [
        { label: "step" },
        ...series.map((s) => ({
          ...s,
          width: 2,
          spanGaps: true,
          // Lines without dots, except validation's and a lone first point, which a line cannot show.
          points: {
            show: (u: uPlot) =>
              s.label === "validation" || u.data[0].length === 1,
          },
        })),
      ],
    },
    // Drawn once with two placeholder points while the page loads, so that the first real draw (fonts, axes,
    // canvas) does not cost a long frame in the middle of training; the first event replaces them.
    [[1, 2], ...series.map(() => [1, 2])],
    el,
  );
}

/** The charts, or the placeholder that stands in for them until a run's first point. */
function showCharts(on: boolean, charts: uPlot[]): void {
  const box = byId("charts");
  if (box.hidden !== on) return;
  box.hidden = !on;
  byId("charts-empty").hidden = on;
  // Made while hidden, at the default width: now that they show, they fill their column.
  if (on)
    for (const u of charts)
      u.setSize({ width: u.root.parentElement!.clientWidth, height: HEIGHT });
}

/** The three charts, fed with train events. */
export class TrainingCharts {
  private readonly steps: number[] = [];
  private readonly train: (number | null)[] = [];
  private readonly val: (number | null)[] = [];
  private readonly lr: number[] = [];
  private readonly tps: number[] = [];
  private readonly loss = chart("chart-loss", [
    { label: "train", stroke: "#2563eb" },
    { label: "validation", stroke: "#ea580c" },
  ]);
  private readonly rate = chart("chart-lr", [
    { label: "lr", stroke: "#7c3aed" },
  ]);
  private readonly speed = chart("chart-tps", [
    { label: "tokens/s", stroke: "#059669" },
  ]);
  private frame = 0;

  constructor() {
    this.draw(); // empty, until the first event
  }

  /** Points drawn so far per series, for tests: train, validation, lr, tokens/s. */
  get points(): { train: number; val: number; lr: number; tps: number } {
    const count = (a: (number | null)[]) => a.filter((v) => v !== null).length;
    return {
      train: count(this.train),
      val: count(this.val),
      lr: this.lr.length,
      tps: this.tps.length,
    };
  }

  /** Starts over from these events (none for a new run; those up to the checkpoint for a resumed one). */
  reset(events: TrainEvent[]): void {
    for (const a of [this.steps, this.train, this.val, this.lr, this.tps])
      a.length = 0;
    for (const e of events) this.add(e);
    this.frame ||= requestAnimationFrame(() => this.draw());
  }

  add(event: TrainEvent): void {
    if (event.type === "step") {
      this.steps.push(event.step);
      this.train.push(event.loss);
      this.val.push(null);
      this.lr.push(event.lr);
      this.tps.push(event.tokensPerSec);
    } else {
      // A validation point sits on the step it was taken after.
      const at = this.steps.lastIndexOf(event.step);
      if (at >= 0) this.val[at] = event.loss;
    }
    this.frame ||= requestAnimationFrame(() => this.draw());
  }

  private draw(): void {
    this.frame = 0;
    showCharts(this.steps.length > 0, [this.loss, this.rate, this.speed]);
    this.loss.setData([this.steps, this.train, this.val] as uPlot.AlignedData);
    this.rate.setData([this.steps, this.lr]);
    this.speed.setData([this.steps, this.tps]);
  }
}
