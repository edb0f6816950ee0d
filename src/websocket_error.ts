/**
 * Options for {@linkcode WebSocketError}.
 *
 * @example Closing with a code and reason
 * ```ts ignore
 * import type { WebSocketCloseInfo } from "@scope/ws";
 *
 * const info: WebSocketCloseInfo = { closeCode: 4000, reason: "Session over" };
 * socket.close(info);
 * ```
 */
export interface WebSocketCloseInfo {
  /** The close code, such as `1002` for a protocol error. */
  closeCode?: number;
  /** The close reason, at most 123 bytes of UTF-8 once encoded. */
  reason?: string;
}

/**
 * The error that ends a WebSocket abnormally: it rejects `closed` and errors
 * `readable`, and carries the close code and reason that were sent or seen.
 *
 * @example Telling why a connection failed
 * ```ts ignore
 * import { WebSocketError } from "@scope/ws";
 *
 * try {
 *   await socket.closed;
 * } catch (error) {
 *   if (error instanceof WebSocketError) console.log(error.closeCode, error.reason);
 * }
 * ```
 */
export class WebSocketError extends Error {
  /** The close code, `1006` when the connection ended without a close frame. */
  readonly closeCode: number;
  /** The close reason; may be empty. */
  readonly reason: string;

  /**
   * Creates an error with a message and the close code and reason.
   *
   * @param message A human-readable description.
   * @param init The close code (default `1006`) and reason (default `""`).
   */
  constructor(message = "", init: WebSocketCloseInfo = {}) {
    super(message || init.reason || "WebSocket closed abnormally");
    this.name = "WebSocketError";
    this.closeCode = init.closeCode ?? 1006;
    this.reason = init.reason ?? "";
  }
}
