// HTTP details of the opening handshake and plain answers over TCP: header
// bytes beyond ASCII, response framing (RFC 9110 §8.6), the 101's own
// headers, request targets, and the origin check (RFC 6455 §10.2).

import assert from "node:assert/strict";
import { connect, type WebSocketConnection } from "../mod.ts";
import { GOOD_ACCEPT, RawClient, text, upgradeRequest } from "./_raw_client.ts";
import { frame } from "./_wire.ts";
import { deadline, serveLocal, waitFor } from "./_util.ts";

const encoder = new TextEncoder();

// --- Helpers ------------------------------------------------------------------

/** An answer as it came on the wire: status, header lines, body bytes. */
interface WireAnswer {
  status: number;
  /** Every header line, in order, the name lower-cased. */
  lines: [name: string, value: string][];
  body: Uint8Array;
}

/** Splits an HTTP answer (its head as latin1 text) into its parts. */
function parseAnswer(bytes: Uint8Array): WireAnswer {
  let end = -1;
  for (let i = 0; i + 3 < bytes.length && end === -1; i++) {
    if (
      bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 &&
      bytes[i + 3] === 10
    ) end = i;
  }
  assert.notEqual(end, -1, "the answer has a complete head");
  const head = String.fromCharCode(...bytes.subarray(0, end));
  const [statusLine, ...rest] = head.split("\r\n");
  const lines = rest.map((line): [string, string] => {
    const colon = line.indexOf(":");
    return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()];
  });
  return {
    status: Number(statusLine.split(" ")[1]),
    lines,
    body: bytes.subarray(end + 4),
  };
}

/** The values of the header lines named `name`. */
function values(answer: WireAnswer, name: string): string[] {
  return answer.lines.filter(([n]) => n === name).map(([, value]) => value);
}

/**
 * Sends a request and reads the whole answer, up to the server's close: for
 * answers after which the server closes the connection.
 */
async function exchange(
  port: number,
  request: string | Uint8Array,
): Promise<WireAnswer> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const bytes = typeof request === "string"
      ? encoder.encode(request)
      : request;
    for (let at = 0; at < bytes.length;) {
      at += await conn.write(bytes.subarray(at));
    }
    const chunks: Uint8Array[] = [];
    const read = async () => {
      while (true) {
        const chunk = new Uint8Array(16 * 1024);
        const n = await conn.read(chunk);
        if (n === null) return;
        chunks.push(chunk.subarray(0, n));
      }
    };
    await deadline(read(), "end of the answer");
    const all = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
    let at = 0;
    for (const chunk of chunks) {
      all.set(chunk, at);
      at += chunk.length;
    }
    return parseAnswer(all);
  } finally {
    conn.close();
  }
}

/** Reads an HTTP head a byte at a time, so that nothing after it is taken. */
async function readHead(conn: Deno.Conn): Promise<Uint8Array> {
  const bytes: number[] = [];
  const one = new Uint8Array(1);
  const read = async () => {
    while (
      !(bytes.length >= 4 && bytes.at(-4) === 13 && bytes.at(-3) === 10 &&
        bytes.at(-2) === 13 && bytes.at(-1) === 10)
    ) {
      if (await conn.read(one) === null) break;
      bytes.push(one[0]);
    }
  };
  await deadline(read(), "head");
  return Uint8Array.from(bytes);
}

/** Sends a request and reads the answer's head; after a 101 it stays open. */
async function openingAnswer(
  conn: Deno.Conn,
  request: string,
): Promise<WireAnswer> {
  await conn.write(encoder.encode(request));
  return parseAnswer(await readHead(conn));
}

/** The status a request gets, the connection closed after its head. */
async function statusOf(port: number, request: string): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    return (await openingAnswer(conn, request)).status;
  } finally {
    conn.close();
  }
}

/** A string's UTF-8 bytes, one character per byte: a byte string. */
function byteString(value: string): string {
  return String.fromCharCode(...encoder.encode(value));
}

// --- 5: header values beyond ASCII ----------------------------------------------

const UTF8_VALUE =
  "caf\u00e9 \u20ac 5 \u2014 \u041f\u0440\u0438\u0432\u0435\u0442";

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

Deno.test("RFC 9110 §5.5 connect() accepts a 101 whose header value is UTF-8", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    try {
      const head = String.fromCharCode(...await readHead(conn));
      const key = /sec-websocket-key: *(\S+)/i.exec(head)![1];
      const digest = await crypto.subtle.digest(
        "SHA-1",
        encoder.encode(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"),
      );
      await conn.write(encoder.encode(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
          "Connection: Upgrade\r\nSec-WebSocket-Accept: " +
          `${new Uint8Array(digest).toBase64()}\r\n` +
          `X-Greeting: ${UTF8_VALUE}\r\n\r\n`,
      ));
      // The client's close frame (masked, code 1000), then ours and FIN.
      const close = new Uint8Array(8);
      let at = 0;
      while (at < close.length) {
        const n = await conn.read(close.subarray(at));
        if (n === null) break;
        at += n;
      }
      await conn.write(
        frame(8, close.subarray(6, 8).map((b, i) => b ^ close[2 + i]), {
          mask: false,
        }),
      );
    } finally {
      conn.close();
    }
  })();
  try {
    const socket = await deadline(
      connect(`ws://127.0.0.1:${(listener.addr as Deno.NetAddr).port}/`),
      "connect",
    );
    socket.close({ closeCode: 1000 });
    assert.equal(
      (await deadline(socket.closed, "closed")).closeCode,
      1000,
    );
  } finally {
    listener.close();
    await deadline(served, "raw server done");
  }
});

// --- 9: response framing, the 101's headers, targets, head limits ---------------

Deno.test("RFC 9110 §8.6 a 204 from fetch has no Content-Length and no body", async () => {
  await using local = serveLocal({
    fetch: () => new Response(null, { status: 204 }),
  });
  // Connection: close, so that the answer ends with the server's close
  // rather than after keepAliveTimeout.
  const answer = await exchange(
    local.port,
    "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
  );
  assert.equal(answer.status, 204);
  assert.deepEqual(values(answer, "content-length"), []);
  assert.equal(answer.body.length, 0);
});

Deno.test("RFC 9110 §9.3.2 a HEAD request gets no body, and no Content-Length but the one a GET would get (never a made-up 0)", async () => {
  await using local = serveLocal({
    fetch: (request) =>
      new URL(request.url).pathname === "/sized"
        ? new Response("hello body", { headers: { "content-length": "10" } })
        : new Response("hello body"),
  });
  const close = "Connection: close\r\n\r\n";
  const head = await exchange(
    local.port,
    `HEAD / HTTP/1.1\r\nHost: x\r\n${close}`,
  );
  assert.equal(head.status, 200);
  // §8.6: a HEAD answer may carry only the length a GET would have.
  assert.deepEqual(values(head, "content-length"), ["10"]);
  assert.equal(head.body.length, 0);
  const sized = await exchange(
    local.port,
    `HEAD /sized HTTP/1.1\r\nHost: x\r\n${close}`,
  );
  assert.deepEqual(values(sized, "content-length"), ["10"]);
  assert.equal(sized.body.length, 0);
  const get = await exchange(
    local.port,
    `GET / HTTP/1.1\r\nHost: x\r\n${close}`,
  );
  assert.deepEqual(values(get, "content-length"), ["10"]);
  assert.equal(text(get.body), "hello body");
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
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: local.port });
  try {
    const answer = await openingAnswer(conn, upgradeRequest(local.port));
    assert.equal(answer.status, 101);
    assert.deepEqual(values(answer, "sec-websocket-accept"), [GOOD_ACCEPT]);
    assert.deepEqual(values(answer, "set-cookie"), ["a=1", "b=2"]);
  } finally {
    conn.close();
  }
});

Deno.test("§4.2.2 a Response with status 101 from onUpgrade accepts the upgrade with its headers", async () => {
  await using local = serveLocal({
    onUpgrade: () =>
      new Response(null, {
        status: 101,
        headers: { "set-cookie": "s=1", "x-extra": "yes" },
      }),
  });
  await using client = new RawClient(
    await Deno.connect({ hostname: "127.0.0.1", port: local.port }),
  );
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

// --- 10: cross-site WebSocket hijacking ----------------------------------------------

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
