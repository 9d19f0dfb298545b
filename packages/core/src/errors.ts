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
    // Bundlers minify class names, so each class states its own name (checked by a test).
    this.name = "WebtuneError";
  }
}

/** No WebGPU adapter, a refused feature or limit, or a lost device. */
export class DeviceError extends WebtuneError {
  override name = "DeviceError";
}

/** A tensor whose shape, rank or dtype does not fit the operation. */
export class ShapeError extends WebtuneError {
  override name = "ShapeError";
}

/** An option or configuration value that is out of range or inconsistent. */
export class ConfigError extends WebtuneError {
  override name = "ConfigError";
}

/** A file or record that does not follow its format. */
export class FormatError extends WebtuneError {
  override name = "FormatError";
}

/** A request that failed: the server could not be reached, refused access, or answered an error status. */
export class NetworkError extends WebtuneError {
  override name = "NetworkError";
  /** The URL that was requested. */
  readonly url: string;
  /** The HTTP status, when the server answered. */
  readonly status: number | undefined;

  constructor(
    message: string,
    details: { url: string; status?: number; cause?: unknown },
  ) {
    super(message, { cause: details.cause });
    this.url = details.url;
    this.status = details.status;
  }
}

/** A file that a model source does not have: absent from a directory or a file list, or HTTP 404. */
export class FileNotFoundError extends WebtuneError {
  override name = "FileNotFoundError";
  /** The model source as given (hub id, URL, directory or "selected files"). */
  readonly source: string;
  /** The file name relative to the model folder, e.g. `config.json`. */
  readonly file: string;

  constructor(
    message: string,
    details: { source: string; file: string; cause?: unknown },
  ) {
    super(message, { cause: details.cause });
    this.source = details.source;
    this.file = details.file;
  }
}

/**
 * Training whose loss or gradient norm stopped being finite (NaN or Inf), usually a learning rate too high for the
 * model. No update with non-finite values was applied: the weights hold their last finite values.
 */
export class DivergenceError extends WebtuneError {
  override name = "DivergenceError";
  /** The optimizer step (1-based) whose loss or gradient norm was not finite. */
  readonly step: number;
  readonly loss: number;
  readonly gradNorm: number;
  /** The learning rate the run peaked at, and a tenth of it: where to start again. */
  readonly learningRate: number;
  readonly suggestedLearningRate: number;

  constructor(
    message: string,
    details: {
      step: number;
      loss: number;
      gradNorm: number;
      learningRate: number;
      suggestedLearningRate: number;
    },
  ) {
    super(message);
    this.step = details.step;
    this.loss = details.loss;
    this.gradNorm = details.gradNorm;
    this.learningRate = details.learningRate;
    this.suggestedLearningRate = details.suggestedLearningRate;
  }
}
