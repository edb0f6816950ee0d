/**
 * A line-based WebSocket client: it connects to the URL given on the command
 * line (default: the echo example at `ws://127.0.0.1:8080/`), sends each line
 * typed on stdin as a text message, and prints every message that comes back
 * (binary messages as their size). End stdin (Ctrl+D) to close the
 * connection cleanly; Ctrl+C quits at once.
 *
 * Run it with:
 *
 * ```sh
 * deno run --allow-net examples/client.ts
 * deno run --allow-net examples/client.ts wss://example.com/socket chat.v1
 * ```
 *
 * The arguments after the URL are subprotocols to offer. For a `wss:` server
 * with a certificate from a private CA, set `CA_CERT` to the CA's PEM file
 * (this needs `--allow-env --allow-read` too).
 *
 * @module
 */

import { connect, type WebSocketConnection } from "../mod.ts";

const [url = "ws://127.0.0.1:8080/", ...protocols] = Deno.args;

/** Splits decoded text into lines, without their line ends. */
function lines(): TransformStream<string, string> {
  let rest = "";
  return new TransformStream({
    transform(chunk, controller) {
      const parts = (rest + chunk).split(/\r?\n/);
      rest = parts.pop()!;
      for (const line of parts) controller.enqueue(line);
    },
    flush(controller) {
      if (rest !== "") controller.enqueue(rest);
    },
  });
}

function caCerts(): string[] | undefined {
  const permission = Deno.permissions.querySync({
    name: "env",
    variable: "CA_CERT",
  });
  if (permission.state !== "granted") return undefined;
  const path = Deno.env.get("CA_CERT");
  return path ? [Deno.readTextFileSync(path)] : undefined;
}

let socket: WebSocketConnection;
try {
  socket = await connect(url, { protocols, caCerts: caCerts() });
} catch (error) {
  console.error(error instanceof Error ? error.message : error);
  Deno.exit(1);
}

const chosen = socket.protocol ? ` (subprotocol ${socket.protocol})` : "";
console.error(
  `Connected to ${url}${chosen}. Type lines to send; Ctrl+D closes.`,
);

// Print what arrives; the loop ends when the connection closes.
const printing = (async () => {
  try {
    for await (const message of socket.readable) {
      console.log(
        typeof message === "string"
          ? message
          : `<binary message, ${message.length} bytes>`,
      );
    }
  } catch {
    // The connection failed: `closed` says how, below.
  }
})();

// Send each stdin line; at the end of stdin, closing `writable` starts the
// closing handshake.
Deno.stdin.readable
  .pipeThrough(new TextDecoderStream())
  .pipeThrough(lines())
  .pipeTo(socket.writable)
  .catch(() => {
    // The connection closed while stdin was still open.
  });

try {
  const { closeCode, reason } = await socket.closed;
  await printing;
  console.error(`Closed: ${closeCode}${reason ? ` ${reason}` : ""}`);
} catch (error) {
  console.error(error instanceof Error ? error.message : error);
  Deno.exitCode = 1;
}
// stdin may still be waiting for a line that will never be sent.
Deno.exit();
