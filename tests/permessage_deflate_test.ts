/**
 * permessage-deflate (RFC 7692): the negotiation as pure functions (table
 * tests), then the server and the client over real TCP connections against
 * a hand-driven peer that compresses and checks frames with its own zlib
 * calls, then round trips between `connect()` and `serve()`.
 */

import assert from "node:assert/strict";
import zlib from "node:zlib";
import {
  connect,
  type PerMessageDeflateOptions,
  serve,
  type ServeOptions,
  type WebSocketConnection,
  WebSocketError,
  type WebSocketHandler,
} from "../mod.ts";
import {
  acceptResponse,
  checkOptions,
  clientOffer,
  negotiateServer,
} from "../src/protocol/permessage_deflate.ts";
import { parseExtensions } from "../src/protocol/_extensions.ts";
import { DeflateCodec } from "../src/engine/_deflate_codec.ts";
import { computeAccept } from "../src/engine/_accept_value.ts";
import { RawClient, text, upgradeRequest } from "./_raw_client.ts";
import { closePayload, frame, type WireFrame } from "./_wire.ts";
import {
  assertBytesEqual,
  assertSameMessage,
  concat,
  deadline,
  echo,
  floodUntilStalled,
  pseudoBytes,
  pseudoText,
  start as startServer,
  WAIT_LIMIT,
} from "./_util.ts";

const encoder = new TextEncoder();
const Z = zlib.constants;
const TRAILER = new Uint8Array([0x00, 0x00, 0xff, 0xff]);
const KiB = 1024;
const MiB = 1024 * 1024;
const RSV1 = 4;

// ---------------------------------------------------------------------------
// Helpers

/** Compresses one message on its own, as a peer without context takeover. */
function deflateAlone(data: Uint8Array | string): Uint8Array {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  const out = zlib.deflateRawSync(bytes, { finishFlush: Z.Z_SYNC_FLUSH });
  assert.deepEqual([...out.subarray(-4)], [...TRAILER]);
  return new Uint8Array(out.subarray(0, out.length - 4));
}

/** Inflates one message on its own; throws if it refers to an earlier one. */
function inflateAlone(payload: Uint8Array): Uint8Array {
  return new Uint8Array(
    zlib.inflateRawSync(concat([payload, TRAILER]), {
      finishFlush: Z.Z_SYNC_FLUSH,
    }),
  );
}

/**
 * A test peer's zlib stream kept across messages (context takeover): each
 * `message()` compresses or inflates one whole message.
 */
class PeerZlib implements Disposable {
  #stream: zlib.DeflateRaw | zlib.InflateRaw;
  #inflate: boolean;
  #chunks: Uint8Array[] = [];

  constructor(kind: "deflate" | "inflate") {
    this.#inflate = kind === "inflate";
    this.#stream = this.#inflate
      ? zlib.createInflateRaw()
      : zlib.createDeflateRaw();
    this.#stream.on("data", (chunk: Uint8Array) => this.#chunks.push(chunk));
  }

  message(data: Uint8Array | string): Promise<Uint8Array> {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    return new Promise((resolve, reject) => {
      this.#stream.write(this.#inflate ? concat([bytes, TRAILER]) : bytes);
      this.#stream.flush(Z.Z_SYNC_FLUSH, (error?: Error | null) => {
        if (error) return reject(error);
        const out = concat(this.#chunks);
        this.#chunks = [];
        resolve(this.#inflate ? out : out.subarray(0, out.length - 4));
      });
    });
  }

  [Symbol.dispose](): void {
    this.#stream.close();
  }
}

/** A quiet server on a free port, with permessage-deflate on by default. */
function start(options: ServeOptions = {}, handler: WebSocketHandler = echo) {
  return startServer({ perMessageDeflate: true, ...options }, handler);
}

/** A server whose first socket a test can watch. */
function watched(options: ServeOptions = {}, handler: WebSocketHandler = echo) {
  const first = Promise.withResolvers<WebSocketConnection>();
  const server = start(options, (socket) => {
    first.resolve(socket);
    return handler(socket);
  });
  return { server, first: first.promise };
}

/**
 * Opens a raw connection offering `offer` (the header lines as given, so a
 * test may repeat the header) and returns it with the server's answer.
 */
async function openRaw(
  port: number,
  offers: string[] = ["permessage-deflate"],
): Promise<{ client: RawClient; extensions: string | null }> {
  const client = await RawClient.connect(port);
  const head = upgradeRequest(port).replace(
    /\r\n\r\n$/,
    offers.map((offer) => `\r\nSec-WebSocket-Extensions: ${offer}`).join("") +
      "\r\n\r\n",
  );
  await client.write(head);
  const answer = await client.readHead();
  if (answer.status !== 101) {
    client.close();
    throw new Error(`Handshake failed with ${answer.status}`);
  }
  return { client, extensions: answer.headers.get("sec-websocket-extensions") };
}

/** Sends `bytes` on a negotiated connection and expects a close with `code`. */
async function expectClose(
  port: number,
  bytes: Uint8Array,
  code: number,
  offer = "permessage-deflate",
): Promise<void> {
  const { client } = await openRaw(port, [offer]);
  await using _client = client;
  await client.write(bytes);
  const result = await client.readUntilClose();
  assert.equal(result.code, code);
  assert.equal(result.eof, true, "the server closes TCP after its close frame");
}

/** A frame that must come next, with the given opcode and RSV bits. */
async function nextFrame(
  client: RawClient,
  opcode: number,
  rsv: number,
): Promise<WireFrame> {
  const got = await client.readFrame();
  assert.ok(got, "a frame, not the end of the connection");
  assert.equal(got.opcode, opcode, "opcode");
  assert.equal(got.rsv, rsv, "RSV bits");
  return got;
}

/**
 * A hand-written server for one client connection: it answers the handshake
 * with `extensions` and hands the connection to `run` as a RawClient (whose
 * frame reader unmasks the client's frames).
 */
function rawServer(
  extensions: string,
  run: (peer: RawClient, offer: string | null) => Promise<void>,
) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const done = (async () => {
    const conn = await deadline(
      listener.accept(),
      "the client to connect",
      WAIT_LIMIT,
      () => listener.close(),
    );
    await using peer = new RawClient(conn);
    const head = await peer.readHead();
    const key = head.headers.get("sec-websocket-key")!;
    await peer.write(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
        "Connection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${await computeAccept(key)}\r\n` +
        (extensions ? `Sec-WebSocket-Extensions: ${extensions}\r\n` : "") +
        "\r\n",
    );
    await run(peer, head.headers.get("sec-websocket-extensions"));
  })();
  // A failure is reported where the test awaits `done` (or at disposal),
  // not as an unhandled rejection before that.
  done.catch(() => {});
  return {
    url: `ws://127.0.0.1:${(listener.addr as Deno.NetAddr).port}/`,
    done,
    async [Symbol.asyncDispose]() {
      try {
        listener.close();
      } catch {
        // Closed at the deadline.
      }
      await done;
    },
  };
}

// ---------------------------------------------------------------------------
// RFC 7692 §5, §7.1: negotiation, as pure functions.

Deno.test("RFC 7692 §5.1 Sec-WebSocket-Extensions parses into elements, with malformed ones in place as null", () => {
  const table: [string, ReturnType<typeof parseExtensions>][] = [
    ["", []],
    [" , ,", []],
    ["permessage-deflate", [{ name: "permessage-deflate", params: [] }]],
    [
      "permessage-deflate; client_max_window_bits, x-webkit-deflate-frame",
      [
        {
          name: "permessage-deflate",
          params: [["client_max_window_bits", true]],
        },
        { name: "x-webkit-deflate-frame", params: [] },
      ],
    ],
    // Repeated headers, as Headers.get joins them.
    [
      'permessage-deflate;server_max_window_bits=10 , Permessage-Deflate ; Client_Max_Window_Bits = "12"',
      [
        {
          name: "permessage-deflate",
          params: [["server_max_window_bits", "10"]],
        },
        {
          name: "permessage-deflate",
          params: [["client_max_window_bits", "12"]],
        },
      ],
    ],
    // A quoted-string may hold commas, semicolons and escapes.
    [
      'foo; a="x,y;\\"z", permessage-deflate',
      [
        { name: "foo", params: [["a", 'x,y;"z']] },
        { name: "permessage-deflate", params: [] },
      ],
    ],
    [
      'permessage-deflate;, ;x, a=b, c; =1, d; e="open, permessage-deflate',
      [null, null, null, null, null],
    ],
    ["a b, permessage-deflate", [null, {
      name: "permessage-deflate",
      params: [],
    }]],
  ];
  for (const [header, expected] of table) {
    assert.deepEqual(parseExtensions(header), expected, header);
  }
});

Deno.test("RFC 7692 §7.1 the server answers each parameter and combination as the RFC allows", () => {
  const table: [string, PerMessageDeflateOptions, string][] = [
    ["permessage-deflate", {}, "permessage-deflate"],
    // §7.1.1.1: server_no_context_takeover is always accepted and echoed.
    [
      "permessage-deflate; server_no_context_takeover",
      {},
      "permessage-deflate; server_no_context_takeover",
    ],
    [
      "permessage-deflate",
      { serverNoContextTakeover: true },
      "permessage-deflate; server_no_context_takeover",
    ],
    // §7.1.1.2: client_no_context_takeover is answered when configured.
    [
      "permessage-deflate; client_no_context_takeover",
      {},
      "permessage-deflate",
    ],
    [
      "permessage-deflate",
      { clientNoContextTakeover: true },
      "permessage-deflate; client_no_context_takeover",
    ],
    // §7.1.2.1: server_max_window_bits may shrink, never grow.
    [
      "permessage-deflate; server_max_window_bits=10",
      {},
      "permessage-deflate; server_max_window_bits=10",
    ],
    [
      "permessage-deflate; server_max_window_bits=10",
      { serverMaxWindowBits: 12 },
      "permessage-deflate; server_max_window_bits=10",
    ],
    [
      "permessage-deflate; server_max_window_bits=15",
      { serverMaxWindowBits: 9 },
      "permessage-deflate; server_max_window_bits=9",
    ],
    [
      "permessage-deflate",
      { serverMaxWindowBits: 11 },
      "permessage-deflate; server_max_window_bits=11",
    ],
    ["permessage-deflate", { serverMaxWindowBits: 15 }, "permessage-deflate"],
    // §7.1.2.2: client_max_window_bits is answered with a value only when
    // the client offered the parameter.
    ["permessage-deflate; client_max_window_bits", {}, "permessage-deflate"],
    [
      "permessage-deflate; client_max_window_bits",
      { clientMaxWindowBits: 10 },
      "permessage-deflate; client_max_window_bits=10",
    ],
    [
      "permessage-deflate; client_max_window_bits=12",
      {},
      "permessage-deflate; client_max_window_bits=12",
    ],
    [
      "permessage-deflate; client_max_window_bits=12",
      { clientMaxWindowBits: 10 },
      "permessage-deflate; client_max_window_bits=10",
    ],
    [
      "permessage-deflate; client_max_window_bits=9",
      { clientMaxWindowBits: 10 },
      "permessage-deflate; client_max_window_bits=9",
    ],
    [
      "permessage-deflate; client_max_window_bits=8",
      {},
      "permessage-deflate; client_max_window_bits=8",
    ],
    ["permessage-deflate", { clientMaxWindowBits: 10 }, "permessage-deflate"],
    // Combinations, and a quoted value.
    [
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12; client_max_window_bits=11",
      { clientNoContextTakeover: true },
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12; client_max_window_bits=11",
    ],
    [
      'permessage-deflate; client_max_window_bits="10"; server_max_window_bits="9"',
      { serverNoContextTakeover: true, clientNoContextTakeover: true },
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=10",
    ],
    // What Chromium and Firefox offer.
    [
      "permessage-deflate; client_max_window_bits",
      { serverMaxWindowBits: 13, clientMaxWindowBits: 12 },
      "permessage-deflate; server_max_window_bits=13; client_max_window_bits=12",
    ],
  ];
  for (const [offer, options, response] of table) {
    assert.equal(
      negotiateServer(offer, options)?.response,
      response,
      `${offer} with ${JSON.stringify(options)}`,
    );
  }
});

Deno.test("RFC 7692 §7.1 the negotiated parameters say which window and context each side uses", () => {
  assert.deepEqual(negotiateServer("permessage-deflate", {})?.params, {
    serverNoContextTakeover: false,
    clientNoContextTakeover: false,
    serverMaxWindowBits: 15,
    clientMaxWindowBits: 15,
  });
  assert.deepEqual(
    negotiateServer(
      "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=9",
      { clientNoContextTakeover: true },
    )?.params,
    {
      serverNoContextTakeover: true,
      clientNoContextTakeover: true,
      serverMaxWindowBits: 10,
      clientMaxWindowBits: 9,
    },
  );
});

Deno.test("RFC 7692 §5.1 several offers: the first acceptable one wins, malformed ones are declined", () => {
  const table: [string | null, string | null][] = [
    [null, null],
    ["", null],
    ["x-webkit-deflate-frame", null],
    // Unknown parameter, repeated parameter, value on a flag, value out of
    // range or with a leading zero, missing value: each offer is declined.
    ["permessage-deflate; foo", null],
    ["permessage-deflate; foo=1", null],
    [
      "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
      null,
    ],
    [
      "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
      null,
    ],
    ["permessage-deflate; server_no_context_takeover=1", null],
    ["permessage-deflate; client_no_context_takeover=true", null],
    ["permessage-deflate; server_max_window_bits", null],
    ["permessage-deflate; server_max_window_bits=7", null],
    ["permessage-deflate; server_max_window_bits=16", null],
    ["permessage-deflate; server_max_window_bits=010", null],
    ["permessage-deflate; client_max_window_bits=abc", null],
    ['permessage-deflate; client_max_window_bits="1 0"', null],
    ["permessage-deflate; client_max_window_bits=-1", null],
    ["permessage-deflate;", null],
    ["permessage-deflate; =10", null],
    // §7.1.2.1: an 8-bit window cannot be honored by zlib.
    ["permessage-deflate; server_max_window_bits=8", null],
    // ...and then a later offer is accepted.
    [
      "permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=9",
      "permessage-deflate; server_max_window_bits=9",
    ],
    [
      "x-webkit-deflate-frame, permessage-deflate; foo, permessage-deflate; client_max_window_bits",
      "permessage-deflate",
    ],
    [
      'permessage-deflate; x="a, b", permessage-deflate; server_no_context_takeover',
      "permessage-deflate; server_no_context_takeover",
    ],
    [
      "permessage-deflate; client_max_window_bits=10, permessage-deflate",
      "permessage-deflate; client_max_window_bits=10",
    ],
  ];
  for (const [offer, response] of table) {
    assert.equal(
      negotiateServer(offer, {})?.response ?? null,
      response,
      String(offer),
    );
  }
});

Deno.test("RFC 7692 §7.1 the client offers its settings and always client_max_window_bits", () => {
  const table: [PerMessageDeflateOptions, string][] = [
    [{}, "permessage-deflate; client_max_window_bits"],
    [
      { serverNoContextTakeover: true, clientNoContextTakeover: true },
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits",
    ],
    [
      { serverMaxWindowBits: 10, clientMaxWindowBits: 12 },
      "permessage-deflate; server_max_window_bits=10; client_max_window_bits=12",
    ],
    [{ threshold: 0, level: 9 }, "permessage-deflate; client_max_window_bits"],
  ];
  for (const [options, offer] of table) {
    assert.equal(clientOffer(options), offer, JSON.stringify(options));
  }
});

Deno.test("RFC 7692 §7.1 the client accepts what the server may answer", () => {
  const table: [string, PerMessageDeflateOptions, unknown][] = [
    ["permessage-deflate", {}, {
      serverNoContextTakeover: false,
      clientNoContextTakeover: false,
      serverMaxWindowBits: 15,
      clientMaxWindowBits: 15,
    }],
    // §7.1.1.1: announced by the server without being asked.
    [
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
      {},
      {
        serverNoContextTakeover: true,
        clientNoContextTakeover: true,
        serverMaxWindowBits: 15,
        clientMaxWindowBits: 15,
      },
    ],
    // The client keeps to its own declaration even when not echoed.
    ["permessage-deflate", { clientNoContextTakeover: true }, {
      serverNoContextTakeover: false,
      clientNoContextTakeover: true,
      serverMaxWindowBits: 15,
      clientMaxWindowBits: 15,
    }],
    [
      "permessage-deflate; server_max_window_bits=9; client_max_window_bits=8",
      { serverMaxWindowBits: 10 },
      {
        serverNoContextTakeover: false,
        clientNoContextTakeover: false,
        serverMaxWindowBits: 9,
        clientMaxWindowBits: 8,
      },
    ],
    ["permessage-deflate", { clientMaxWindowBits: 11 }, {
      serverNoContextTakeover: false,
      clientNoContextTakeover: false,
      serverMaxWindowBits: 15,
      clientMaxWindowBits: 11,
    }],
    ["", {}, null],
  ];
  for (const [response, options, expected] of table) {
    assert.deepEqual(acceptResponse(response, options), expected, response);
  }
});

Deno.test("RFC 7692 §7.1 the client refuses answers it must fail the connection for", () => {
  const table: [string, PerMessageDeflateOptions, RegExp][] = [
    [
      "x-webkit-deflate-frame",
      {},
      /extension "x-webkit-deflate-frame", which the client did not offer/,
    ],
    ["permessage-deflate, permessage-deflate", {}, /more than one extension/],
    ["permessage-deflate; foo", {}, /Invalid permessage-deflate parameters/],
    [
      "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
      {},
      /Invalid permessage-deflate parameters/,
    ],
    ["permessage-deflate; server_max_window_bits=16", {}, /Invalid/],
    ["permessage-deflate;", {}, /Malformed/],
    [
      "permessage-deflate; server_max_window_bits=12",
      { serverMaxWindowBits: 10 },
      /server_max_window_bits=12, above the 10 offered/,
    ],
    [
      "permessage-deflate; client_max_window_bits=12",
      { clientMaxWindowBits: 10 },
      /client_max_window_bits=12, above the 10 offered/,
    ],
    [
      "permessage-deflate; client_max_window_bits",
      {},
      /client_max_window_bits without a value/,
    ],
  ];
  for (const [response, options, message] of table) {
    assert.throws(() => acceptResponse(response, options), (error) => {
      assert.ok(error instanceof TypeError, String(error));
      assert.match(error.message, message);
      return true;
    }, response);
  }
});

Deno.test("perMessageDeflate options are checked: bad settings throw a RangeError or TypeError", async () => {
  assert.equal(checkOptions(undefined), null);
  assert.equal(checkOptions(false), null);
  assert.deepEqual(checkOptions(true), {});
  const bad: [unknown, typeof RangeError | typeof TypeError][] = [
    [{ threshold: -1 }, RangeError],
    [{ threshold: NaN }, RangeError],
    [{ level: 10 }, RangeError],
    [{ level: 1.5 }, RangeError],
    [{ serverMaxWindowBits: 8 }, RangeError],
    [{ serverMaxWindowBits: 16 }, RangeError],
    [{ clientMaxWindowBits: 8 }, RangeError],
    ["yes", TypeError],
    [null, TypeError],
  ];
  for (const [option, type] of bad) {
    assert.throws(
      () => checkOptions(option as PerMessageDeflateOptions),
      type,
      JSON.stringify(option),
    );
    assert.throws(
      () =>
        serve({
          port: 0,
          hostname: "127.0.0.1",
          onListen() {},
          perMessageDeflate: option as PerMessageDeflateOptions,
        }, () => {}),
      type,
    );
    await assert.rejects(
      connect("ws://127.0.0.1:1/", {
        perMessageDeflate: option as PerMessageDeflateOptions,
      }),
      type,
    );
  }
});

// ---------------------------------------------------------------------------
// RFC 7692 §5: the handshake over TCP.

Deno.test("RFC 7692 §5 the server answers exactly one extension, chosen from offers in repeated headers", async () => {
  const { server, first } = watched({});
  await using _server = server;
  const { client, extensions } = await openRaw(server.addr.port, [
    "x-webkit-deflate-frame, permessage-deflate; foo=1",
    "permessage-deflate; server_max_window_bits=8",
    "permessage-deflate; client_max_window_bits, permessage-deflate",
  ]);
  await using _client = client;
  assert.equal(extensions, "permessage-deflate");
  assert.equal(
    (await deadline(first, "the server's socket")).extensions,
    "permessage-deflate",
  );
});

Deno.test("RFC 7692 §5 a malformed offer is declined without failing the handshake", async () => {
  const { server, first } = watched({});
  await using _server = server;
  const { client, extensions } = await openRaw(server.addr.port, [
    "permessage-deflate; client_max_window_bits=99",
  ]);
  await using _client = client;
  assert.equal(extensions, null);
  assert.equal((await deadline(first, "the server's socket")).extensions, "");
  // Without the extension, RSV1 is a protocol error (§6.1).
  await client.write(frame(1, deflateAlone("hello"), { rsv: RSV1 }));
  assert.equal((await client.readUntilClose()).code, 1002);
});

Deno.test("RFC 7692 §5 compression is off by default: the offer gets no answer and RSV1 fails with 1002", async () => {
  await using server = start({ perMessageDeflate: undefined });
  const { client, extensions } = await openRaw(server.addr.port);
  await using _client = client;
  assert.equal(extensions, null);
  await client.write(frame(2, deflateAlone("hello"), { rsv: RSV1 }));
  assert.equal((await client.readUntilClose()).code, 1002);
});

// ---------------------------------------------------------------------------
// RFC 7692 §7.2.1: what the server sends.

Deno.test("RFC 7692 §7.2.1 messages from the threshold up go out with RSV1, deflated, the trailer removed", async () => {
  await using server = start({ perMessageDeflate: { threshold: 1024 } });
  const { client } = await openRaw(server.addr.port);
  await using _client = client;
  const small = pseudoText(1023);
  const large = pseudoText(1024, 2);
  const binary = pseudoBytes(4096);
  await client.write(frame(1, small));
  assert.equal(text((await nextFrame(client, 1, 0)).payload), small);
  await client.write(frame(1, large));
  const compressed = await nextFrame(client, 1, RSV1);
  assert.ok(compressed.payload.length < 1024, "the payload is compressed");
  assert.notDeepEqual(
    [...compressed.payload.subarray(-4)],
    [...TRAILER],
    "the 00 00 ff ff trailer is removed",
  );
  assert.equal(text(inflateAlone(compressed.payload)), large);
  await client.write(frame(2, binary));
  const binaryEcho = await nextFrame(client, 2, RSV1);
  // The first message started from an empty window, the second did not.
  using peer = new PeerZlib("inflate");
  assert.equal(text(await peer.message(compressed.payload)), large);
  assertBytesEqual(
    await peer.message(binaryEcho.payload),
    binary,
    "the inflated binary echo",
  );
});

Deno.test("RFC 7692 §6.1 control frames are never compressed, even with threshold 0", async () => {
  await using server = start({ perMessageDeflate: { threshold: 0 } });
  const { client } = await openRaw(server.addr.port);
  await using _client = client;
  const ping = "p".repeat(125);
  await client.write(frame(9, ping));
  assert.equal(text((await nextFrame(client, 10, 0)).payload), ping);
  await client.write(frame(1, ""));
  // An empty message compressed is the single byte 00 (§7.2.3.6).
  assert.deepEqual([...(await nextFrame(client, 1, RSV1)).payload], [0]);
  await client.write(frame(8, closePayload(1000)));
  const close = await nextFrame(client, 8, 0);
  assert.deepEqual([...close.payload], [0x03, 0xe8]);
});

Deno.test("RFC 7692 §7.2.3.2 with context takeover a repeated message becomes a back-reference", async () => {
  await using server = start({ perMessageDeflate: { threshold: 0 } });
  const { client } = await openRaw(server.addr.port);
  await using _client = client;
  const message = pseudoText(2048);
  await client.write(concat([frame(1, message), frame(1, message)]));
  const first = await nextFrame(client, 1, RSV1);
  const second = await nextFrame(client, 1, RSV1);
  assert.ok(
    second.payload.length < first.payload.length / 10,
    `${second.payload.length} bytes refer back to the first message`,
  );
  assert.throws(() => inflateAlone(second.payload), "it cannot stand alone");
  using peer = new PeerZlib("inflate");
  assert.equal(text(await peer.message(first.payload)), message);
  assert.equal(text(await peer.message(second.payload)), message);
});

Deno.test("RFC 7692 §7.1.1.1 with server_no_context_takeover every message the server sends stands alone", async (t) => {
  const message = pseudoText(2048);
  for (
    const [label, options, offer] of [
      ["offered", {}, "permessage-deflate; server_no_context_takeover"],
      ["configured", { serverNoContextTakeover: true }, "permessage-deflate"],
    ] as const
  ) {
    await t.step(label, async () => {
      await using server = start({
        perMessageDeflate: { threshold: 0, ...options },
      });
      const { client, extensions } = await openRaw(server.addr.port, [offer]);
      await using _client = client;
      assert.equal(
        extensions,
        "permessage-deflate; server_no_context_takeover",
      );
      await client.write(concat([frame(1, message), frame(1, message)]));
      const first = await nextFrame(client, 1, RSV1);
      const second = await nextFrame(client, 1, RSV1);
      assertBytesEqual(second.payload, first.payload, "the second payload");
      assert.equal(text(inflateAlone(second.payload)), message);
    });
  }
});

Deno.test("RFC 7692 §7.1.2.1 server_max_window_bits=9 limits back-references to 512 bytes", async () => {
  await using server = start({ perMessageDeflate: { threshold: 0 } });
  const { client, extensions } = await openRaw(server.addr.port, [
    "permessage-deflate; server_max_window_bits=9",
  ]);
  await using _client = client;
  assert.equal(extensions, "permessage-deflate; server_max_window_bits=9");
  // A 1 KiB block repeated: a 15-bit window would find the repeat.
  const block = pseudoText(1024);
  const message = block.repeat(8);
  await client.write(frame(1, message));
  const echoed = await nextFrame(client, 1, RSV1);
  assert.ok(echoed.payload.length > 4 * 1024, "no match reaches back 1 KiB");
  // Inflating with a 512-byte window proves the limit.
  const inflated = zlib.inflateRawSync(concat([echoed.payload, TRAILER]), {
    windowBits: 9,
    finishFlush: Z.Z_SYNC_FLUSH,
  });
  assert.equal(text(new Uint8Array(inflated)), message);
});

// ---------------------------------------------------------------------------
// RFC 7692 §7.2.2: what the server receives.

Deno.test("RFC 7692 §7.2.2 the server inflates text and binary, keeping the window across messages", async () => {
  await using server = start({ perMessageDeflate: { threshold: Infinity } });
  const { client } = await openRaw(server.addr.port);
  await using _client = client;
  using peer = new PeerZlib("deflate");
  const messages: (string | Uint8Array)[] = [
    pseudoText(5000),
    pseudoText(5000),
    pseudoBytes(70_000),
    "héllo ✓ 🌍",
    "",
  ];
  for (const message of messages) {
    const opcode = typeof message === "string" ? 1 : 2;
    await client.write(
      frame(opcode, await peer.message(message), { rsv: RSV1 }),
    );
    // threshold: Infinity sends nothing compressed but accepts compression.
    const echoed = await nextFrame(client, opcode, 0);
    assertSameMessage(
      opcode === 1 ? text(echoed.payload) : echoed.payload,
      message,
      `a ${message.length}-long message`,
    );
  }
});

Deno.test("RFC 7692 §6.1 a compressed message over several frames, RSV1 on the first only, is inflated, with a ping between", async () => {
  await using server = start({ perMessageDeflate: { threshold: Infinity } });
  const { client } = await openRaw(server.addr.port);
  await using _client = client;
  const message = pseudoText(30_000);
  const payload = deflateAlone(message);
  const third = Math.floor(payload.length / 3);
  await client.writeChopped(
    concat([
      frame(1, payload.subarray(0, third), { fin: false, rsv: RSV1 }),
      frame(0, payload.subarray(third, 2 * third), { fin: false }),
      frame(9, "between"),
      frame(0, new Uint8Array(0), { fin: false }),
      frame(0, payload.subarray(2 * third)),
    ]),
    1000,
  );
  assert.equal(text((await nextFrame(client, 10, 0)).payload), "between");
  assert.equal(text((await nextFrame(client, 1, 0)).payload), message);
});

Deno.test("RFC 7692 §7.1.1.2 with client_no_context_takeover the server says so and inflates messages that stand alone", async () => {
  await using server = start({
    perMessageDeflate: { threshold: Infinity, clientNoContextTakeover: true },
  });
  const { client, extensions } = await openRaw(server.addr.port);
  await using _client = client;
  assert.equal(extensions, "permessage-deflate; client_no_context_takeover");
  for (const message of [pseudoText(3000), pseudoText(3000), "x"]) {
    await client.write(frame(1, deflateAlone(message), { rsv: RSV1 }));
    assert.equal(text((await nextFrame(client, 1, 0)).payload), message);
  }
});

Deno.test("RFC 7692 §7.2.3.3 a message ending in a BFINAL block is inflated, and so are the messages after it", async () => {
  await using server = start({ perMessageDeflate: { threshold: Infinity } });
  const { client } = await openRaw(server.addr.port);
  await using _client = client;
  using peer = new PeerZlib("deflate");
  // The RFC's example: "Hello" in a BFINAL block, then a 00 byte.
  const hello = new Uint8Array([0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
  await client.write(frame(1, hello, { rsv: RSV1 }));
  assert.equal(text((await nextFrame(client, 1, 0)).payload), "Hello");
  // Then a message from a fresh DEFLATE stream with context takeover.
  for (const message of ["next", "next", pseudoText(2000)]) {
    await client.write(frame(1, await peer.message(message), { rsv: RSV1 }));
    assert.equal(text((await nextFrame(client, 1, 0)).payload), message);
  }
  await client.write(frame(1, hello, { rsv: RSV1 }));
  assert.equal(text((await nextFrame(client, 1, 0)).payload), "Hello");
});

Deno.test("RFC 7692 §6.1 RSV1 on a continuation frame fails with 1002", async () => {
  await using server = start();
  const payload = deflateAlone(pseudoText(100));
  await expectClose(
    server.addr.port,
    concat([
      frame(1, payload.subarray(0, 10), { fin: false, rsv: RSV1 }),
      frame(0, payload.subarray(10), { rsv: RSV1 }),
    ]),
    1002,
  );
  await expectClose(
    server.addr.port,
    concat([
      frame(1, "plain", { fin: false }),
      frame(0, "still plain", { rsv: RSV1 }),
    ]),
    1002,
  );
});

Deno.test("RFC 7692 §6.1 RSV1 on a control frame fails with 1002", async () => {
  await using server = start();
  for (const opcode of [8, 9, 10]) {
    await expectClose(
      server.addr.port,
      frame(opcode, opcode === 8 ? closePayload(1000) : "x", { rsv: RSV1 }),
      1002,
    );
  }
});

Deno.test("RFC 6455 §5.2 RSV2 and RSV3 still fail with 1002 when permessage-deflate is negotiated", async () => {
  await using server = start();
  for (const rsv of [1, 2, 5, 6]) {
    await expectClose(
      server.addr.port,
      frame(1, deflateAlone("hi"), { rsv }),
      1002,
    );
  }
});

Deno.test("RFC 7692 §7.2.2 corrupt compressed data fails with 1007", async () => {
  await using server = start();
  const corrupt = deflateAlone(pseudoText(1000));
  corrupt[5] ^= 0xff;
  for (
    const payload of [
      new Uint8Array([0xff, 0xff, 0xff]),
      corrupt,
      // A stored block whose length and its complement disagree.
      new Uint8Array([0x00, 0x10, 0x00, 0x00, 0x00, 0x61]),
    ]
  ) {
    await expectClose(
      server.addr.port,
      frame(2, payload, { rsv: RSV1 }),
      1007,
    );
  }
});

Deno.test("RFC 6455 §8.1 invalid UTF-8 in a compressed text message fails with 1007", async () => {
  await using server = start();
  const invalid = concat([
    encoder.encode(pseudoText(40_000)),
    new Uint8Array([0xff]),
  ]);
  const cutOff = encoder.encode("abc✓").subarray(0, 5);
  for (const bytes of [invalid, cutOff]) {
    await expectClose(
      server.addr.port,
      frame(1, deflateAlone(bytes), { rsv: RSV1 }),
      1007,
    );
  }
});

Deno.test("RFC 6455 §10.4 maxMessageSize counts inflated bytes: the limit passes, one byte more fails with 1009", async () => {
  await using server = start({ maxMessageSize: 1000 });
  const { client } = await openRaw(server.addr.port);
  await using _client = client;
  const atLimit = pseudoText(1000);
  await client.write(frame(1, deflateAlone(atLimit), { rsv: RSV1 }));
  assert.equal(text((await nextFrame(client, 1, 0)).payload), atLimit);
  await expectClose(
    server.addr.port,
    frame(1, deflateAlone("a".repeat(1001)), { rsv: RSV1 }),
    1009,
  );
});

/**
 * A decompression bomb: `mib` MiB of zeros in about `mib` KiB. Deflate
 * compresses at most ~1032:1, so a GiB takes ~1 MiB; it is built from two
 * sync-flushed segments of 1 MiB of zeros each, the second repeated (once
 * the window is all zeros, each further MiB deflates to the same bytes).
 */
async function bomb(mib: number): Promise<Uint8Array> {
  using peer = new PeerZlib("deflate");
  const zeros = new Uint8Array(MiB);
  // Each segment keeps its trailer, the empty block that ends a sync flush,
  // except the last one (§7.2.1).
  const head = concat([await peer.message(zeros), TRAILER]);
  const segment = concat([await peer.message(zeros), TRAILER]);
  const out = new Uint8Array(head.length + segment.length * (mib - 1));
  out.set(head);
  for (let i = 0; i < mib - 1; i++) {
    out.set(segment, head.length + i * segment.length);
  }
  return out.subarray(0, out.length - TRAILER.length);
}

Deno.test("RFC 7692 §8.1 a decompression bomb (1 MiB inflating to 1 GiB) fails with 1009 without large memory growth", async () => {
  const payload = await bomb(1024);
  assert.ok(payload.length < 1.1 * MiB, `${payload.length} bytes`);
  // The default 16 MiB limit; the bomb is also sent in 64 fragments.
  await using server = start();
  const before = Deno.memoryUsage().rss;
  await expectClose(server.addr.port, frame(2, payload, { rsv: RSV1 }), 1009);
  const pieces: Uint8Array[] = [];
  for (let at = 0; at < payload.length; at += 16 * KiB) {
    const first = at === 0;
    const last = at + 16 * KiB >= payload.length;
    pieces.push(
      frame(first ? 2 : 0, payload.subarray(at, at + 16 * KiB), {
        fin: last,
        rsv: first ? RSV1 : 0,
      }),
    );
  }
  await expectClose(server.addr.port, concat(pieces), 1009);
  const growth = Deno.memoryUsage().rss - before;
  assert.ok(growth < 200 * MiB, `memory grew by ${growth >> 20} MiB`);
});

// ---------------------------------------------------------------------------
// Order: inflation and deflation are asynchronous, the wire order is not.

Deno.test("messages are delivered in arrival order around a compressed one, and a ping is answered at once", async () => {
  await using server = start({ perMessageDeflate: { threshold: Infinity } });
  const { client } = await openRaw(server.addr.port);
  await using _client = client;
  const big = pseudoText(200_000);
  const compressed = deflateAlone(big);
  const half = compressed.length >> 1;
  await client.write(
    concat([
      frame(1, compressed.subarray(0, half), { rsv: RSV1, fin: false }),
      frame(9, "ping"),
      frame(0, compressed.subarray(half)),
      frame(1, "plain after"),
      frame(2, deflateAlone(new Uint8Array([1, 2, 3])), { rsv: RSV1 }),
      frame(1, "last"),
    ]),
  );
  // The pong is sent while the first message is still arriving.
  assert.equal(text((await nextFrame(client, 10, 0)).payload), "ping");
  assert.equal(text((await nextFrame(client, 1, 0)).payload), big);
  assert.equal(text((await nextFrame(client, 1, 0)).payload), "plain after");
  assert.deepEqual([...(await nextFrame(client, 2, 0)).payload], [1, 2, 3]);
  assert.equal(text((await nextFrame(client, 1, 0)).payload), "last");
});

Deno.test("a close after a compressed message does not overtake it, nor do later messages", async () => {
  const big = pseudoText(MiB);
  await using server = start({}, (socket) => {
    const writer = socket.writable.getWriter();
    // Not awaited: the close is asked for while the message compresses.
    writer.write(big).catch(() => {});
    socket.close({ closeCode: 4001, reason: "after" });
    writer.releaseLock();
  });
  const { client } = await openRaw(server.addr.port);
  await using _client = client;
  const data = await nextFrame(client, 1, RSV1);
  assert.equal(text(inflateAlone(data.payload)), big);
  const result = await client.readUntilClose();
  assert.deepEqual(result.frames, []);
  assert.equal(result.code, 4001);
  assert.equal(result.reason, "after");
});

Deno.test("messages written in a row go out in order, compressed or not", async () => {
  const messages = [pseudoText(5000), "small", pseudoText(3000, 3), "s2"];
  await using server = start({}, async (socket) => {
    const writer = socket.writable.getWriter();
    await Promise.all(messages.map((message) => writer.write(message)));
    await writer.close();
  });
  const { client } = await openRaw(server.addr.port);
  await using _client = client;
  using peer = new PeerZlib("inflate");
  for (const message of messages) {
    const compressed = message.length >= 1024;
    const got = await nextFrame(client, 1, compressed ? RSV1 : 0);
    assert.equal(
      text(compressed ? await peer.message(got.payload) : got.payload),
      message,
    );
  }
  assert.equal((await client.readUntilClose()).code, 1005);
});

Deno.test("the peer's close right after a compressed message: the message is delivered first, then the close is echoed", async () => {
  const received: (string | Uint8Array)[] = [];
  const { server, first } = watched({}, async (socket) => {
    for await (const message of socket.readable) received.push(message);
  });
  await using _server = server;
  const { client } = await openRaw(server.addr.port);
  await using _client = client;
  const big = pseudoText(300_000);
  await client.write(
    concat([
      frame(1, deflateAlone(big), { rsv: RSV1 }),
      frame(1, "plain"),
      frame(8, closePayload(4000, "bye")),
      // Ignored: nothing counts after the close frame, not even garbage.
      frame(1, "ignored"),
      new Uint8Array([0xff, 0xff]),
    ]),
  );
  const answer = await client.readFrame();
  assert.equal(answer?.opcode, 8);
  assert.deepEqual([...answer!.payload], [0x0f, 0xa0]);
  assert.equal(await client.readEof(), true);
  client.close();
  assert.deepEqual(
    await deadline(
      (await deadline(first, "the server's socket")).closed,
      "the server's socket to close",
    ),
    {
      closeCode: 4000,
      reason: "bye",
      wasClean: true,
    },
  );
  assert.equal(received.length, 2);
  assert.ok(received[0] === big, "the compressed message first");
  assert.equal(received[1], "plain");
});

// ---------------------------------------------------------------------------
// Backpressure.

Deno.test("§8 compressed messages nobody reads stop the server reading, with memory bounded", async () => {
  const { server, first } = watched({}, () => {});
  await using _server = server;
  const { client } = await openRaw(server.addr.port);
  // Each frame is ~1 KiB on the wire and 1 MiB inflated: a server that
  // inflated all it reads would need GiBs before TCP pushed back.
  const message = frame(2, deflateAlone(new Uint8Array(MiB)), { rsv: RSV1 });
  const batch = concat(Array.from({ length: 64 }, () => message));
  const before = Deno.memoryUsage().rss;
  const limit = 64 * MiB;
  const sent = await floodUntilStalled(client, batch, 500, limit);
  assert.ok(sent < limit, "the server stops reading");
  const growth = Deno.memoryUsage().rss - before;
  assert.ok(growth < 100 * MiB, `memory grew by ${growth >> 20} MiB`);
  // Reading resumes once the handler reads.
  const reader = (await deadline(first, "the server's socket")).readable
    .getReader();
  for (let i = 0; i < 3; i++) {
    const { value } = await deadline(reader.read(), "a message from readable");
    assertSameMessage(value, new Uint8Array(MiB), `message ${i}`);
  }
  // Once nobody reads, the rest is dropped without being inflated.
  await deadline(reader.cancel(), "readable to cancel");
  client.close();
});

// ---------------------------------------------------------------------------
// The client side.

Deno.test("RFC 7692 §7.2.1 the client offers, then compresses with RSV1 keeping its window", async () => {
  const message = pseudoText(4096);
  await using server = rawServer("permessage-deflate", async (peer, offer) => {
    assert.equal(offer, "permessage-deflate; client_max_window_bits");
    const first = await nextFrame(peer, 1, RSV1);
    const second = await nextFrame(peer, 1, RSV1);
    assert.ok(first.masked && second.masked, "client frames are masked");
    assert.ok(second.payload.length < first.payload.length / 10);
    assert.throws(() => inflateAlone(second.payload));
    using inflater = new PeerZlib("inflate");
    assert.equal(text(await inflater.message(first.payload)), message);
    assert.equal(text(await inflater.message(second.payload)), message);
    // A small message goes as it is.
    assert.equal(text((await nextFrame(peer, 1, 0)).payload), "small");
    await peer.write(frame(8, closePayload(1000), { mask: false }));
    await nextFrame(peer, 8, 0);
  });
  const socket = await connect(server.url, { perMessageDeflate: true });
  assert.equal(socket.extensions, "permessage-deflate");
  const writer = socket.writable.getWriter();
  for (const each of [message, message, "small"]) {
    await deadline(writer.write(each), "the write to be taken");
  }
  assert.deepEqual(await deadline(socket.closed, "the socket to close"), {
    closeCode: 1000,
    reason: "",
    wasClean: true,
  });
  await deadline(server.done, "the raw server to finish");
});

Deno.test("RFC 7692 §7.1.1.2 a client told client_no_context_takeover sends messages that stand alone", async () => {
  const message = pseudoText(4096);
  await using server = rawServer(
    "permessage-deflate; client_no_context_takeover; client_max_window_bits=10",
    async (peer) => {
      const first = await nextFrame(peer, 2, RSV1);
      const second = await nextFrame(peer, 2, RSV1);
      assertBytesEqual(second.payload, first.payload, "the second payload");
      const inflated = zlib.inflateRawSync(concat([second.payload, TRAILER]), {
        windowBits: 10,
        finishFlush: Z.Z_SYNC_FLUSH,
      });
      assert.equal(text(new Uint8Array(inflated)), message);
      await peer.write(frame(8, closePayload(1000), { mask: false }));
      await nextFrame(peer, 8, 0);
    },
  );
  const socket = await connect(server.url, {
    perMessageDeflate: { threshold: 100 },
  });
  assert.equal(
    socket.extensions,
    "permessage-deflate; client_no_context_takeover; client_max_window_bits=10",
  );
  const writer = socket.writable.getWriter();
  for (let i = 0; i < 2; i++) {
    await deadline(
      writer.write(encoder.encode(message)),
      "the write to be taken",
    );
  }
  await deadline(socket.closed, "the socket to close");
  await deadline(server.done, "the raw server to finish");
});

Deno.test("RFC 7692 §7.1.2.2 a client told client_max_window_bits=8 sends uncompressed but inflates what it receives", async () => {
  const message = pseudoText(4096);
  await using server = rawServer(
    "permessage-deflate; client_max_window_bits=8",
    async (peer) => {
      assert.equal(text((await nextFrame(peer, 1, 0)).payload), message);
      await peer.write(
        frame(1, deflateAlone(message), { mask: false, rsv: RSV1 }),
      );
      await peer.write(frame(8, closePayload(1000), { mask: false }));
      await nextFrame(peer, 8, 0);
    },
  );
  const socket = await connect(server.url, { perMessageDeflate: true });
  await deadline(
    socket.writable.getWriter().write(message),
    "the write to be taken",
  );
  const reader = socket.readable.getReader();
  assert.equal(
    (await deadline(reader.read(), "a message from readable")).value,
    message,
  );
  assert.equal(
    (await deadline(reader.read(), "a message from readable")).done,
    true,
  );
  await deadline(socket.closed, "the socket to close");
  await deadline(server.done, "the raw server to finish");
});

Deno.test("RFC 7692 §7.1 the client fails the handshake on an answer it cannot accept", async () => {
  const table: [string, PerMessageDeflateOptions, RegExp][] = [
    ["permessage-deflate; foo=1", {}, /Invalid permessage-deflate parameters/],
    ["permessage-deflate, x-other", {}, /more than one extension/],
    [
      "permessage-deflate; client_max_window_bits=12",
      { clientMaxWindowBits: 11 },
      /client_max_window_bits=12, above the 11 offered/,
    ],
  ];
  for (const [answer, options, message] of table) {
    await using server = rawServer(answer, async (peer) => {
      await peer.readEof();
    });
    await assert.rejects(
      connect(server.url, { perMessageDeflate: options }),
      (error) => {
        assert.ok(error instanceof WebSocketError, String(error));
        assert.equal(error.closeCode, 1006);
        assert.match(error.message, message);
        return true;
      },
    );
  }
});

Deno.test("RFC 7692 §7.2.2 the client fails corrupt compressed data with 1007", async () => {
  await using server = rawServer("permessage-deflate", async (peer) => {
    await peer.write(
      frame(2, new Uint8Array([0xff, 0xff]), { mask: false, rsv: RSV1 }),
    );
    const close = await nextFrame(peer, 8, 0);
    assert.deepEqual([...close.payload.subarray(0, 2)], [0x03, 0xef]);
  });
  const socket = await connect(server.url, { perMessageDeflate: true });
  await assert.rejects(
    deadline(socket.closed, "the socket to close"),
    (error) => {
      assert.ok(error instanceof WebSocketError);
      assert.equal(error.closeCode, 1007);
      return true;
    },
  );
  await deadline(server.done, "the raw server to finish");
});

// ---------------------------------------------------------------------------
// Round trips between connect() and serve().

const ROUND_TRIP_MESSAGES: (string | Uint8Array)[] = [
  "",
  new Uint8Array(0),
  "a",
  pseudoText(1023),
  pseudoText(1024, 5),
  pseudoBytes(1025),
  "héllo ✓ 🌍".repeat(500),
  pseudoBytes(65_536, 9),
  pseudoText(3 * MiB, 11),
  pseudoBytes(3 * MiB, 13),
  pseudoText(1024, 5),
];

Deno.test("round trips of 0 B to 3 MiB, text and binary, with context takeover on and off in each direction", async (t) => {
  const configs: [
    string,
    PerMessageDeflateOptions,
    PerMessageDeflateOptions,
    string,
  ][] = [
    ["takeover both ways", {}, {}, "permessage-deflate"],
    [
      "no server context takeover",
      { serverNoContextTakeover: true },
      {},
      "permessage-deflate; server_no_context_takeover",
    ],
    [
      "no client context takeover",
      {},
      { clientNoContextTakeover: true },
      "permessage-deflate",
    ],
    [
      "no takeover either way, small windows, threshold 0",
      { clientNoContextTakeover: true, serverMaxWindowBits: 9, threshold: 0 },
      { serverNoContextTakeover: true, clientMaxWindowBits: 9, threshold: 0 },
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=9",
    ],
  ];
  for (const [label, serverOptions, clientOptions, extensions] of configs) {
    await t.step(label, async () => {
      const { server, first } = watched({ perMessageDeflate: serverOptions });
      await using _server = server;
      const socket = await connect(`ws://127.0.0.1:${server.addr.port}/`, {
        perMessageDeflate: clientOptions,
      });
      assert.equal(socket.extensions, extensions);
      assert.equal(
        (await deadline(first, "the server's socket")).extensions,
        extensions,
      );
      const writer = socket.writable.getWriter();
      const reader = socket.readable.getReader();
      for (const [i, message] of ROUND_TRIP_MESSAGES.entries()) {
        await deadline(writer.write(message), `message ${i} to be taken`);
        const { value } = await deadline(
          reader.read(),
          "a message from readable",
        );
        assertSameMessage(value, message, `message ${i}`);
      }
      socket.close({ closeCode: 1000 });
      assert.equal(
        (await deadline(reader.read(), "a message from readable")).done,
        true,
      );
      assert.deepEqual(await deadline(socket.closed, "the socket to close"), {
        closeCode: 1000,
        reason: "",
        wasClean: true,
      });
    });
  }
});

Deno.test("close() of the codec rejects a pending inflation and later calls", async () => {
  const codec = new DeflateCodec("server", {
    params: {
      serverNoContextTakeover: false,
      clientNoContextTakeover: false,
      serverMaxWindowBits: 15,
      clientMaxWindowBits: 15,
    },
    options: {},
  }, 64 * MiB);
  const payload = deflateAlone(new Uint8Array(8 * MiB));
  assertBytesEqual(
    await deadline(codec.inflate(false, payload), "the inflation"),
    new Uint8Array(8 * MiB),
    "the inflated message",
  );
  const pending = codec.inflate(false, payload);
  codec.closeInflater();
  codec.closeDeflater();
  await assert.rejects(pending, WebSocketError);
  await assert.rejects(codec.inflate(true, payload), WebSocketError);
  await assert.rejects(codec.compress(new Uint8Array(10)), WebSocketError);
});
