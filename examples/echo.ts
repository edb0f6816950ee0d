/**
 * An echo server: every message that arrives on a WebSocket, on any path, is
 * sent back as it came (text as text, binary as binary, any size up to the
 * server's message limit, 16 MiB by default). A plain `GET /` serves a small
 * page whose script connects back, so that a person can try it in a browser.
 *
 * It compresses with permessage-deflate (RFC 7692) for clients that offer
 * it, as every browser does: echoes of 1 KiB and more go out compressed.
 *
 * Run it with:
 *
 * ```sh
 * deno task echo
 * # which is
 * deno run --allow-net --allow-env examples/echo.ts
 * # on another port or address (flags win over the environment)
 * deno run --allow-net --allow-env examples/echo.ts --port 9000 --hostname 0.0.0.0
 * PORT=9000 deno task echo
 * ```
 *
 * It listens on `127.0.0.1:8080` by default and prints where it listens; open
 * that address in a browser. Ctrl+C shuts it down, closing open WebSockets
 * with 1001 (going away).
 *
 * Note that some environments (Docker containers, for one) export `HOSTNAME`
 * as the machine's name: the address printed at start says what was used.
 *
 * @module
 */

import {
  type PerMessageDeflateOptions,
  serve,
  type WebSocketConnection,
  type WebSocketServer,
} from "../mod.ts";
import { DEFAULT_HOSTNAME, printAddress, runMain, servePage } from "./_app.ts";

/** Options for {@linkcode startEchoServer}. */
export interface EchoServerOptions {
  /** The port to listen on. Default `8080`; `0` picks a free one. */
  port?: number;
  /** The address to listen on. Default `"127.0.0.1"`. */
  hostname?: string;
  /** Called once listening; default: prints the address to open. */
  onListen?: (addr: Deno.NetAddr) => void;
  /** Aborting it shuts the server down. */
  signal?: AbortSignal;
  /** Sees each accepted socket before its echo starts (tests watch `closed`). */
  onSocket?: (socket: WebSocketConnection) => void;
  /** permessage-deflate for clients that offer it. Default `true`. */
  perMessageDeflate?: boolean | PerMessageDeflateOptions;
}

const DEFAULT_PORT = 8080;

/**
 * Starts the echo server and returns it; `shutdown()` (or `await using`, or
 * the signal) stops it.
 *
 * @example Starting it on a free port
 * ```ts ignore
 * import { startEchoServer } from "./examples/echo.ts";
 *
 * await using server = startEchoServer({ port: 0, onListen() {} });
 * const socket = new WebSocket(`ws://127.0.0.1:${server.addr.port}/`);
 * ```
 */
export function startEchoServer(
  options: EchoServerOptions = {},
): WebSocketServer {
  return serve({
    port: options.port ?? DEFAULT_PORT,
    hostname: options.hostname ?? DEFAULT_HOSTNAME,
    signal: options.signal,
    onListen: options.onListen ?? printAddress("Echo server"),
    fetch: servePage(ECHO_PAGE),
    perMessageDeflate: options.perMessageDeflate ?? true,
  }, (socket) => {
    options.onSocket?.(socket);
    // The whole echo: each message read is written back as it is. When the
    // peer closes, `readable` ends and the server echoes the close (§5.5.1).
    return socket.readable.pipeTo(socket.writable);
  });
}

/**
 * The page served at `/`. Its script connects to the origin it was loaded
 * from, so it works on whatever address and port the server listens on.
 */
const ECHO_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>WebSocket echo</title>
<link rel="icon" href="data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Ccircle cx='8' cy='8' r='7' fill='%23265'/%3E%3C/svg%3E">
<style>
  body { font: 16px/1.4 system-ui, sans-serif; max-width: 48rem; margin: 2rem auto; padding: 0 1rem; }
  form { display: flex; gap: 0.5rem; flex-wrap: wrap; }
  #message { flex: 1; min-width: 12rem; }
  pre { background: #f4f4f4; padding: 0.75rem; overflow-x: auto; }
  #log { font-family: ui-monospace, monospace; white-space: pre-wrap; overflow-wrap: anywhere; list-style: none; padding: 0; }
  #log li { border-bottom: 1px solid #ddd; padding: 0.25rem 0; }
  #log li.echo { padding-left: 1.5rem; color: #265; }
</style>
</head>
<body>
<h1>WebSocket echo</h1>
<p>This page talks to a server made with <code>@scope/ws</code>. All of it:</p>
<pre><code>import { serve } from "jsr:@scope/ws";

serve({ port: 8080, perMessageDeflate: true, fetch: page }, (socket) =&gt;
  // Every message read is written back as it came.
  socket.readable.pipeTo(socket.writable));</code></pre>
<p>Status: <output id="status">connecting</output> ·
  Extensions: <output id="extensions">none</output></p>
<form id="form">
  <input id="message" autocomplete="off" placeholder="A message" value="Hello, echo!">
  <button id="send" type="submit">Send</button>
  <button id="send-binary" type="button">Send binary</button>
  <button id="close" type="button">Close</button>
  <button id="connect" type="button" disabled>Reconnect</button>
</form>
<ol id="log"></ol>
<script>
  const status = document.getElementById("status");
  const extensions = document.getElementById("extensions");
  const log = document.getElementById("log");
  const input = document.getElementById("message");
  const connectButton = document.getElementById("connect");
  // Oldest first: each echo shows below what was sent.
  const show = (line, kind) => {
    const item = document.createElement("li");
    item.textContent = line;
    if (kind) item.className = kind;
    log.append(item);
    item.scrollIntoView({ block: "nearest" });
  };
  let socket;
  const connect = () => {
    connectButton.disabled = true;
    status.value = "connecting";
    socket = new WebSocket(location.origin.replace(/^http/, "ws") + "/");
    socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      status.value = "open";
      extensions.value = socket.extensions || "none";
      show("connected");
    };
    socket.onmessage = (event) => {
      if (typeof event.data === "string") {
        show("echo (text): " + event.data, "echo");
      } else {
        const bytes = new Uint8Array(event.data);
        const hex = Array.from(bytes.subarray(0, 16), (b) => b.toString(16).padStart(2, "0")).join(" ");
        show("echo (binary, " + bytes.length + " bytes): " + hex + (bytes.length > 16 ? " …" : ""), "echo");
      }
    };
    socket.onclose = (event) => {
      status.value = "closed (" + event.code + (event.reason ? " " + event.reason : "") + ")";
      show("closed with " + event.code + (event.reason ? " " + event.reason : ""));
      connectButton.disabled = false;
    };
    socket.onerror = () => show("error: the connection failed");
  };
  const ready = () => {
    if (socket.readyState === WebSocket.OPEN) return true;
    show("not sent: the socket is " + status.value);
    return false;
  };
  document.getElementById("form").onsubmit = (event) => {
    event.preventDefault();
    if (!ready()) return;
    socket.send(input.value);
    show("sent (text): " + input.value);
  };
  document.getElementById("send-binary").onclick = () => {
    if (!ready()) return;
    const bytes = crypto.getRandomValues(new Uint8Array(8));
    socket.send(bytes);
    show("sent (binary, 8 bytes)");
  };
  document.getElementById("close").onclick = () => socket.close(1000, "Bye");
  connectButton.onclick = connect;
  connect();
</script>
</body>
</html>
`;

if (import.meta.main) {
  await runMain("echo.ts", DEFAULT_PORT, startEchoServer);
}
