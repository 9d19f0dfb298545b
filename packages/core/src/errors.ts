/**
 * Typed errors. Every message says what was expected, what was found, and what to do.
 *
 * @example
 * ```ts
 * try { await initRuntime(); } catch (e) { if (e instanceof DeviceError) showGpuHelp(e.message); }
 * ```
 */
export class WebtuneError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** No WebGPU adapter, a refused feature or limit, or a lost device. */
export class DeviceError extends WebtuneError {}

/** A tensor whose shape, rank or dtype does not fit the operation. */
export class ShapeError extends WebtuneError {}

/** An option or configuration value that is out of range or inconsistent. */
export class ConfigError extends WebtuneError {}

/** A file or record that does not follow its format. */
export class FormatError extends WebtuneError {}
