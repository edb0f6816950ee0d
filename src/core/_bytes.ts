// Byte array helpers shared by the codec and the compressor.

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
