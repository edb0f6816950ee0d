import assert from "node:assert/strict";
import { applyMask } from "../src/protocol/mask.ts";
import { assertBytesEqual } from "./_util.ts";

const KEYS = [
  new Uint8Array([0x37, 0xfa, 0x21, 0x3d]), // RFC 6455 §5.7's key
  new Uint8Array([0x00, 0x00, 0x00, 0x00]),
  new Uint8Array([0xff, 0x01, 0x80, 0x7f]),
];

/** XORs byte by byte, the way RFC 6455 §5.3 states it (j = i MOD 4). */
function referenceMask(
  data: Uint8Array,
  key: Uint8Array,
  offset: number,
): Uint8Array {
  return data.map((byte, i) => byte ^ key[(offset + i) % 4]);
}

/** Bytes that differ at every position, so a misplaced XOR shows. */
function pattern(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 31 + seed * 17 + 5) & 255);
}

Deno.test("§5.3 applyMask matches a byte-by-byte reference for lengths 0..70, view byteOffsets 0..3 and key offsets 0..3", () => {
  for (const key of KEYS) {
    for (let length = 0; length <= 70; length++) {
      for (let byteOffset = 0; byteOffset < 4; byteOffset++) {
        for (let offset = 0; offset < 4; offset++) {
          // Guard bytes on both sides of the view must stay untouched.
          const buffer = new ArrayBuffer(byteOffset + length + 8);
          const whole = new Uint8Array(buffer);
          whole.fill(0xa5);
          const data = new Uint8Array(buffer, byteOffset, length);
          const original = pattern(length, byteOffset + offset);
          data.set(original);
          applyMask(data, key, offset);
          const where = `key ${key}, length ${length}, ` +
            `byteOffset ${byteOffset}, offset ${offset}`;
          assertBytesEqual(data, referenceMask(original, key, offset), where);
          assert.ok(
            whole.subarray(0, byteOffset).every((b) => b === 0xa5),
            `bytes before the view changed: ${where}`,
          );
          assert.ok(
            whole.subarray(byteOffset + length).every((b) => b === 0xa5),
            `bytes after the view changed: ${where}`,
          );
        }
      }
    }
  }
});

Deno.test("§5.3 applyMask treats key offsets beyond 3 modulo 4", () => {
  const key = KEYS[0];
  const original = pattern(33, 1);
  for (const offset of [4, 5, 6, 7, 1021, 65_539, 2 ** 32 + 2]) {
    const data = original.slice();
    applyMask(data, key, offset);
    assertBytesEqual(
      data,
      referenceMask(original, key, offset % 4),
      `${offset}`,
    );
  }
});

Deno.test("§5.3 applyMask twice with the same key and offset restores the data", () => {
  const original = pattern(1000, 9);
  const data = original.slice();
  applyMask(data.subarray(3), KEYS[2], 2);
  assert.ok(data.some((byte, i) => byte !== original[i]), "masked");
  applyMask(data.subarray(3), KEYS[2], 2);
  assertBytesEqual(data, original);
});

Deno.test("§5.3 applyMask reads a key that is a view into a larger buffer", () => {
  const keyBuffer = new Uint8Array([9, 9, 9, 0x37, 0xfa, 0x21, 0x3d, 9]);
  const key = keyBuffer.subarray(3, 7);
  const original = pattern(50, 3);
  for (let byteOffset = 0; byteOffset < 4; byteOffset++) {
    const data = new Uint8Array(60).subarray(byteOffset, byteOffset + 50);
    data.set(original);
    applyMask(data, key, 1);
    assertBytesEqual(data, referenceMask(original, KEYS[0], 1));
  }
});

Deno.test("§5.3 applyMask of a payload in pieces, each with its running offset, equals unmasking it at once", () => {
  const key = KEYS[0];
  const original = pattern(257, 4);
  const expected = referenceMask(original, key, 0);
  // Every way of cutting the payload into three pieces at a few cut points,
  // in a buffer offset by 0..3 bytes so pieces start at every alignment.
  const cuts = [0, 1, 2, 3, 4, 5, 7, 8, 63, 64, 65, 128, 255, 256, 257];
  for (let byteOffset = 0; byteOffset < 4; byteOffset++) {
    for (const first of cuts) {
      for (const second of cuts) {
        if (second < first) continue;
        const data = new Uint8Array(original.length + 4)
          .subarray(byteOffset, byteOffset + original.length);
        data.set(original);
        applyMask(data.subarray(0, first), key, 0);
        applyMask(data.subarray(first, second), key, first);
        applyMask(data.subarray(second), key, second);
        assertBytesEqual(
          data,
          expected,
          `byteOffset ${byteOffset}, cuts ${first}/${second}`,
        );
      }
    }
  }
});

Deno.test("§5.3 applyMask of a payload one byte at a time equals unmasking it at once", () => {
  const key = KEYS[2];
  const original = pattern(70, 7);
  const data = original.slice();
  for (let i = 0; i < data.length; i++) {
    applyMask(data.subarray(i, i + 1), key, i);
  }
  assertBytesEqual(data, referenceMask(original, key, 0));
});
