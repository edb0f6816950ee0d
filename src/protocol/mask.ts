// Masking (RFC 6455 §5.3): the XOR of payloads with a 4-byte key, and the
// random keys a client masks with.

/** Whether typed-array words are little-endian on this platform. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Below this many bytes a byte loop beats creating a word view. */
const WORD_THRESHOLD = 64;

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
 * import assert from "node:assert/strict";
 * import { applyMask } from "@scope/ws/frames";
 *
 * const key = new Uint8Array([1, 2, 3, 4]);
 * const data = new TextEncoder().encode("Hello");
 * applyMask(data, key);
 * assert.notEqual(new TextDecoder().decode(data), "Hello");
 * applyMask(data, key);
 * assert.equal(new TextDecoder().decode(data), "Hello");
 * ```
 */
export function applyMask(
  data: Uint8Array,
  key: Uint8Array,
  offset?: number,
): void {
  xorMask(
    data,
    (key[0] | (key[1] << 8) | (key[2] << 16) | (key[3] << 24)) >>> 0,
    offset ?? 0,
  );
}

/**
 * `applyMask` with the key as one number: byte `n` of the key in bits
 * `8n` to `8n + 7` (a decoder keeps it so, rather than in an array).
 */
export function xorMask(data: Uint8Array, key: number, offset: number): void {
  const length = data.length;
  const k0 = keyByte(key, offset);
  const k1 = keyByte(key, offset + 1);
  const k2 = keyByte(key, offset + 2);
  const k3 = keyByte(key, offset + 3);
  let i = 0;
  if (length < WORD_THRESHOLD) {
    for (; i + 4 <= length; i += 4) {
      data[i] ^= k0;
      data[i + 1] ^= k1;
      data[i + 2] ^= k2;
      data[i + 3] ^= k3;
    }
  } else {
    // Bytes before the first 4-byte boundary of the underlying buffer, then
    // whole words with the key rotated to that boundary, in platform order.
    const head = (4 - (data.byteOffset & 3)) & 3;
    for (; i < head; i++) data[i] ^= keyByte(key, offset + i);
    const k = offset + i;
    const b0 = keyByte(key, k), b1 = keyByte(key, k + 1);
    const b2 = keyByte(key, k + 2), b3 = keyByte(key, k + 3);
    const keyWord = LITTLE_ENDIAN
      ? b0 | (b1 << 8) | (b2 << 16) | (b3 << 24)
      : (b0 << 24) | (b1 << 16) | (b2 << 8) | b3;
    const words = (length - i) >>> 2;
    const view = new Uint32Array(data.buffer, data.byteOffset + i, words);
    for (let w = 0; w < words; w++) view[w] ^= keyWord;
    i += words << 2;
  }
  for (; i < length; i++) data[i] ^= keyByte(key, offset + i);
}

/** The key byte that masks byte `at` of a payload. */
function keyByte(key: number, at: number): number {
  return (key >>> ((at & 3) << 3)) & 255;
}

/** Random bytes for masking keys, drawn 4 at a time (one call per 1,024 keys). */
let pool = new Uint8Array(0);
let poolAt = 0;

/**
 * A fresh masking key: 4 bytes from a strong source of entropy, as §5.3
 * requires, drawn from a pool so that most keys cost no system call.
 */
export function maskKey(): Uint8Array {
  if (poolAt === pool.length) {
    pool = crypto.getRandomValues(new Uint8Array(4096));
    poolAt = 0;
  }
  poolAt += 4;
  return pool.subarray(poolAt - 4, poolAt);
}
