// What the browser examples (echo, chat, ticker) share: the address flags, the
// page at `/` and the files it loads, the same-origin check on upgrades, and
// running until Ctrl+C.

import { parseArgs } from "node:util";
import type { WebSocketServer } from "../mod.ts";

/** Only this machine can connect unless asked otherwise. */
export const DEFAULT_HOSTNAME = "127.0.0.1";

/** Where an example listens. */
export interface ListenAddress {
  port: number;
  hostname: string;
}

/**
 * Reads `--port N` / `PORT` and `--hostname H` / `HOSTNAME` (flags win over
 * the environment).
 *
 * @example
 * ```ts ignore
 * parseAddress(["--port", "9000"], 8081); // { port: 9000, hostname: "127.0.0.1" }
 * ```
 */
export function parseAddress(
  args: string[],
  defaultPort: number,
): ListenAddress {
  const { values } = parseArgs({
    args,
    options: {
      port: { type: "string", short: "p" },
      hostname: { type: "string", short: "H" },
    },
    strict: true,
  });
  const portText = values.port ?? env("PORT") ?? String(defaultPort);
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535) {
    throw new RangeError(`The port must be 0-65535, got "${portText}"`);
  }
  const hostname = values.hostname ?? env("HOSTNAME") ?? DEFAULT_HOSTNAME;
  return { port, hostname };
}

/**
 * What an example prints once listening: the address to open.
 *
 * @example
 * ```ts ignore
 * serve({ onListen: printAddress("Chat") }, handler);
 * ```
 */
export function printAddress(name: string): (addr: Deno.NetAddr) => void {
  return (addr) => {
    const host = addr.hostname.includes(":")
      ? `[${addr.hostname}]`
      : addr.hostname;
    console.log(
      `${name} listening on http://${host}:${addr.port}/ (open it in a browser)`,
    );
  };
}

/**
 * The style of a page's connection line (`<p id="connection">`): a dot and
 * a background by the `data-connection` of `<body>`: `connecting`,
 * `online`, `offline` or `closed`.
 */
export const CONNECTION_STYLE = `
  #connection::before { content: ""; display: inline-block; width: 0.6rem; height: 0.6rem; border-radius: 50%; margin-right: 0.5rem; background: #999; }
  [data-connection=online] #connection { background: #e8f5e9; }
  [data-connection=online] #connection::before { background: #2e7d32; }
  [data-connection=offline] #connection { background: #fff3e0; }
  [data-connection=offline] #connection::before { background: #ef6c00; }
  [data-connection=closed] #connection { background: #ffebee; }
  [data-connection=closed] #connection::before { background: #c62828; }`;

/** What answers a plain HTTP request to one path. */
export type Route = (request: Request) => Response | Promise<Response>;

/**
 * Answers plain HTTP requests with `html` at `/` and each of `routes` at its
 * path (GET and HEAD), and 404 elsewhere.
 *
 * @example The page and the live client module it imports
 * ```ts ignore
 * serve({
 *   fetch: servePage(PAGE, { "/live-client.js": LiveTopics.clientScript }),
 * }, handler);
 * ```
 */
export function servePage(
  html: string,
  routes: Record<string, Route> = {},
): (request: Request) => Response | Promise<Response> {
  const page: Route = () =>
    new Response(html, {
      headers: {
        "content-type": "text/html; charset=utf-8",
        "cache-control": "no-store",
      },
    });
  return (request) => {
    const path = new URL(request.url).pathname;
    const route = path === "/"
      ? page
      : Object.hasOwn(routes, path)
      ? routes[path]
      : undefined;
    if (route === undefined) {
      return new Response("Not found", {
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
    return route(request);
  };
}

/**
 * Refuses upgrades from pages of another site (403): browsers let any page
 * open a WebSocket to any address, this machine's included. Clients that
 * send no `Origin` (not a browser page) pass.
 *
 * @example
 * ```ts ignore
 * serve({ onUpgrade: sameOriginOnly }, handler);
 * ```
 */
export function sameOriginOnly(request: Request): Response | undefined {
  const origin = request.headers.get("origin");
  if (origin === null) return undefined;
  let host: string | undefined;
  try {
    host = new URL(origin).host;
  } catch {
    // An origin that is not a URL ("null") is another site's.
  }
  if (host !== request.headers.get("host")) {
    return new Response("Forbidden: another site's page", { status: 403 });
  }
  return undefined;
}

/**
 * Runs an example from the command line: parses the address, starts it,
 * and shuts it down on Ctrl+C (closing WebSockets with 1001).
 *
 * @example
 * ```ts ignore
 * if (import.meta.main) {
 *   await runMain("chat.ts", 8081, (options) => startChatServer(options));
 * }
 * ```
 */
export async function runMain(
  file: string,
  defaultPort: number,
  start: (options: ListenAddress & { signal: AbortSignal }) => WebSocketServer,
): Promise<void> {
  let address: ListenAddress;
  try {
    address = parseAddress(Deno.args, defaultPort);
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
    console.error(`Usage: ${file} [--port N] [--hostname ADDRESS]`);
    Deno.exit(2);
  }
  const controller = new AbortController();
  const server = start({ ...address, signal: controller.signal });
  const stop = () => {
    console.log("Shutting down");
    Deno.removeSignalListener("SIGINT", stop);
    controller.abort();
  };
  Deno.addSignalListener("SIGINT", stop);
  await server.finished;
}

/** An environment variable, or undefined when unset or not permitted. */
function env(name: string): string | undefined {
  const permission = Deno.permissions.querySync({
    name: "env",
    variable: name,
  });
  if (permission.state !== "granted") return undefined;
  return Deno.env.get(name) || undefined;
}
