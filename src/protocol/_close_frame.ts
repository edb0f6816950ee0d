// Close frame payloads (RFC 6455 §5.5.1, §7.4): encoding and validation.

import { CloseCode } from "./constants.ts";
import { isValidCloseCode } from "./constants.ts";
import { MAX_REASON_BYTES, WebSocketError } from "./websocket_error.ts";

const encoder = new TextEncoder();
// ignoreBOM: a leading U+FEFF is part of the reason, not a byte order mark.
const strictDecoder = new TextDecoder("utf-8", {
  fatal: true,
  ignoreBOM: true,
});

/**
 * Encodes a close frame payload: the code, then the reason as UTF-8, cut at a
 * character boundary so that the payload never exceeds 125 bytes (RFC 6455
 * §5.5). `code === undefined` gives the empty payload.
 */
export function encodeClosePayload(code?: number, reason = ""): Uint8Array {
  if (code === undefined) return new Uint8Array(0);
  let bytes = encoder.encode(reason);
  if (bytes.length > MAX_REASON_BYTES) {
    let end = MAX_REASON_BYTES;
    // Back off over continuation bytes (10xxxxxx) to a character start.
    while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--;
    bytes = bytes.subarray(0, end);
  }
  const payload = new Uint8Array(2 + bytes.length);
  payload[0] = code >>> 8;
  payload[1] = code & 255;
  payload.set(bytes, 2);
  return payload;
}

/**
 * Parses and validates a received close frame payload (RFC 6455 §5.5.1,
 * §7.4): an empty payload means 1005 (no status); one byte, or a code that may
 * not be sent, throws a 1002 error; a reason that is not UTF-8 throws 1007.
 */
export function parseClosePayload(
  payload: Uint8Array,
): { closeCode: number; reason: string } {
  if (payload.length === 0) {
    return { closeCode: CloseCode.NoStatusReceived, reason: "" };
  }
  if (payload.length === 1) {
    throw new WebSocketError("Close frame with a 1-byte payload", {
      closeCode: CloseCode.ProtocolError,
      reason: "Invalid close frame",
    });
  }
  const closeCode = (payload[0] << 8) | payload[1];
  if (!isValidCloseCode(closeCode)) {
    throw new WebSocketError(`Invalid close code ${closeCode}`, {
      closeCode: CloseCode.ProtocolError,
      reason: "Invalid close code",
    });
  }
  try {
    return { closeCode, reason: strictDecoder.decode(payload.subarray(2)) };
  } catch {
    throw new WebSocketError("Invalid UTF-8 in close reason", {
      closeCode: CloseCode.InvalidPayload,
      reason: "Invalid UTF-8",
    });
  }
}
