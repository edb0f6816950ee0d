/**
 * XORs `data` in place with the 4-byte masking key (RFC 6455 §5.3), starting
 * at byte `offset` of the key stream so that a payload can be unmasked in
 * pieces as it arrives. Works four bytes at a time where the data is aligned.
 *
 * @param data The bytes to mask or unmask; changed in place.
 * @param key The 4-byte masking key.
 * @param offset How many bytes of this payload came before `data`.
 *
 * @example Masking and unmasking give back the original bytes
 * ```ts
 * import { applyMask } from "@scope/ws";
 *
 * const key = new Uint8Array([1, 2, 3, 4]);
 * const data = new TextEncoder().encode("Hello");
 * applyMask(data, key);
 * applyMask(data, key);
 * console.log(new TextDecoder().decode(data)); // "Hello"
 * ```
 */
export function applyMask(
  data: Uint8Array,
  key: Uint8Array,
  offset = 0,
): void {
  const length = data.length;
  let i = 0;
  // Bytes before the first 4-byte boundary of the underlying buffer.
  const head = Math.min(length, (4 - (data.byteOffset & 3)) & 3);
  for (; i < head; i++) data[i] ^= key[(offset + i) & 3];
  const words = (length - i) >>> 2;
  if (words > 0) {
    // The key rotated to the word boundary, read as a little- or big-endian
    // word the same way the data words are read (platform byte order).
    const k = (offset + i) & 3;
    const rotated = new Uint8Array(4);
    for (let j = 0; j < 4; j++) rotated[j] = key[(k + j) & 3];
    const keyWord = new Uint32Array(rotated.buffer)[0];
    const view = new Uint32Array(data.buffer, data.byteOffset + i, words);
    for (let w = 0; w < words; w++) view[w] ^= keyWord;
    i += words << 2;
  }
  for (; i < length; i++) data[i] ^= key[(offset + i) & 3];
}
