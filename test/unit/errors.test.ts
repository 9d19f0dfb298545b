/**
 * Every error class keeps its name after bundling (minifiers rename classes), so callers in a worker or app can
 * tell a ShapeError from a DeviceError by `error.name`.
 */
import { describe, expect, it } from "vitest";
import * as core from "@webtune/core";

describe("typed errors", () => {
  it("name themselves explicitly, whatever the bundler does to class names", () => {
    const classes = Object.entries(core).filter(
      ([, v]) =>
        typeof v === "function" &&
        (v === core.WebtuneError || v.prototype instanceof core.WebtuneError),
    ) as [
      string,
      new (message: string, details: Record<string, unknown>) => Error,
    ][];
    expect(classes.map(([k]) => k)).toEqual(
      expect.arrayContaining([
        "DeviceError",
        "ShapeError",
        "ConfigError",
        "FormatError",
      ]),
    );
    for (const [exported, Class] of classes) {
      const error = new Class("m", {
        url: "u",
        source: "s",
        file: "f",
        line: 1,
        field: "x",
        report: {},
      });
      expect(error.name, exported).toBe(exported);
      expect(error).toBeInstanceOf(core.WebtuneError);
    }
  });
});
