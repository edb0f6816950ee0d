// The close vocabulary: what `close()` takes, what `closed` and `onClose`
// give, and the one error type that carries a close code and reason.

import { CloseCode } from "./constants.ts";

/**
 * What {@linkcode WebSocketError} and `close()` take: a close code and a
 * reason, both optional, as in the WHATWG WebSocketStream proposal.
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
  /** The close code, such as `1000` for a normal closure. */
  closeCode?: number;
  /** The close reason, at most 123 bytes of UTF-8 once encoded. */
  reason?: string;
}

/**
 * How a WebSocket ended: what `socket.closed` resolves with after a clean
 * closing handshake, and what a server's `onClose` gets for every socket.
 *
 * @example Logging how a socket closed
 * ```ts ignore
 * const { closeCode, reason, wasClean } = await socket.closed;
 * console.log(`closed with ${closeCode} ${reason} (clean: ${wasClean})`);
 * ```
 */
export interface WebSocketCloseResult {
  /**
   * The close code: the peer's (1005 when its close frame had none), the
   * one sent when the connection was failed, or 1006 when it ended without
   * a closing handshake.
   */
  closeCode: number;
  /** The close reason; may be empty. */
  reason: string;
  /** Whether the closing handshake completed. */
  wasClean: boolean;
}

/** A close frame's payload holds at most 123 bytes of reason (RFC 6455 §5.5). */
export const MAX_REASON_BYTES = 123;

const encoder = new TextEncoder();

/**
 * Checks a close reason given by an application: one rule on every path
 * (`close()`, `WebSocketStream.close()`, `new WebSocketError()`), as the
 * WHATWG proposal has it: more than 123 bytes of UTF-8 is a `RangeError`,
 * never silently cut.
 */
function checkReason(reason: string): void {
  // A character is at most 3 UTF-8 bytes per UTF-16 code unit.
  if (reason.length * 3 <= MAX_REASON_BYTES) return;
  if (encoder.encode(reason).length > MAX_REASON_BYTES) {
    throw new RangeError(
      `The close reason must be at most ${MAX_REASON_BYTES} bytes of UTF-8`,
    );
  }
}

/**
 * Checks what an application gives `close()`: an object, a code of 1000 or
 * 3000–4999 (RFC 6455 §7.4.2: the others are for the protocol or reserved),
 * and a reason that fits (`checkReason`); throws a `TypeError` or
 * `RangeError`. Returns the code and reason.
 */
export function checkCloseInfo(
  closeInfo: WebSocketCloseInfo | undefined,
): { closeCode: number | undefined; reason: string } {
  if (closeInfo === undefined) return { closeCode: undefined, reason: "" };
  if (typeof closeInfo !== "object" || closeInfo === null) {
    throw new TypeError("The close info must be an object");
  }
  const { closeCode, reason = "" } = closeInfo;
  if (closeCode !== undefined && !isApplicationCode(closeCode)) {
    throw new RangeError(
      `The close code must be 1000 or in 3000-4999, got ${closeCode}`,
    );
  }
  checkReason(reason);
  return { closeCode, reason };
}

/**
 * Whether an application may send `code`: 1000, or 3000–4999 (RFC 6455
 * §7.4.2: the others are for the protocol or reserved).
 */
export function isApplicationCode(code: number): boolean {
  return code === CloseCode.NormalClosure ||
    (Number.isInteger(code) && code >= 3000 && code <= 4999);
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
   * @param init The close code (default `1006`) and reason (default `""`,
   * at most 123 bytes of UTF-8, else a `RangeError`).
   */
  constructor(message?: string, init?: WebSocketCloseInfo) {
    const reason = init?.reason ?? "";
    checkReason(reason);
    super(message || reason || "WebSocket closed abnormally");
    this.name = "WebSocketError";
    this.closeCode = init?.closeCode ?? CloseCode.AbnormalClosure;
    this.reason = reason;
  }
}

/**
 * Thrown by a socket's `writable` (and a pipe into it) for a write after
 * the socket started closing.
 *
 * @example
 * ```ts ignore
 * if (error instanceof SendAfterCloseError) return; // the socket closed
 * ```
 */
export class SendAfterCloseError extends TypeError {
  /** Makes the error, named `TypeError` as a web stream's would be. */
  constructor() {
    super("Cannot send on a closing or closed WebSocket");
    this.name = "TypeError";
  }
}
