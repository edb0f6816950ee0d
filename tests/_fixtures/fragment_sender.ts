/**
 * A client process that sends one message in fragments of `fragment` bytes
 * (1 by default) as fast as TCP takes them
 * (`deno run -A fragment_sender.ts <port> <kind> <bytes> [fragment]`, kind
 * `text`, `binary` or `compressed`: binary compressed with
 * permessage-deflate). In its own process, so that the bytes keep coming
 * while the server decodes them, as from a remote peer. The payload is
 * `fragmentPayload(kind, bytes)`, which the test builds too.
 *
 * It prints `sending` once the first MiB is written, then writes the rest
 * and waits for the server to close the connection.
 */
import zlib from "node:zlib";
import { fragmentPayload } from "../_util.ts";
import { fragments } from "../_wire.ts";

const [port, kind, size, fragmentArg = "1"] = Deno.args;
const fragment = Number(fragmentArg);
if (!(fragment >= 1 && fragment <= 125)) throw new RangeError("1 to 125");
const compressed = kind === "compressed";
let payload = fragmentPayload(kind, Number(size));
if (compressed) {
  // RFC 7692 §7.2.1: a sync flush, its trailing 00 00 ff ff removed.
  const deflated = zlib.deflateRawSync(payload, {
    finishFlush: zlib.constants.Z_SYNC_FLUSH,
  });
  payload = new Uint8Array(deflated.subarray(0, deflated.length - 4));
}
// Masked frames with a zero key: 6 bytes of header each.
const wire = fragments(kind === "text" ? 1 : 2, payload, fragment, {
  rsv: compressed ? 4 : 0,
  key: [0, 0, 0, 0],
});

const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
const extensions = compressed
  ? "Sec-WebSocket-Extensions: permessage-deflate\r\n"
  : "";
await conn.write(
  new TextEncoder().encode(
    `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
      `Sec-WebSocket-Version: 13\r\n${extensions}\r\n`,
  ),
);
const buffer = new Uint8Array(64 * 1024);
let head = "";
while (!head.includes("\r\n\r\n")) {
  const n = await conn.read(buffer);
  if (n === null) throw new Error("The server closed during the handshake");
  head += new TextDecoder().decode(buffer.subarray(0, n));
}
if (!head.startsWith("HTTP/1.1 101")) throw new Error(head);

let written = 0;
let told = false;
while (written < wire.length) {
  written += await conn.write(wire.subarray(written, written + 1024 * 1024));
  if (!told && written >= 1024 * 1024) {
    told = true;
    console.log("sending");
  }
}
// Whatever the server sends (its close, when the test ends), until EOF.
try {
  while (await conn.read(buffer) !== null) {
    // Discard.
  }
} catch {
  // Reset: the test is over.
}
conn.close();
