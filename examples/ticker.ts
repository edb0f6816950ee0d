/**
 * A live price ticker, built on topics: a server task makes up a quote for
 * each symbol every 100 ms and publishes it on the symbol's topic
 * (`quote/EURUSD`, ...). The page lets a person pick symbols (it subscribes
 * and unsubscribes by sending commands), and shows a live table with a
 * sparkline per symbol and how many messages per second arrive. Only the
 * picked symbols' quotes cross the network.
 *
 * Run it with:
 *
 * ```sh
 * deno task ticker
 * # which is
 * deno run --allow-net --allow-env examples/ticker.ts
 * # on another port or address (flags win over the environment)
 * deno run --allow-net --allow-env examples/ticker.ts --port 9000 --hostname 0.0.0.0
 * PORT=9000 deno task ticker
 * ```
 *
 * It listens on `127.0.0.1:8082` by default and prints the address to open.
 * Ctrl+C shuts it down. The quotes are random walks, not market data.
 *
 * The protocol is JSON text messages. A page sends
 * `{"type":"subscribe","symbol":"EURUSD"}` and
 * `{"type":"unsubscribe","symbol":"EURUSD"}`. The server sends `symbols`
 * (what can be picked, on connect), `subscribed` (with the symbol's recent
 * prices, for the sparkline), `unsubscribed` (no quote of that symbol
 * follows it), `quote` and `error`.
 *
 * @module
 */

import {
  serve,
  type WebSocketConnection,
  type WebSocketServer,
} from "../mod.ts";
import {
  DEFAULT_HOSTNAME,
  printAddress,
  runMain,
  sameOriginOnly,
  servePage,
} from "./_app.ts";

/** Options for {@linkcode startTickerServer}. */
export interface TickerServerOptions {
  /** The port to listen on. Default `8082`; `0` picks a free one. */
  port?: number;
  /** The address to listen on. Default `"127.0.0.1"`. */
  hostname?: string;
  /** Called once listening; default: prints the address to open. */
  onListen?: (addr: Deno.NetAddr) => void;
  /** Aborting it shuts the server down (and stops the quotes). */
  signal?: AbortSignal;
}

/** What the server sends. */
export type TickerEvent =
  | { type: "symbols"; symbols: { symbol: string; price: number }[] }
  | {
    type: "subscribed";
    symbol: string;
    decimals: number;
    open: number;
    history: number[];
  }
  | { type: "unsubscribed"; symbol: string }
  | {
    type: "quote";
    symbol: string;
    price: number;
    open: number;
    seq: number;
    time: number;
  }
  | { type: "error"; message: string };

/** The symbols on offer, with where their prices start and how they move. */
export const SYMBOLS: readonly {
  symbol: string;
  price: number;
  decimals: number;
  volatility: number;
}[] = [
  { symbol: "EURUSD", price: 1.085, decimals: 5, volatility: 0.0002 },
  { symbol: "GBPUSD", price: 1.27, decimals: 5, volatility: 0.0002 },
  { symbol: "USDJPY", price: 151.2, decimals: 3, volatility: 0.0002 },
  { symbol: "BTCUSD", price: 67_000, decimals: 2, volatility: 0.001 },
  { symbol: "ETHUSD", price: 3_500, decimals: 2, volatility: 0.0012 },
  { symbol: "AAPL", price: 190, decimals: 2, volatility: 0.0005 },
];

const DEFAULT_PORT = 8082;
/** How often each symbol gets a quote, in ms. */
const TICK_INTERVAL = 100;
/** Prices kept per symbol for a new subscriber's sparkline. */
const HISTORY = 60;
const TOPIC_PREFIX = "quote/";

/** One symbol's moving price. */
interface Quote {
  symbol: string;
  decimals: number;
  volatility: number;
  open: number;
  price: number;
  seq: number;
  history: number[];
}

/**
 * Starts the ticker server and its quote task and returns the server;
 * `shutdown()` (or `await using`, or the signal) stops both.
 *
 * @example Starting it on a free port and following one symbol
 * ```ts ignore
 * import { startTickerServer } from "./examples/ticker.ts";
 *
 * await using server = startTickerServer({ port: 0, onListen() {} });
 * const ws = new WebSocket(`ws://127.0.0.1:${server.addr.port}/`);
 * ws.onopen = () =>
 *   ws.send(JSON.stringify({ type: "subscribe", symbol: "EURUSD" }));
 * ws.onmessage = (event) => console.log(JSON.parse(event.data));
 * ```
 */
export function startTickerServer(
  options: TickerServerOptions = {},
): WebSocketServer {
  const quotes = new Map<string, Quote>(
    SYMBOLS.map(({ symbol, price, decimals, volatility }) => [symbol, {
      symbol,
      decimals,
      volatility,
      open: price,
      price,
      seq: 0,
      history: [price],
    }]),
  );
  const server = serve({
    port: options.port ?? DEFAULT_PORT,
    hostname: options.hostname ?? DEFAULT_HOSTNAME,
    signal: options.signal,
    onListen: options.onListen ?? printAddress("Ticker"),
    fetch: servePage(TICKER_PAGE),
    onUpgrade: sameOriginOnly,
    maxMessageSize: 1024,
    // A quote is stale a moment later: a page that falls 256 KiB behind
    // misses quotes (counted in `droppedMessages`) rather than being closed.
    backpressure: "drop",
    maxBackpressure: 256 * 1024,
  }, async (socket) => {
    socket.send(JSON.stringify(
      {
        type: "symbols",
        symbols: [...quotes.values()].map(({ symbol, price }) => ({
          symbol,
          price,
        })),
      } satisfies TickerEvent,
    ));
    for await (const data of socket.readable) handle(socket, quotes, data);
  });
  // The quote task: every symbol moves and is published, whether anyone
  // follows it or not (publishing to a topic nobody follows costs nothing).
  const timer = setInterval(() => {
    for (const quote of quotes.values()) {
      move(quote);
      server.publish(
        TOPIC_PREFIX + quote.symbol,
        JSON.stringify(
          {
            type: "quote",
            symbol: quote.symbol,
            price: quote.price,
            open: quote.open,
            seq: quote.seq,
            time: Date.now(),
          } satisfies TickerEvent,
        ),
      );
    }
  }, TICK_INTERVAL);
  const stop = () => clearInterval(timer);
  server.finished.then(stop, stop);
  return server;
}

/** Runs one command from a page. */
function handle(
  socket: WebSocketConnection,
  quotes: Map<string, Quote>,
  data: string | Uint8Array,
): void {
  let command: { type?: unknown; symbol?: unknown };
  try {
    command = typeof data === "string" ? JSON.parse(data) : {};
  } catch {
    command = {};
  }
  const quote = typeof command?.symbol === "string"
    ? quotes.get(command.symbol)
    : undefined;
  if (command?.type !== "subscribe" && command?.type !== "unsubscribe") {
    reply(socket, { type: "error", message: "Unknown command" });
  } else if (quote === undefined) {
    reply(socket, { type: "error", message: "Unknown symbol" });
  } else if (command.type === "subscribe") {
    socket.subscribe(TOPIC_PREFIX + quote.symbol);
    // The history is up to the last quote: the next one follows it.
    reply(socket, {
      type: "subscribed",
      symbol: quote.symbol,
      decimals: quote.decimals,
      open: quote.open,
      history: quote.history,
    });
  } else {
    socket.unsubscribe(TOPIC_PREFIX + quote.symbol);
    // Queued after every quote of the symbol this socket will get.
    reply(socket, { type: "unsubscribed", symbol: quote.symbol });
  }
}

/** One step of a random walk, pulled gently back towards the open. */
function move(quote: Quote): void {
  const step = quote.volatility * gaussian();
  const pull = (quote.open - quote.price) * 0.002;
  const scale = 10 ** quote.decimals;
  quote.price = Math.round((quote.price * (1 + step) + pull) * scale) / scale;
  quote.seq++;
  quote.history.push(quote.price);
  if (quote.history.length > HISTORY) quote.history.shift();
}

/** A standard normal number (Box–Muller). */
function gaussian(): number {
  const u = 1 - Math.random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * Math.random());
}

function reply(socket: WebSocketConnection, event: TickerEvent): void {
  socket.send(JSON.stringify(event));
}

/**
 * The page served at `/`. Its script connects back to the origin it came
 * from; the table, the sparklines (inline SVG) and the rate are drawn with
 * DOM calls, no external assets.
 */
const TICKER_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>Price ticker</title>
<style>
  body { font: 16px/1.4 system-ui, sans-serif; max-width: 48rem; margin: 1.5rem auto; padding: 0 1rem; color: #222; }
  h1 { margin: 0 0 0.5rem; }
  .muted { color: #777; }
  #picker { display: flex; gap: 1rem; flex-wrap: wrap; border: 1px solid #ddd; border-radius: 0.25rem; }
  #picker label { white-space: nowrap; }
  table { border-collapse: collapse; width: 100%; margin-top: 1rem; font-variant-numeric: tabular-nums; }
  th, td { text-align: right; padding: 0.3rem 0.6rem; border-bottom: 1px solid #eee; }
  th:first-child, td:first-child { text-align: left; }
  .up { color: #080; }
  .down { color: #b00; }
  svg { display: block; margin-left: auto; }
  polyline { fill: none; stroke: #36c; stroke-width: 1.5; }
</style>
</head>
<body>
<h1>Price ticker</h1>
<p class="muted">Status: <output id="status">connecting</output> · <output id="rate">0</output> messages/s</p>
<fieldset id="picker"><legend>Symbols</legend></fieldset>
<table id="quotes">
  <thead><tr><th>Symbol</th><th>Price</th><th>Change</th><th>Updates</th><th>Last 60</th></tr></thead>
  <tbody></tbody>
</table>
<p id="empty" class="muted">Pick a symbol to see its quotes.</p>
<script>
  "use strict";
  const SVG = "http://www.w3.org/2000/svg";
  const WIDTH = 120;
  const HEIGHT = 28;
  const POINTS = 60;
  const byId = (id) => document.getElementById(id);
  const tbody = document.querySelector("#quotes tbody");
  /** symbol -> what its row shows */
  const rows = new Map();
  /** When each message arrived, for the last second's rate. */
  const arrivals = [];

  const socket = new WebSocket(location.origin.replace(/^http/, "ws") + "/");

  function send(command) {
    if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(command));
  }

  function cell(className) {
    const td = document.createElement("td");
    td.className = className;
    return td;
  }

  function addRow(symbol, decimals, open, history) {
    const tr = document.createElement("tr");
    tr.dataset.symbol = symbol;
    const name = cell("symbol");
    name.textContent = symbol;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("width", String(WIDTH));
    svg.setAttribute("height", String(HEIGHT));
    svg.setAttribute("viewBox", "0 0 " + WIDTH + " " + HEIGHT);
    svg.setAttribute("aria-label", symbol + " over the last " + POINTS + " quotes");
    const line = document.createElementNS(SVG, "polyline");
    svg.append(line);
    const spark = cell("spark");
    spark.append(svg);
    const row = {
      tr, decimals, open, prices: history.slice(-POINTS), updates: 0, line,
      price: cell("price"), change: cell("change"), count: cell("updates"),
    };
    tr.append(name, row.price, row.change, row.count, spark);
    // Keep the table in the picker's order.
    const order = [...document.querySelectorAll("#picker input")].map((input) => input.value);
    const after = [...tbody.children].find((other) => order.indexOf(other.dataset.symbol) > order.indexOf(symbol));
    tbody.insertBefore(tr, after ?? null);
    rows.set(symbol, row);
    show(row);
    byId("empty").hidden = true;
  }

  function removeRow(symbol) {
    rows.get(symbol)?.tr.remove();
    rows.delete(symbol);
    byId("empty").hidden = rows.size > 0;
  }

  function show(row) {
    const price = row.prices[row.prices.length - 1];
    const change = price - row.open;
    row.price.textContent = price.toFixed(row.decimals);
    row.change.textContent = (change >= 0 ? "+" : "") + change.toFixed(row.decimals);
    row.change.className = "change " + (change >= 0 ? "up" : "down");
    row.count.textContent = String(row.updates);
    const min = Math.min(...row.prices);
    const span = Math.max(...row.prices) - min || 1;
    const step = WIDTH / (POINTS - 1);
    const offset = WIDTH - (row.prices.length - 1) * step;
    row.line.setAttribute("points", row.prices.map((p, i) =>
      (offset + i * step).toFixed(1) + "," + (HEIGHT - 2 - ((p - min) / span) * (HEIGHT - 4)).toFixed(1)
    ).join(" "));
  }

  function showSymbols(symbols) {
    const picker = byId("picker");
    for (const { symbol } of symbols) {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "checkbox";
      input.value = symbol;
      input.onchange = () => {
        if (input.checked) {
          send({ type: "subscribe", symbol });
        } else {
          removeRow(symbol);
          send({ type: "unsubscribe", symbol });
        }
      };
      label.append(input, " " + symbol);
      picker.append(label);
    }
  }

  const status = byId("status");
  socket.onopen = () => { status.value = "open"; };

  socket.onmessage = (event) => {
    arrivals.push(performance.now());
    const data = JSON.parse(event.data);
    switch (data.type) {
      case "symbols":
        showSymbols(data.symbols);
        break;
      case "subscribed": {
        const input = document.querySelector("#picker input[value='" + data.symbol + "']");
        // Unpicked again meanwhile: its unsubscribe is on the way.
        if (input?.checked && !rows.has(data.symbol)) {
          addRow(data.symbol, data.decimals, data.open, data.history);
        }
        break;
      }
      case "quote": {
        const row = rows.get(data.symbol);
        if (row === undefined) break;
        row.prices.push(data.price);
        if (row.prices.length > POINTS) row.prices.shift();
        row.updates++;
        show(row);
        break;
      }
      case "error":
        console.warn("Ticker server:", data.message);
        break;
    }
  };

  socket.onclose = (event) => {
    status.value = "closed (" + event.code + (event.reason ? " " + event.reason : "") + "): reload to reconnect";
    for (const input of document.querySelectorAll("#picker input")) input.disabled = true;
  };

  setInterval(() => {
    const now = performance.now();
    while (arrivals.length > 0 && arrivals[0] <= now - 1000) arrivals.shift();
    byId("rate").value = String(arrivals.length);
  }, 250);
</script>
</body>
</html>
`;

if (import.meta.main) {
  await runMain("ticker.ts", DEFAULT_PORT, startTickerServer);
}
