import assert from "node:assert/strict";
import { connect, type WebSocketConnection, WebSocketError } from "../mod.ts";
import {
  GOOD_ACCEPT,
  headerValues,
  type HttpAnswer,
  parseAnswer,
  RawClient,
  text,
  upgradeRequest,
} from "./_raw_client.ts";
import { frame } from "./_wire.ts";
import {
  collectGarbage,
  concat,
  deadline,
  never,
  serveLocal,
  start,
  waitFor,
} from "./_util.ts";

/** Sends a raw request head and returns the server's answer. */
async function ask(
  port: number,
  head: string,
): Promise<HttpAnswer & { eof: boolean }> {
  await using client = await RawClient.connect(port);
  await client.write(head);
  const answer = await client.readHead();
  return {
    ...answer,
    eof: answer.status === 101 ? false : await client.readEof(),
  };
}

// Which heads are refused, and with what, is decided without sockets (see
// server_handshake_test.ts); here, what a refusal looks like on the wire.
const refusals: [string, Record<string, string>, string | undefined, number][] =
  [
    [
      "a Connection header without upgrade",
      { Connection: "keep-alive" },
      undefined,
      400,
    ],
    ["version 8", { "Sec-WebSocket-Version": "8" }, undefined, 426],
    ["a POST upgrade", {}, "POST /chat HTTP/1.1", 405],
    ["an HTTP/2.0 upgrade", {}, "GET /chat HTTP/2.0", 505],
  ];

for (const [what, headers, requestLine, status] of refusals) {
  Deno.test(`§4.2.1 server refuses ${what} with ${status} as plain text with its headers, and closes`, async () => {
    await using server = start();
    const answer = await ask(
      server.addr.port,
      upgradeRequest(server.addr.port, headers, requestLine),
    );
    assert.equal(answer.status, status);
    assert.equal(answer.eof, true);
    assert.match(answer.headers.get("content-type") ?? "", /^text\/plain/);
    assert.ok(answer.body.length > 0);
    if (status === 426) {
      assert.equal(answer.headers.get("sec-websocket-version"), "13");
    }
    if (status === 405) assert.equal(answer.headers.get("allow"), "GET");
  });
}

Deno.test("§4.2.1 server answers an oversized request head with 431", async () => {
  await using server = start({ maxHeadSize: 1024 });
  const answer = await ask(
    server.addr.port,
    upgradeRequest(server.addr.port, { "X-Padding": "a".repeat(2000) }),
  );
  assert.equal(answer.status, 431);
  assert.equal(answer.eof, true);
});

Deno.test("§4.2.1 a head that grows past maxHeadSize without ending gets 431", async () => {
  await using server = start({ maxHeadSize: 2048 });
  await using client = await RawClient.connect(server.addr.port);
  await client.write("GET / HTTP/1.1\r\n" + "X-Long: a\r\n".repeat(400));
  assert.equal((await client.readHead()).status, 431);
});

Deno.test("§4.2.1 server answers a head cut off by the client's FIN with 400", async () => {
  await using server = start();
  await using client = await RawClient.connect(server.addr.port);
  await client.write("GET / HTTP/1.1\r\nHost: x\r\n");
  await client.conn.closeWrite();
  assert.equal((await client.readHead()).status, 400);
});

Deno.test("server answers a plain HTTP request with 426 by default", async () => {
  await using server = start();
  const answer = await ask(
    server.addr.port,
    `GET / HTTP/1.1\r\nHost: x\r\n\r\n`,
  );
  assert.equal(answer.status, 426);
  assert.equal(answer.headers.get("upgrade"), "websocket");
});

Deno.test("server passes plain HTTP requests to fetch", async () => {
  let seen: Request | undefined;
  await using server = start({
    fetch(request) {
      seen = request;
      return new Response("<h1>hi</h1>", {
        headers: { "content-type": "text/html" },
      });
    },
  });
  const answer = await ask(
    server.addr.port,
    `GET /page?q=1 HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n`,
  );
  assert.equal(answer.status, 200);
  assert.equal(answer.body, "<h1>hi</h1>");
  assert.equal(seen?.url, "http://example.test/page?q=1");
});

Deno.test("a response header value beyond ASCII goes out as its latin1 bytes and keeps the head intact", async () => {
  await using server = start({
    fetch: () => new Response("hello", { headers: { "x-name": "caf\u00e9" } }),
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(`GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(4096);
  let n: number | null;
  while ((n = await client.conn.read(buffer)) !== null) {
    chunks.push(buffer.slice(0, n));
  }
  const answer = new TextDecoder("latin1").decode(concat(chunks));
  assert.ok(answer.startsWith("HTTP/1.1 200 OK\r\n"), answer);
  // Header values are byte strings (RFC 9110 §5.5): é is the one byte E9.
  assert.ok(answer.includes("\r\nx-name: caf\u00e9\r\n"), answer);
  assert.ok(answer.endsWith("\r\n\r\nhello"), answer);
});

Deno.test("§4.2.2 the server and the client compute Sec-WebSocket-Accept with WebCrypto's SHA-1, as the project asks", async () => {
  const subtle = crypto.subtle;
  const digest = subtle.digest;
  const hashed: string[] = [];
  // Counted on the way through (an own property over the prototype's
  // method), for this test only.
  subtle.digest = function (algorithm, data) {
    hashed.push(String(algorithm));
    return digest.call(this, algorithm, data);
  };
  try {
    await using server = start();
    const port = server.addr.port;
    // The server's side alone: a raw client checks the value itself.
    const answer = await ask(port, upgradeRequest(port));
    assert.equal(answer.status, 101);
    assert.equal(answer.headers.get("sec-websocket-accept"), GOOD_ACCEPT);
    assert.deepEqual(hashed, ["SHA-1"]);
    // Both sides: the server's digest again, and our client's check.
    const socket = await connect(`ws://127.0.0.1:${port}`);
    socket.close();
    await socket.closed;
    assert.deepEqual(hashed, ["SHA-1", "SHA-1", "SHA-1"]);
  } finally {
    Reflect.deleteProperty(subtle, "digest");
  }
  assert.equal(crypto.subtle.digest, digest);
});

Deno.test("§4.2.2 a failing SHA-1 gets the upgrade 500 and goes to onError, and fails connect() with a WebSocketError", async () => {
  const subtle = crypto.subtle;
  const broken = new Error("The digest failed");
  subtle.digest = () => Promise.reject(broken);
  const reported: unknown[] = [];
  try {
    await using server = start({ onError: (error) => reported.push(error) });
    const port = server.addr.port;
    const answer = await ask(port, upgradeRequest(port));
    assert.equal(answer.status, 500);
    assert.equal(answer.eof, true);
    assert.deepEqual(reported, [broken]);
    // The client's own fails before it reads the server's 500.
    await assert.rejects(
      connect(`ws://127.0.0.1:${port}`),
      (error) => error instanceof WebSocketError && error.cause === broken,
    );
  } finally {
    Reflect.deleteProperty(subtle, "digest");
  }
});

Deno.test("§4.2.2 server picks the first offered subprotocol it supports", async () => {
  let protocol: string | undefined;
  await using server = start(
    { protocols: ["chat.v2", "chat.v1"] },
    (socket) => {
      protocol = socket.protocol;
      socket.close();
    },
  );
  const answer = await ask(
    server.addr.port,
    upgradeRequest(server.addr.port, {
      "Sec-WebSocket-Protocol": "superchat, chat.v1 , chat.v2",
    }),
  );
  assert.equal(answer.headers.get("sec-websocket-protocol"), "chat.v1");
  const none = await ask(
    server.addr.port,
    upgradeRequest(server.addr.port, { "Sec-WebSocket-Protocol": "superchat" }),
  );
  assert.equal(none.status, 101);
  assert.equal(none.headers.get("sec-websocket-protocol"), null);
  await deadline(server.shutdown(), "the shutdown");
  assert.equal(protocol, "");
});

Deno.test("onUpgrade refuses an upgrade with its own 403 response", async () => {
  let handled = false;
  await using server = start({
    onUpgrade(request, info) {
      assert.equal(new URL(request.url).pathname, "/chat");
      assert.equal(request.headers.get("cookie"), "session=abc");
      assert.equal(info.remoteAddr.hostname, "127.0.0.1");
      if (request.headers.get("origin") !== "https://good.test") {
        return new Response("Forbidden origin", { status: 403 });
      }
    },
  }, () => {
    handled = true;
  });
  const answer = await ask(
    server.addr.port,
    upgradeRequest(server.addr.port, {
      Origin: "https://evil.test",
      Cookie: "session=abc",
    }),
  );
  assert.equal(answer.status, 403);
  assert.equal(answer.body, "Forbidden origin");
  assert.equal(answer.eof, true);
  assert.equal(handled, false);
});

Deno.test("onUpgrade accepts with extra response headers", async () => {
  await using server = start({
    onUpgrade: () => ({
      headers: { "set-cookie": "seen=1", "x-server": "scope" },
    }),
  });
  const answer = await ask(server.addr.port, upgradeRequest(server.addr.port));
  assert.equal(answer.status, 101);
  assert.equal(answer.headers.get("set-cookie"), "seen=1");
  assert.equal(answer.headers.get("x-server"), "scope");
});

Deno.test("the socket has the upgrade request with its URL, method and headers, and the remote address", async () => {
  const seen = Promise.withResolvers<[Request, Request, string]>();
  await using server = start({}, (socket) => {
    seen.resolve([socket.request, socket.request, socket.remoteAddr.hostname]);
    socket.close();
  });
  await using _client = await RawClient.open(server.addr.port);
  const [request, again, host] = await deadline(
    seen.promise,
    "what the server saw",
  );
  assert.equal(request.url, `http://127.0.0.1:${server.addr.port}/chat?x=1`);
  assert.equal(request.method, "GET");
  assert.equal(request.headers.get("upgrade"), "websocket");
  assert.equal(request.headers.get("sec-websocket-version"), "13");
  // Made once, when first asked for.
  assert.equal(again, request);
  assert.equal(host, "127.0.0.1");
});

Deno.test("the socket keeps no request that nothing else holds, and makes an equal one when asked again", async () => {
  const seen = Promise.withResolvers<
    [WebSocketConnection, WeakRef<Request>, string]
  >();
  await using server = start({}, (socket) => {
    const request = socket.request;
    seen.resolve([socket, new WeakRef(request), request.url]);
  });
  await using _client = await RawClient.open(server.addr.port);
  const [socket, first, url] = await deadline(seen.promise, "the socket");
  await collectGarbage();
  assert.equal(first.deref(), undefined, "the first request is collected");
  const again = socket.request;
  assert.equal(again.url, url);
  assert.equal(again.headers.get("sec-websocket-version"), "13");
  assert.equal(socket.request, again);
});

Deno.test("onUpgrade and the socket see the same request", async () => {
  const seen = Promise.withResolvers<[Request, Request]>();
  let upgrade: Request | undefined;
  await using server = start({
    onUpgrade: (request) => {
      upgrade = request;
    },
  }, (socket) => {
    seen.resolve([upgrade!, socket.request]);
    socket.close();
  });
  await using _client = await RawClient.open(server.addr.port);
  const [fromUpgrade, fromSocket] = await deadline(
    seen.promise,
    "what the server saw",
  );
  assert.equal(fromSocket, fromUpgrade);
});

Deno.test("§4.2 bytes sent in the same write as the request head are not lost", async () => {
  await using server = start();
  await using client = await RawClient.connect(server.addr.port);
  const head = new TextEncoder().encode(upgradeRequest(server.addr.port));
  const frames = [frame(1, "first"), frame(2, new Uint8Array([1, 2, 3]))];
  const all = new Uint8Array(head.length + frames[0].length + frames[1].length);
  all.set(head);
  all.set(frames[0], head.length);
  all.set(frames[1], head.length + frames[0].length);
  await client.write(all);
  assert.equal((await client.readHead()).status, 101);
  const first = await client.readFrame();
  assert.equal(first?.opcode, 1);
  assert.equal(text(first!.payload), "first");
  const second = await client.readFrame();
  assert.deepEqual(second?.payload, new Uint8Array([1, 2, 3]));
});

Deno.test("a request head that stalls past handshakeTimeout is closed", async () => {
  await using server = start({ handshakeTimeout: 100 });
  await using client = await RawClient.connect(server.addr.port);
  await client.write("GET / HTTP/1.1\r\n");
  assert.equal(await client.readEof(), true);
});

// --- One head parser for upgrades and plain requests (RFC 9112) -------------------

// Each defect, in an upgrade's head and in a plain request's: the same answer
// on both paths, since both go through the same parser (RFC 9112 §11.2:
// smuggling lives in the differences between parsers of one message).
const defects: [string, (head: string) => string, boolean][] = [
  [
    "a control byte in the target",
    (h) => h.replace(" /chat", " /ch\x01at"),
    false,
  ],
  [
    "userinfo in Host",
    (h) => h.replace(/Host: [^\r]*/, "Host: user:pw@127.0.0.1"),
    false,
  ],
  ["two Host lines", (h) => h.replace(/(Host: [^\r]*\r\n)/, "$1$1"), false],
  [
    "obsolete line folding",
    (h) => h.replace(/(Host: [^\r]*\r\n)/, "$1X-A: b\r\n c\r\n"),
    false,
  ],
  ["a space before a colon", (h) => h.replace("Host:", "Host :"), false],
  // RFC 9112 §2.2: ignored, so the request is served on both paths.
  ["a CRLF before the request line", (h) => "\r\n" + h, true],
];

for (const [what, defect, served] of defects) {
  Deno.test(`RFC 9112 ${what} gets the same answer as an upgrade and as a plain request (${served ? "served" : "400"})`, async () => {
    await using server = start({ fetch: () => new Response("plain") });
    const port = server.addr.port;
    const plain = await ask(
      port,
      defect(
        `GET /chat?x=1 HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`,
      ),
    );
    const upgrade = await ask(port, defect(upgradeRequest(port)));
    if (served) {
      assert.equal(plain.status, 200);
      assert.equal(plain.body, "plain");
      assert.equal(upgrade.status, 101);
    } else {
      assert.equal(plain.status, 400);
      assert.deepEqual(
        [upgrade.status, upgrade.body, upgrade.eof],
        [plain.status, plain.body, plain.eof],
      );
    }
  });
}

// --- Upgrades that must be refused (RFC 6455 §4.2.1) ---------------------------------

for (
  const [what, headers] of [
    ["Sec-WebSocket-Version with no-break spaces around 13", {
      "Sec-WebSocket-Version": "\xa013\xa0",
    }],
    ["a body by Content-Length", { "Content-Length": "6" }],
    ["a chunked body", { "Transfer-Encoding": "chunked" }],
  ] as const
) {
  Deno.test(`§4.2.1 an upgrade with ${what} gets 400, and what follows its head is not taken for frames`, async () => {
    let opened = false;
    await using server = start({}, () => {
      opened = true;
    });
    const port = server.addr.port;
    await using client = await RawClient.connect(port);
    // The body would have been a text frame "hi" had the head been taken.
    // The head as latin1: U+00A0 is the one byte A0 on the wire.
    const head = upgradeRequest(port, headers);
    await client.write(
      concat([Uint8Array.from(head, (c) => c.charCodeAt(0)), frame(1, "hi")]),
    );
    const answer = await client.readHead();
    assert.equal(answer.status, 400);
    assert.equal(opened, false);
  });
}

// --- What onUpgrade returns ------------------------------------------------------------

Deno.test("onUpgrade headers with CR or LF get 500, reported to onError, and no 101", async () => {
  const errors: unknown[] = [];
  await using server = start({
    onError: (error) => errors.push(error),
    onUpgrade: () => ({ headers: { "x-a": "a\r\nx-injected: 1" } }),
  });
  const answer = await ask(server.addr.port, upgradeRequest(server.addr.port));
  assert.equal(answer.status, 500);
  assert.equal(answer.headers.get("x-injected"), null);
  assert.equal(answer.eof, true);
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof TypeError, String(errors[0]));
});

Deno.test("§10.2 serve() refuses origins given as a string, or an entry that is not a serialized origin, with a TypeError before listening", () => {
  for (
    const origins of [
      "https://app.bank.com",
      ["https://x.com/"],
      ["https://x.com:443"],
    ]
  ) {
    assert.throws(
      () => start({ origins: origins as string[] }),
      TypeError,
      JSON.stringify(origins),
    );
  }
});

Deno.test("§4.2.1 an onUpgrade that never settles: the connection is closed after handshakeTimeout", async () => {
  await using local = serveLocal({
    handshakeTimeout: 300,
    onUpgrade: never,
  });
  await using client = await RawClient.connect(local.port);
  await client.write(upgradeRequest(local.port));
  // EOF with no byte before it: no 101, no answer.
  assert.equal(await deadline(client.readEof(), "EOF"), true);
});

// --- RFC 9110 §5.5 header values beyond ASCII, the 101's own headers (§4.2.2),
// request targets (RFC 9112 §3.2) and origins (§10.2), over TCP ------------------

const UTF8_VALUE =
  "caf\u00e9 \u20ac 5 \u2014 \u041f\u0440\u0438\u0432\u0435\u0442";

/** A string's UTF-8 bytes, one character per byte: a byte string. */
function byteString(value: string): string {
  return String.fromCharCode(...new TextEncoder().encode(value));
}

/** The status a request gets, the connection closed after its head. */
async function statusOf(port: number, request: string): Promise<number> {
  await using client = await RawClient.connect(port);
  await client.write(request);
  return parseAnswer(await client.readHeadBytes()).status;
}

Deno.test("RFC 9110 §5.5 an upgrade whose header value is UTF-8 (bytes 0x80 and up) is accepted; the value is its bytes as latin1", async () => {
  const opened = Promise.withResolvers<WebSocketConnection>();
  const hooked: (string | null)[] = [];
  await using local = serveLocal({
    onUpgrade: (request) => {
      hooked.push(request.headers.get("x-name"));
    },
  }, (socket) => opened.resolve(socket));
  // upgradeRequest's text is written as UTF-8: "€" goes out as E2 82 AC.
  await using _client = await RawClient.open(local.port, {
    "X-Name": UTF8_VALUE,
  });
  const socket = await deadline(opened.promise, "handler called");
  const value = socket.request.headers.get("x-name");
  assert.equal(value, byteString(UTF8_VALUE));
  assert.deepEqual(hooked, [value]);
  // Byte for byte: decoding the latin1 string's bytes as UTF-8 gives it back.
  assert.equal(
    new TextDecoder().decode(Uint8Array.from(value!, (c) => c.charCodeAt(0))),
    UTF8_VALUE,
  );
});

Deno.test("§4.2.2 headers from onUpgrade reach the 101 beside the handshake's own, which they cannot override", async () => {
  // Which headers are left out, all of them: server_handshake_test.ts.
  await using local = serveLocal({
    onUpgrade: () => ({
      headers: [
        ["sec-websocket-accept", "bogus"],
        ["set-cookie", "a=1"],
        ["set-cookie", "b=2"],
      ],
    }),
  });
  await using client = await RawClient.connect(local.port);
  await client.write(upgradeRequest(local.port));
  const answer = parseAnswer(await client.readHeadBytes());
  assert.equal(answer.status, 101);
  assert.deepEqual(headerValues(answer, "sec-websocket-accept"), [
    GOOD_ACCEPT,
  ]);
  assert.deepEqual(headerValues(answer, "set-cookie"), ["a=1", "b=2"]);
});

Deno.test("§4.2.2 a Response with status 101 from onUpgrade accepts the upgrade with its headers", async () => {
  await using local = serveLocal({
    onUpgrade: () =>
      new Response(null, {
        status: 101,
        headers: { "set-cookie": "s=1", "x-extra": "yes" },
      }),
  });
  await using client = await RawClient.connect(local.port);
  await client.write(upgradeRequest(local.port));
  const answer = await deadline(client.readHead(), "answer");
  assert.equal(answer.status, 101);
  assert.equal(answer.headers.get("x-extra"), "yes");
  assert.deepEqual(answer.headers.getSetCookie(), ["s=1"]);
  assert.equal(answer.headers.get("sec-websocket-accept"), GOOD_ACCEPT);
  // A WebSocket, not an HTTP answer: the echo works.
  await client.write(frame(1, "over the socket"));
  const echoed = await deadline(client.readFrame(), "echo");
  assert.equal(text(echoed!.payload), "over the socket");
});

Deno.test("RFC 9112 §3.2 absolute http: and ws: targets are accepted, and the socket's URL has their path", async () => {
  // The targets refused (*, authority-form, other schemes) and the 414 and
  // 431 of long heads are decided without sockets: server_handshake_test.ts.
  const urls: string[] = [];
  await using local = serveLocal(
    {},
    (socket) => void urls.push(socket.request.url),
  );
  const host = `127.0.0.1:${local.port}`;
  for (const target of [`http://${host}/path`, `ws://${host}/path`]) {
    assert.equal(
      await statusOf(
        local.port,
        upgradeRequest(local.port, {}, `GET ${target} HTTP/1.1`),
      ),
      101,
      target,
    );
  }
  await waitFor(() => urls.length >= 2, "both handlers called");
  assert.deepEqual(urls.map((url) => new URL(url).pathname), [
    "/path",
    "/path",
  ]);
});

for (
  const [form, origins] of [
    ["a list", ["https://good.example"]],
    ["a function", (origin: string) => origin === "https://good.example"],
  ] as const
) {
  Deno.test(`RFC 6455 §10.2 origins as ${form}: another page's origin gets 403 before onUpgrade; the allowed origin and no Origin open`, async () => {
    let upgrades = 0;
    await using local = serveLocal({
      origins,
      onUpgrade: () => {
        upgrades++;
      },
    });
    const port = local.port;
    // Another site, and look-alikes of the allowed origin: a longer host
    // and another port (an exact comparison, not a prefix).
    for (
      const origin of [
        "https://evil.example",
        "https://good.example.evil.com",
        "https://good.example:8443",
      ]
    ) {
      assert.equal(
        await statusOf(port, upgradeRequest(port, { Origin: origin })),
        403,
        origin,
      );
    }
    assert.equal(upgrades, 0, "onUpgrade did not run for the refused origin");
    assert.equal(
      await statusOf(
        port,
        upgradeRequest(port, { Origin: "https://good.example" }),
      ),
      101,
    );
    assert.equal(await statusOf(port, upgradeRequest(port)), 101);
    assert.equal(upgrades, 2);
  });
}
