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

import { parseArgs } from "node:util";
import {
  type PerMessageDeflateOptions,
  serve,
  type WebSocketConnection,
  type WebSocketServer,
} from "../mod.ts";

/** Options for {@linkcode startEchoServer}. */
export interface EchoServerOptions {
  /** The port to listen on. Default `8080`; `0` picks a free one. */
  port?: number;
  /** The address to listen on. Default `"127.0.0.1"`. */
  hostname?: string;
  /** Called once listening; default: prints the page and WebSocket addresses. */
  onListen?: (addr: Deno.NetAddr) => void;
  /** Aborting it shuts the server down. */
  signal?: AbortSignal;
  /** Sees each accepted socket before its echo starts (tests watch `closed`). */
  onSocket?: (socket: WebSocketConnection) => void;
  /** permessage-deflate for clients that offer it. Default `true`. */
  perMessageDeflate?: boolean | PerMessageDeflateOptions;
}

const DEFAULT_PORT = 8080;
/** Only this machine can connect unless asked otherwise. */
const DEFAULT_HOSTNAME = "127.0.0.1";

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
    onListen: options.onListen ?? _printAddress,
    onRequest: _page,
    perMessageDeflate: options.perMessageDeflate ?? true,
  }, (socket) => {
    options.onSocket?.(socket);
    // The whole echo: each message read is written back as it is. When the
    // peer closes, `readable` ends and the server echoes the close (§5.5.1).
    return socket.readable.pipeTo(socket.writable);
  });
}

function _printAddress(addr: Deno.NetAddr): void {
  const host = addr.hostname.includes(":")
    ? `[${addr.hostname}]`
    : addr.hostname;
  console.log(
    `Echo server listening on http://${host}:${addr.port}/ ` +
      `(WebSockets on ws://${host}:${addr.port}/ and any other path)`,
  );
}

/** Answers plain HTTP requests: the page at `/`, nothing elsewhere. */
function _page(request: Request): Response {
  const { pathname } = new URL(request.url);
  if (pathname !== "/") {
    return new Response("Not found: WebSockets connect on any path", {
      status: 404,
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  }
  if (request.method !== "GET" && request.method !== "HEAD") {
    return new Response("Method not allowed", {
      status: 405,
      headers: {
        "content-type": "text/plain; charset=utf-8",
        allow: "GET, HEAD",
      },
    });
  }
  return new Response(ECHO_PAGE, {
    headers: {
      "content-type": "text/html; charset=utf-8",
      "cache-control": "no-store",
    },
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
<style>
  body { font: 16px/1.4 system-ui, sans-serif; max-width: 48rem; margin: 2rem auto; padding: 0 1rem; }
  form { display: flex; gap: 0.5rem; flex-wrap: wrap; }
  #message { flex: 1; min-width: 12rem; }
  #log { font-family: ui-monospace, monospace; white-space: pre-wrap; list-style: none; padding: 0; }
  #log li { border-bottom: 1px solid #ddd; padding: 0.25rem 0; }
</style>
</head>
<body>
<h1>WebSocket echo</h1>
<p>Status: <output id="status">connecting</output></p>
<p>Extensions: <output id="extensions">none</output></p>
<form id="form">
  <input id="message" autocomplete="off" placeholder="A message" value="Hello, echo!">
  <button id="send" type="submit">Send</button>
  <button id="send-binary" type="button">Send binary</button>
  <button id="close" type="button">Close</button>
</form>
<ul id="log"></ul>
<script>
  const status = document.getElementById("status");
  const log = document.getElementById("log");
  const input = document.getElementById("message");
  const show = (line) => {
    const item = document.createElement("li");
    item.textContent = line;
    log.prepend(item);
  };
  const socket = new WebSocket(location.origin.replace(/^http/, "ws") + "/");
  socket.binaryType = "arraybuffer";
  socket.onopen = () => {
    status.value = "open";
    document.getElementById("extensions").value = socket.extensions || "none";
  };
  socket.onmessage = (event) => {
    if (typeof event.data === "string") {
      show("echo (text): " + event.data);
    } else {
      const bytes = new Uint8Array(event.data);
      const hex = Array.from(bytes.subarray(0, 16), (b) => b.toString(16).padStart(2, "0")).join(" ");
      show("echo (binary, " + bytes.length + " bytes): " + hex + (bytes.length > 16 ? " …" : ""));
    }
  };
  socket.onclose = (event) => {
    status.value = "closed (" + event.code + (event.reason ? " " + event.reason : "") + ")";
  };
  socket.onerror = () => { show("error: the connection failed"); };
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
</script>
</body>
</html>
`;

/** Reads the port and address from the flags, then the environment. */
function _parseCli(args: string[]): { port: number; hostname: string } {
  const { values } = parseArgs({
    args,
    options: {
      port: { type: "string", short: "p" },
      hostname: { type: "string", short: "H" },
    },
    strict: true,
  });
  const portText = values.port ?? _env("PORT") ?? String(DEFAULT_PORT);
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535) {
    throw new RangeError(`The port must be 0-65535, got "${portText}"`);
  }
  const hostname = values.hostname ?? _env("HOSTNAME") ?? DEFAULT_HOSTNAME;
  return { port, hostname };
}

/** An environment variable, or undefined when unset or not permitted. */
function _env(name: string): string | undefined {
  const permission = Deno.permissions.querySync({
    name: "env",
    variable: name,
  });
  if (permission.state !== "granted") return undefined;
  return Deno.env.get(name) || undefined;
}

if (import.meta.main) {
  let cli: { port: number; hostname: string };
  try {
    cli = _parseCli(Deno.args);
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
    console.error("Usage: echo.ts [--port N] [--hostname ADDRESS]");
    Deno.exit(2);
  }
  const controller = new AbortController();
  const server = startEchoServer({ ...cli, signal: controller.signal });
  const stop = () => {
    console.log("Shutting down");
    Deno.removeSignalListener("SIGINT", stop);
    controller.abort();
  };
  Deno.addSignalListener("SIGINT", stop);
  await server.finished;
}
