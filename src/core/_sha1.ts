// SHA-1 (RFC 3174) of short inputs, synchronous: what the opening handshake
// needs for `Sec-WebSocket-Accept`. WebCrypto's digest was a sixth of the
// server's CPU per handshake (an asynchronous op and its promise for 60
// bytes); here the same digest is a few microseconds of plain arithmetic.
// SHA-1 protects nothing in the handshake (RFC 6455 §10.3 uses it only to
// prove the server read the key), so speed is all that matters.

/** The message schedule, reused: SHA-1 runs to completion synchronously. */
const schedule = new Int32Array(80);

/** The padded message of short inputs (a handshake's 60 bytes), reused. */
const small = new Uint8Array(128);

/** The 20-byte SHA-1 digest of `data`. */
export function sha1(data: Uint8Array): Uint8Array {
  const length = data.length;
  // The message, a 1 bit, zeros, and the length in bits: whole 64-byte blocks.
  const size = (((length + 8) >>> 6) + 1) * 64;
  const padded = size <= small.length
    ? small.subarray(0, size).fill(0)
    : new Uint8Array(size);
  padded.set(data);
  padded[length] = 0x80;
  const bits = length * 8;
  const high = Math.floor(bits / 0x100000000);
  for (let i = 0; i < 4; i++) {
    padded[size - 8 + i] = high >>> (24 - 8 * i);
    padded[size - 4 + i] = bits >>> (24 - 8 * i);
  }
  let h0 = 0x67452301, h1 = 0xefcdab89, h2 = 0x98badcfe, h3 = 0x10325476;
  let h4 = 0xc3d2e1f0;
  const w = schedule;
  for (let block = 0; block < size; block += 64) {
    for (let t = 0, at = block; t < 16; t++, at += 4) {
      w[t] = (padded[at] << 24) | (padded[at + 1] << 16) |
        (padded[at + 2] << 8) | padded[at + 3];
    }
    for (let t = 16; t < 80; t++) {
      const x = w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16];
      w[t] = (x << 1) | (x >>> 31);
    }
    let a = h0, b = h1, c = h2, d = h3, e = h4;
    for (let t = 0; t < 80; t++) {
      let f: number, k: number;
      if (t < 20) {
        f = (b & c) | (~b & d);
        k = 0x5a827999;
      } else if (t < 40) {
        f = b ^ c ^ d;
        k = 0x6ed9eba1;
      } else if (t < 60) {
        f = (b & c) | (b & d) | (c & d);
        k = 0x8f1bbcdc;
      } else {
        f = b ^ c ^ d;
        k = 0xca62c1d6;
      }
      const next = (((a << 5) | (a >>> 27)) + f + e + k + w[t]) | 0;
      e = d;
      d = c;
      c = (b << 30) | (b >>> 2);
      b = a;
      a = next;
    }
    h0 = (h0 + a) | 0;
    h1 = (h1 + b) | 0;
    h2 = (h2 + c) | 0;
    h3 = (h3 + d) | 0;
    h4 = (h4 + e) | 0;
  }
  const digest = new Uint8Array(20);
  const words = [h0, h1, h2, h3, h4];
  for (let i = 0; i < 20; i++) {
    digest[i] = words[i >>> 2] >>> (24 - 8 * (i & 3));
  }
  return digest;
}
