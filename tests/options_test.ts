// The options of the three entry points: `serve()`, `connect()` and
// `upgradeWebSocket()` each resolve theirs once, and refuse an invalid limit
// alike, whichever of them has it: a `TypeError` for a value that is not a
// number (or not one of the choices), a `RangeError` for one out of range or
// not a whole number where one is needed, with the same message naming the
// option. `serve()` throws before it listens, `connect()` rejects before it
// connects, `upgradeWebSocket()` throws before it looks at the request.

import assert from "node:assert/strict";
import {
  connect,
  serve,
  type ServeOptions,
  UpgradeError,
  upgradeWebSocket,
  WebSocketError,
} from "../mod.ts";
import { freePort } from "./_util.ts";

type Entry = "serve" | "connect" | "upgradeWebSocket";
type Options = Record<string, unknown>;

/** What an entry point does with `options`: the error it refuses them with. */
async function refusal(entry: Entry, options: Options): Promise<unknown> {
  try {
    switch (entry) {
      case "serve": {
        const server = serve(
          { port: 0, hostname: "127.0.0.1", onListen() {}, ...options },
          () => {},
        );
        await server.shutdown();
        return undefined;
      }
      case "connect":
        // Nothing listens there: options that pass fail to connect (1006).
        await connect(`ws://127.0.0.1:${freePort()}/`, options);
        return undefined;
      case "upgradeWebSocket":
        // A plain request: options that pass get to it (426).
        upgradeWebSocket(new Request("http://127.0.0.1/"), options);
        return undefined;
    }
  } catch (error) {
    return error;
  }
}

/** The options, who has each, and what is wrong with the values refused. */
const LIMITS: {
  name: string;
  entries: Entry[];
  /** The values refused, each with its error type. */
  refused: [unknown, typeof RangeError | typeof TypeError][];
  /** Edge values taken. */
  taken: unknown[];
}[] = [];

/** A size or count: a whole number of `min` or more, or Infinity. */
function size(name: string, entries: Entry[], min = 1): void {
  LIMITS.push({
    name,
    entries,
    refused: [
      [min - 1, RangeError],
      [-1, RangeError],
      [NaN, RangeError],
      [1.5, RangeError],
      [-Infinity, RangeError],
      ["1024", TypeError],
      [null, TypeError],
      [1024n, TypeError],
    ],
    taken: [min, Infinity],
  });
}

/** A timeout in ms up to 2^31 - 1; 0 only where it turns something off. */
function timeout(name: string, entries: Entry[], zeroIsOff: boolean): void {
  LIMITS.push({
    name,
    entries,
    refused: [
      [-1, RangeError],
      [NaN, RangeError],
      [Infinity, RangeError],
      // A timer asked to wait longer fires at once.
      [2 ** 31, RangeError],
      ["5000", TypeError],
      [null, TypeError],
      ...(zeroIsOff ? [] : [[0, RangeError]] as [number, typeof RangeError][]),
    ],
    taken: [...(zeroIsOff ? [0] : [0.5]), 2 ** 31 - 1],
  });
}

const ALL: Entry[] = ["serve", "connect", "upgradeWebSocket"];
const TCP: Entry[] = ["serve", "connect"];
size("maxMessageSize", ALL);
timeout("closeTimeout", ALL, false);
timeout("idleTimeout", ALL, true);
size("maxFragments", TCP);
size("maxHeadSize", TCP);
timeout("pingInterval", TCP, true);
timeout("handshakeTimeout", TCP, false);
size("maxBackpressure", ["serve", "upgradeWebSocket"]);
size("maxQueued", ["upgradeWebSocket"]);
size("maxConnections", ["serve"], 0);
size("maxHttpConnections", ["serve"]);
size("maxBodySize", ["serve"], 0);
timeout("keepAliveTimeout", ["serve"], true);
timeout("bodyTimeout", ["serve"], true);
LIMITS.push({
  name: "backpressure",
  entries: ["serve", "upgradeWebSocket"],
  refused: [["wait", TypeError], [1, TypeError], [null, TypeError]],
  taken: ["close", "drop"],
});

for (const { name, entries, refused } of LIMITS) {
  const who = entries.map((entry) => `${entry}()`);
  const title = who.length === 1
    ? `${who[0]} refuses an invalid ${name}, naming it`
    : `${who.slice(0, -1).join(", ")} and ${
      who.at(-1)
    } refuse the same invalid ${name} alike, naming it`;
  Deno.test(title, async () => {
    for (const [value, type] of refused) {
      const messages = new Set<string>();
      for (const entry of entries) {
        const error = await refusal(entry, { [name]: value });
        const what = `${entry} with ${name}: ${String(value)}`;
        assert.ok(error instanceof type, `${what} threw ${error}`);
        assert.match(error.message, new RegExp(`^The ${name} option must `));
        messages.add(error.message);
      }
      assert.equal(messages.size, 1, `one message: ${[...messages]}`);
    }
  });
}

Deno.test("the entry points take the edge values of every limit", async () => {
  for (const { name, entries, taken } of LIMITS) {
    for (const value of taken) {
      for (const entry of entries) {
        const error = await refusal(entry, { [name]: value });
        const what = `${entry} with ${name}: ${String(value)}`;
        if (entry === "serve") assert.equal(error, undefined, what);
        if (entry === "connect") {
          assert.ok(error instanceof WebSocketError, `${what}: ${error}`);
        }
        if (entry === "upgradeWebSocket") {
          assert.ok(error instanceof UpgradeError, `${what}: ${error}`);
        }
      }
    }
  }
});

Deno.test("serve() refuses invalid options before it listens", () => {
  const port = freePort();
  const options: ServeOptions = { port, hostname: "127.0.0.1", onListen() {} };
  assert.throws(() => serve({ ...options, maxMessageSize: 0 }, () => {}));
  // Had it listened, the port would still be taken.
  Deno.listen({ hostname: "127.0.0.1", port }).close();
});
