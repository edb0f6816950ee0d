// The handshake's own SHA-1, checked against RFC 3174's test vectors and
// against WebCrypto over every length around the block boundaries.

import assert from "node:assert/strict";
import { sha1 } from "../src/core/_sha1.ts";
import { computeAccept } from "../src/core/_handshake.ts";
import { pseudoRandomBytes } from "./_util.ts";

const hex = (bytes: Uint8Array) =>
  Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
const encode = (text: string) => new TextEncoder().encode(text);

Deno.test("RFC 3174 §7.3 sha1 gives the test vectors' digests", () => {
  assert.equal(
    hex(sha1(encode("abc"))),
    "a9993e364706816aba3e25717850c26c9cd0d89d",
  );
  assert.equal(
    hex(
      sha1(encode("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
    ),
    "84983e441c3bd26ebaae4aa1f95129e5e54670f1",
  );
  assert.equal(
    hex(sha1(encode("a".repeat(1_000_000)))),
    "34aa973cd4c4daa4f61eeb2bdbad27316534016f",
  );
  assert.equal(
    hex(sha1(new Uint8Array(0))),
    "da39a3ee5e6b4b0d3255bfef95601890afd80709",
  );
});

Deno.test("sha1 matches WebCrypto's SHA-1 for every length from 0 to 300 bytes", async () => {
  const data = pseudoRandomBytes(300);
  for (let length = 0; length <= 300; length++) {
    const input = data.slice(0, length);
    const expected = new Uint8Array(await crypto.subtle.digest("SHA-1", input));
    assert.equal(hex(sha1(input)), hex(expected), `length ${length}`);
  }
});

Deno.test("§4.2.2 Sec-WebSocket-Accept of the RFC's sample key", () => {
  assert.equal(
    computeAccept("dGhlIHNhbXBsZSBub25jZQ=="),
    "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
  );
});
