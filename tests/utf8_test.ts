// RFC 6455 §8.1 / RFC 3629: UTF-8 checked in pieces cut anywhere
// (src/protocol/_utf8.ts), against the WHATWG decoder with `fatal` as the
// reference.

import assert from "node:assert/strict";
import { decodeUtf8, Utf8Text, Utf8Validator } from "../src/protocol/_utf8.ts";
import { mulberry32 } from "./_util.ts";

const encoder = new TextEncoder();

/**
 * The index of the first byte at which a streaming `fatal` decoder fed one
 * byte at a time throws, `bytes.length` if it ends inside a character, or
 * -1 if the bytes are valid.
 */
function referenceFailure(bytes: Uint8Array): number {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  for (let i = 0; i < bytes.length; i++) {
    try {
      decoder.decode(bytes.subarray(i, i + 1), { stream: true });
    } catch {
      return i;
    }
  }
  try {
    decoder.decode();
    return -1;
  } catch {
    return bytes.length;
  }
}

/** Where a validator fed `bytes` in `pieces` fails, as `referenceFailure`. */
function validatorFailure(bytes: Uint8Array, cuts: number[]): number {
  const validator = new Utf8Validator();
  let start = 0;
  for (const end of [...cuts, bytes.length]) {
    if (!validator.check(bytes.subarray(start, end))) {
      // The failing byte is in this piece: find it one byte at a time.
      const again = new Utf8Validator();
      assert.ok(again.check(bytes.subarray(0, start)));
      for (let i = start; i < end; i++) {
        if (!again.check(bytes.subarray(i, i + 1))) return i;
      }
      assert.fail("the piece failed, its bytes one at a time did not");
    }
    start = end;
  }
  return validator.complete ? -1 : bytes.length;
}

/** Mostly valid text with a few corrupted or removed bytes. */
function randomBytes(random: () => number, length: number): Uint8Array {
  const pool = ["a", "é", "€", "😀", "\u0800", "\uFFFD", "\u{10FFFF}", "z"];
  let text = "";
  while (text.length < length) text += pool[Math.floor(random() * 8)];
  const bytes = encoder.encode(text);
  const nasty = [0x80, 0xbf, 0xc0, 0xc1, 0xe0, 0xed, 0xf0, 0xf4, 0xf5, 0xff];
  if (random() < 0.7) {
    const at = Math.floor(random() * bytes.length);
    bytes[at] = random() < 0.5
      ? nasty[Math.floor(random() * nasty.length)]
      : Math.floor(random() * 256);
  }
  return random() < 0.2 ? bytes.subarray(0, bytes.length - 1) : bytes;
}

Deno.test("§8.1 the UTF-8 validator fails at the same byte as the fatal decoder, however the bytes are cut (random cases)", () => {
  const random = mulberry32(19);
  for (let round = 0; round < 3000; round++) {
    // Long enough, at times, for pieces checked by `isUtf8` (256 bytes
    // and more) and for pieces decoded where they are (4 KiB and more).
    const size = round % 50 === 0 ? 6000 : round % 10 === 0 ? 900 : 12;
    const bytes = randomBytes(random, size);
    const cuts: number[] = [];
    const cutEvery = size === 6000 ? 5000 : size === 900 ? 300 : 5;
    for (let i = 1; i < bytes.length; i++) {
      if (random() * cutEvery < 1) cuts.push(i);
    }
    const expected = referenceFailure(bytes);
    assert.equal(
      validatorFailure(bytes, cuts),
      expected,
      `bytes ${[...bytes].map((b) => b.toString(16))} cut at ${cuts}`,
    );
    // Whole, and by `Utf8Text`, the same verdict.
    const text = new Utf8Text();
    let valid = true;
    let start = 0;
    for (const end of [...cuts, bytes.length]) {
      if (!text.push(bytes.subarray(start, end))) {
        valid = false;
        break;
      }
      start = end;
    }
    const result = valid ? text.end() : null;
    assert.equal(result !== null, expected === -1);
    assert.equal(decodeUtf8(bytes) !== null, expected === -1);
    if (result !== null) assert.equal(result, new TextDecoder().decode(bytes));
  }
});

Deno.test("§8.1 the UTF-8 validator refuses each boundary case the fatal decoder refuses", () => {
  const cases: number[][] = [
    [0xc2, 0x80], // U+0080, the first 2-byte character
    [0xc1, 0xbf], // overlong
    [0xe0, 0xa0, 0x80], // U+0800
    [0xe0, 0x9f, 0xbf], // overlong
    [0xed, 0x9f, 0xbf], // U+D7FF
    [0xed, 0xa0, 0x80], // a surrogate
    [0xee, 0x80, 0x80], // U+E000
    [0xef, 0xbf, 0xbf], // U+FFFF
    [0xf0, 0x90, 0x80, 0x80], // U+10000
    [0xf0, 0x8f, 0xbf, 0xbf], // overlong
    [0xf4, 0x8f, 0xbf, 0xbf], // U+10FFFF
    [0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
    [0xf5, 0x80, 0x80, 0x80],
    [0xef, 0xbb, 0xbf], // U+FEFF
  ];
  for (const bytes of cases.map((c) => new Uint8Array(c))) {
    for (let cut = 0; cut <= bytes.length; cut++) {
      const cuts = cut === 0 || cut === bytes.length ? [] : [cut];
      assert.equal(
        validatorFailure(bytes, cuts),
        referenceFailure(bytes),
        `${[...bytes].map((b) => b.toString(16))} cut at ${cut}`,
      );
    }
  }
});

Deno.test("§8.1 a long text in 1-byte pieces is decoded with few TextDecoder calls, and a leading U+FEFF is kept", () => {
  const expected = "\uFEFF" + "abcd\u00e9\u20ac\u{1F600}xyz".repeat(20_000);
  const bytes = encoder.encode(expected);
  const decode = TextDecoder.prototype.decode;
  let calls = 0;
  TextDecoder.prototype.decode = function (...args) {
    calls++;
    return decode.apply(this, args);
  };
  let result: string | null;
  try {
    const text = new Utf8Text();
    for (let i = 0; i < bytes.length; i++) {
      assert.ok(text.push(bytes.subarray(i, i + 1)));
    }
    result = text.end();
  } finally {
    TextDecoder.prototype.decode = decode;
  }
  assert.equal(result, expected);
  // 320 KiB: five 64 KiB pieces, and the end.
  assert.ok(calls <= 8, `${calls} TextDecoder calls for ${bytes.length} bytes`);
});
