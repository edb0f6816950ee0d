// Byte helpers shared by the codec, the compressor and the sockets.

/**
 * Joins byte arrays holding `size` bytes in all into one. A single array is
 * returned as it is, unless it is a small view of a large buffer: then it is
 * copied, so that a kept message does not pin the whole buffer.
 */
export function concat(pieces: Uint8Array[], size: number): Uint8Array {
  if (pieces.length === 1) {
    const piece = pieces[0];
    return piece.length * 2 < piece.buffer.byteLength ? piece.slice() : piece;
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const piece of pieces) {
    out.set(piece, at);
    at += piece.length;
  }
  return out;
}

/** Copies `bytes` into `target` at `at`; a loop is cheaper for a few bytes. */
export function copyInto(
  target: Uint8Array,
  at: number,
  bytes: Uint8Array,
): void {
  const length = bytes.length;
  if (length > 16) {
    target.set(bytes, at);
    return;
  }
  for (let i = 0; i < length; i++) target[at + i] = bytes[i];
}

/** A message's size in bytes: its UTF-8 length for text, without encoding. */
export function byteLength(message: string | Uint8Array): number {
  if (typeof message !== "string") return message.length;
  let length = message.length;
  for (let i = 0; i < message.length; i++) {
    const code = message.charCodeAt(i);
    if (code < 0x80) continue;
    if (code < 0x800) {
      length += 1;
    } else if (
      code >= 0xd800 && code <= 0xdbff && i + 1 < message.length &&
      (message.charCodeAt(i + 1) & 0xfc00) === 0xdc00
    ) {
      // A surrogate pair: two code units, four bytes.
      length += 2;
      i++;
    } else {
      // Three bytes (a lone surrogate is sent as U+FFFD, three bytes too).
      length += 2;
    }
  }
  return length;
}
