/**
 * What the task gained against what the model forgot, base → tuned, on one chart: the task's headline metric
 * (exact match, accuracy or entity F1 in %, or the test loss for text) beside the loss on the held-out general text, whose
 * rise is forgetting. Bars on two scales (uPlot), drawn when a run has checked forgetting.
 */
import uPlot from "uplot";
import type { EvaluationResult, ForgettingEvent } from "@webtune/core";
import type { DataSummary } from "@webtune/worker";
import { byId } from "./dom.js";

const HEIGHT = 200;

/** The task's headline number and how to say it: a percentage where the format has one, else the test loss. */
export function headline(format: DataSummary["format"] | undefined): {
  label: string;
  read: (r: EvaluationResult) => number | undefined;
} {
  if (format === "instruction")
    return {
      label: "exact match (%)",
      read: (r) =>
        r.exactMatch === undefined ? undefined : 100 * r.exactMatch,
    };
  if (format === "tagged")
    return {
      label: "entity F1 (%)",
      read: (r) => (r.f1 === undefined ? undefined : 100 * r.f1),
    };
  if (format === "classification")
    return {
      label: "accuracy (%)",
      read: (r) => (r.accuracy === undefined ? undefined : 100 * r.accuracy),
    };
  return { label: "test loss (nats)", read: (r) => r.loss };
}

/** The chart's two bars per side: the task metric, the general-text loss (null where not scored). */
export function tradeoffData(
  base: EvaluationResult | undefined,
  tuned: EvaluationResult | undefined,
  forgetting: ForgettingEvent,
  format: DataSummary["format"] | undefined,
): { label: string; task: (number | null)[]; general: number[] } {
  const { label, read } = headline(format);
  return {
    label,
    task: [base, tuned].map((r) => (r ? (read(r) ?? null) : null)),
    general: [forgetting.base_loss, forgetting.tuned_loss],
  };
}

let drawn: uPlot | undefined;

/** Draws the chart, or hides it until a run has a forgetting check and a tuned score. */
export function showTradeoff(
  base: EvaluationResult | undefined,
  tuned: EvaluationResult | undefined,
  forgetting: ForgettingEvent | undefined,
  format: DataSummary["format"] | undefined,
): void {
  const box = byId("tradeoff");
  drawn?.destroy();
  drawn = undefined;
  box.hidden = !(forgetting && tuned);
  if (!forgetting || !tuned) return;
  const d = tradeoffData(base, tuned, forgetting, format);
  const percent = d.label.endsWith("(%)");
  const bars = (align: -1 | 1) =>
    uPlot.paths.bars!({ size: [0.3, 60], align, gap: 2 });
  drawn = new uPlot(
    {
      title: "Task vs. general text",
      width: box.clientWidth || 320,
      height: HEIGHT,
      legend: { live: false },
      scales: {
        x: { time: false, range: [-0.5, 1.5] },
        task: {
          range: percent ? [0, 100] : (_u, _lo, hi) => [0, hi * 1.1 || 1],
        },
        general: { range: (_u, _lo, hi) => [0, hi * 1.1 || 1] },
      },
      axes: [
        {
          splits: () => [0, 1],
          values: (_u, ticks) => ticks.map((t) => (t === 0 ? "base" : "tuned")),
        },
        { scale: "task", label: d.label, size: 50 },
        {
          scale: "general",
          side: 1,
          label: "general-text loss (nats)",
          size: 50,
          grid: { show: false },
        },
      ],
      series: [
        {},
        {
          label: d.label,
          scale: "task",
          stroke: "#2563eb",
          fill: "#2563eb99",
          paths: bars(-1),
          points: { show: false },
        },
        {
          label: "general-text loss",
          scale: "general",
          stroke: "#dc2626",
          fill: "#dc262699",
          paths: bars(1),
          points: { show: false },
        },
      ],
    },
    [[0, 1], d.task, d.general] as uPlot.AlignedData,
    box,
  );
}
