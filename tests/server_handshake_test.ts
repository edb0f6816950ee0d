// The opening handshake's accept value without sockets: the platform's SHA-1
// (node:crypto) against RFC 3174's vectors, WebCrypto and RFC 6455's sample.

import assert from "node:assert/strict";
import { computeAccept, sha1Base64 } from "../src/core/_handshake.ts";
import { GOOD_ACCEPT, GOOD_KEY } from "./_raw_client.ts";
import { pseudoText } from "./_util.ts";

const encoder = new TextEncoder();

Deno.test("§4.2.2 Sec-WebSocket-Accept is base64(SHA-1(key + GUID)), the platform's SHA-1 checked against RFC 3174's vectors and WebCrypto", async () => {
  assert.equal(computeAccept(GOOD_KEY), GOOD_ACCEPT);
  assert.equal(computeAccept("dGhlIHNhbXBsZSBub25jZQ=="), GOOD_ACCEPT);
  const base64 = (hex: string) => Uint8Array.fromHex(hex).toBase64();
  // RFC 3174 §7.3's test vectors, and the empty message.
  assert.equal(
    sha1Base64("abc"),
    base64("a9993e364706816aba3e25717850c26c9cd0d89d"),
  );
  assert.equal(
    sha1Base64("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
    base64("84983e441c3bd26ebaae4aa1f95129e5e54670f1"),
  );
  assert.equal(
    sha1Base64("a".repeat(1_000_000)),
    base64("34aa973cd4c4daa4f61eeb2bdbad27316534016f"),
  );
  assert.equal(
    sha1Base64(""),
    base64("da39a3ee5e6b4b0d3255bfef95601890afd80709"),
  );
  // Every length around the 64-byte block boundaries, as WebCrypto says.
  const text = pseudoText(300);
  for (let length = 0; length <= 300; length++) {
    const input = text.slice(0, length);
    const digest = await crypto.subtle.digest("SHA-1", encoder.encode(input));
    assert.equal(
      sha1Base64(input),
      new Uint8Array(digest).toBase64(),
      `length ${length}`,
    );
  }
});
