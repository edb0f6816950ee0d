import assert from "node:assert/strict";
import {
  encodeClosePayload,
  parseClosePayload,
} from "../src/protocol/_close_frame.ts";
import { WebSocketError } from "../src/protocol/websocket_error.ts";
import { assertCloseError } from "./_util.ts";

const encoder = new TextEncoder();
const strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function payload(code: number, ...reason: number[]): Uint8Array {
  return new Uint8Array([code >>> 8, code & 255, ...reason]);
}

// §7.4.1 and the IANA registry (§11.7): the codes an endpoint may receive
// are 1000–1003, 1007–1014 (1012 Service Restart, 1013 Try Again Later, the
// slow-consumer close, 1014 Bad Gateway) and 3000–4999; 1004–1006, 1015,
// 1016 and 0–999, 1017–2999 and 5000+ are refused.
function isAccepted(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999);
}

Deno.test("§5.5.1 parseClosePayload reads an empty payload as 1005 with no reason", () => {
  assert.deepEqual(parseClosePayload(new Uint8Array(0)), {
    closeCode: 1005,
    reason: "",
  });
});

Deno.test("§5.5.1 parseClosePayload refuses a 1-byte payload with 1002", () => {
  // 0x0f and 0x10 would read as 3840 and 4096, valid codes, if the missing
  // second byte were taken as 0.
  for (const byte of [0x00, 0x03, 0x0f, 0x10, 0xe8, 0xff]) {
    assertCloseError(() => parseClosePayload(new Uint8Array([byte])), 1002);
  }
});

Deno.test("§7.4 parseClosePayload reads the code big-endian and the reason as UTF-8", () => {
  assert.deepEqual(parseClosePayload(payload(1000)), {
    closeCode: 1000,
    reason: "",
  });
  assert.deepEqual(
    parseClosePayload(payload(4999, ...encoder.encode("bye ✓ 😀"))),
    { closeCode: 4999, reason: "bye ✓ 😀" },
  );
});

Deno.test("§7.4.1 parseClosePayload refuses each invalid code class with 1002", () => {
  const invalid = [
    0, // below the range
    999,
    1004, // reserved
    1005, // reported only: no status
    1006, // reported only: abnormal closure
    1015, // reported only: TLS failure
    1016,
    1999,
    2000,
    2999,
    5000,
    0xffff,
  ];
  for (const code of invalid) {
    assertCloseError(() => parseClosePayload(payload(code)), 1002);
    assertCloseError(
      () => parseClosePayload(payload(code, ...encoder.encode("why"))),
      1002,
    );
  }
});

Deno.test("§7.4.1 parseClosePayload accepts exactly 1000–1003, 1007–1014 and 3000–4999 over all 16-bit codes", () => {
  const wrong: number[] = [];
  for (let code = 0; code <= 0xffff; code++) {
    let got: number;
    try {
      got = parseClosePayload(payload(code)).closeCode;
    } catch (error) {
      got = error instanceof WebSocketError ? -error.closeCode : NaN;
    }
    if (got !== (isAccepted(code) ? code : -1002)) wrong.push(code);
  }
  assert.deepEqual(wrong, []);
});

Deno.test("§8.1 parseClosePayload refuses a reason that is not UTF-8 with 1007", () => {
  const invalid = [
    [0xff],
    [0x80], // a lone continuation byte
    [0xc0, 0x80], // an overlong encoding
    [0xed, 0xa0, 0x80], // a UTF-16 surrogate
    [0xf4, 0x90, 0x80, 0x80], // beyond U+10FFFF
    [0x61, 0xe2, 0x82], // a sequence cut off at the end
  ];
  for (const bytes of invalid) {
    assertCloseError(() => parseClosePayload(payload(1000, ...bytes)), 1007);
  }
});

Deno.test("§7.4 parseClosePayload checks the code before the reason", () => {
  assertCloseError(() => parseClosePayload(payload(1005, 0xff)), 1002);
});

Deno.test("§5.5.1 parseClosePayload keeps a leading U+FEFF in the reason", () => {
  const bytes = payload(1000, 0xef, 0xbb, 0xbf, 0x41);
  assert.deepEqual(parseClosePayload(bytes), {
    closeCode: 1000,
    reason: "\uFEFFA",
  });
});

Deno.test("§5.5.1 encodeClosePayload without a code gives the empty payload", () => {
  assert.deepEqual(encodeClosePayload(), new Uint8Array(0));
  assert.deepEqual(encodeClosePayload(undefined, "ignored"), new Uint8Array(0));
});

Deno.test("§5.5.1 encodeClosePayload writes the code big-endian, then the reason", () => {
  assert.deepEqual(encodeClosePayload(1000), new Uint8Array([0x03, 0xe8]));
  assert.deepEqual(
    encodeClosePayload(4000, "ok"),
    new Uint8Array([0x0f, 0xa0, 0x6f, 0x6b]),
  );
  assert.deepEqual(
    parseClosePayload(encodeClosePayload(3001, "déjà vu ✓")),
    { closeCode: 3001, reason: "déjà vu ✓" },
  );
});

Deno.test("§5.5 encodeClosePayload keeps a 123-byte reason whole and cuts a 124-byte one", () => {
  const fits = "x".repeat(123);
  assert.equal(encodeClosePayload(1000, fits).length, 125);
  assert.equal(parseClosePayload(encodeClosePayload(1000, fits)).reason, fits);
  const long = "y".repeat(124);
  const encoded = encodeClosePayload(1000, long);
  assert.equal(encoded.length, 125);
  assert.equal(parseClosePayload(encoded).reason, "y".repeat(123));
});

Deno.test("§5.5 encodeClosePayload cuts a long reason at a UTF-8 character boundary so the payload is at most 125 bytes", () => {
  // 2-, 3- and 4-byte characters placed at every position around byte 123.
  for (const char of ["é", "€", "😀"]) {
    const size = encoder.encode(char).length;
    for (let prefix = 115; prefix <= 124; prefix++) {
      const reason = "a".repeat(prefix) + char.repeat(10);
      const encoded = encodeClosePayload(1001, reason);
      const where = `${prefix} × "a" then ${char}`;
      assert.ok(encoded.length <= 125, where);
      // The cut leaves valid UTF-8 that is a prefix of the reason...
      const kept = strict.decode(encoded.subarray(2));
      assert.ok(reason.startsWith(kept), where);
      // ...and the longest one that fits: one more character would not.
      const keptBytes = encoded.length - 2;
      const nextSize = keptBytes < prefix ? 1 : size;
      assert.ok(keptBytes <= 123 && keptBytes + nextSize > 123, where);
      if (prefix + size <= 123) {
        assert.ok(kept.length > prefix, `${where}: a whole character fit`);
      }
    }
  }
});

Deno.test("§5.5 encodeClosePayload cuts a 3-byte character straddling byte 123 before it", () => {
  // "€" is E2 82 AC: with 122 ASCII bytes it takes bytes 122..124 of the
  // reason, so the whole character must go, leaving 122 bytes.
  const encoded = encodeClosePayload(1000, "a".repeat(122) + "€");
  assert.equal(encoded.length, 2 + 122);
  assert.equal(parseClosePayload(encoded).reason, "a".repeat(122));
});
