/** An error a user can act on: the message names the file, node or option at fault. */
export class PruneError extends Error {
  /** Short machine-readable kind, e.g. "not-onnx", "bad-option", "unsupported-graph". */
  readonly code: string;
  /** An error of kind `code` with a message for the user. */
  constructor(code: string, message: string) {
    super(message);
    this.name = "PruneError";
    this.code = code;
  }
}
