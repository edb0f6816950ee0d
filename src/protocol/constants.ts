// Frame opcodes and close codes of RFC 6455, as named constants.

/**
 * Frame opcodes (RFC 6455 §5.2, §11.8).
 *
 * @example Checking whether a frame is a control frame
 * ```ts
 * import assert from "node:assert/strict";
 * import { Opcode } from "@scope/ws/frames";
 *
 * const isControl = (opcode: number) => opcode >= Opcode.Close;
 * assert.equal(isControl(Opcode.Ping), true);
 * ```
 */
export const Opcode: {
  readonly Continuation: 0;
  readonly Text: 1;
  readonly Binary: 2;
  readonly Close: 8;
  readonly Ping: 9;
  readonly Pong: 10;
} = {
  /** A continuation of a fragmented message. */
  Continuation: 0,
  /** The first frame of a UTF-8 text message. */
  Text: 1,
  /** The first frame of a binary message. */
  Binary: 2,
  /** A close frame, which starts or answers the closing handshake. */
  Close: 8,
  /** A ping, to be answered by a pong with the same payload. */
  Ping: 9,
  /** A pong, the answer to a ping or an unsolicited heartbeat. */
  Pong: 10,
} as const;

/**
 * Close status codes (RFC 6455 §7.4.1).
 *
 * @example Closing a socket for a policy violation
 * ```ts ignore
 * import { CloseCode } from "@scope/ws";
 *
 * socket.close({ closeCode: CloseCode.PolicyViolation, reason: "Not allowed" });
 * ```
 */
export const CloseCode: {
  readonly NormalClosure: 1000;
  readonly GoingAway: 1001;
  readonly ProtocolError: 1002;
  readonly UnsupportedData: 1003;
  readonly NoStatusReceived: 1005;
  readonly AbnormalClosure: 1006;
  readonly InvalidPayload: 1007;
  readonly PolicyViolation: 1008;
  readonly MessageTooBig: 1009;
  readonly MandatoryExtension: 1010;
  readonly InternalError: 1011;
  readonly ServiceRestart: 1012;
  readonly TryAgainLater: 1013;
} = {
  /** The purpose of the connection was fulfilled. */
  NormalClosure: 1000,
  /** The endpoint is going away: a server shutting down or a page navigating. */
  GoingAway: 1001,
  /** The peer broke the protocol. */
  ProtocolError: 1002,
  /** The peer sent a type of data the endpoint cannot accept. */
  UnsupportedData: 1003,
  /** Reported (never sent) when a close frame had no status code. */
  NoStatusReceived: 1005,
  /** Reported (never sent) when the connection ended without a close frame. */
  AbnormalClosure: 1006,
  /** A message's data did not match its type, such as invalid UTF-8 in text. */
  InvalidPayload: 1007,
  /** A message broke the endpoint's policy. */
  PolicyViolation: 1008,
  /** A message was too big to process. */
  MessageTooBig: 1009,
  /** The client expected an extension that the server did not negotiate. */
  MandatoryExtension: 1010,
  /** The server met an unexpected condition. */
  InternalError: 1011,
  /** The server is restarting (IANA registry). */
  ServiceRestart: 1012,
  /**
   * A temporary condition, such as a consumer too slow for what is sent to
   * it (IANA registry); the peer may try again later.
   */
  TryAgainLater: 1013,
} as const;

/**
 * Whether `code` may be sent in a close frame (RFC 6455 §7.4): 1000–1003,
 * 1007–1014 (1012–1014 are registered with IANA) and the registered and
 * private range 3000–4999.
 *
 * @example Validating a close code
 * ```ts
 * import assert from "node:assert/strict";
 * import { isValidCloseCode } from "@scope/ws";
 *
 * assert.equal(isValidCloseCode(1000), true);
 * assert.equal(isValidCloseCode(1005), false); // reserved for reporting
 * ```
 */
export function isValidCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999);
}
