// The `Sec-WebSocket-Accept` value that both sides of the opening handshake
// compute (RFC 6455 §4.2.2, §4.1), by WebCrypto's SHA-1, as the project's
// brief asks. WebCrypto's digest is asynchronous, so it is computed here,
// above the synchronous protocol core, whose handshake decisions take the
// value as an input.

/** The GUID that RFC 6455 §1.3 appends to the key. */
export const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const encoder = new TextEncoder();

/**
 * The base64 of the SHA-1 digest of a string's UTF-8 bytes, by WebCrypto
 * (`crypto.subtle.digest`). It costs more than `node:crypto`'s synchronous
 * `createHash` (see bench/README.md, "The handshake's SHA-1").
 */
export async function sha1Base64(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", encoder.encode(text));
  return new Uint8Array(digest).toBase64();
}

/**
 * `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + GUID)) (§4.2.2).
 * SHA-1 protects nothing here (§10.3): it only proves that the server read
 * the key.
 */
export function computeAccept(key: string): Promise<string> {
  return sha1Base64(key + GUID);
}
