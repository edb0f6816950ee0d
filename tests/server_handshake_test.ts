// The server's opening handshake without sockets (green under
// `deno test --deny-net`): a request head as bytes, through the one head
// parser, the request URL and `ServerHandshake`, as `serve()` decides; the
// 101's bytes, the subprotocol, the extensions and every refusal, grouped by
// RFC 6455 section. The TCP tests keep only what needs a connection.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { computeAccept, sha1Base64 } from "../src/engine/_accept_value.ts";
import { HttpError } from "../src/http/_http.ts";
import {
  DEFAULT_HTTP1_LIMITS,
  requestUrl,
  takeRequestHead,
} from "../src/http/_http1.ts";
import {
  checkOrigins,
  ServerHandshake,
  type ServerHandshakeSettings,
} from "../src/protocol/_server_handshake.ts";
import { readRequestHead } from "../src/server/_http_server.ts";
import { GOOD_ACCEPT, GOOD_KEY, upgradeRequest } from "./_raw_client.ts";
import { pseudoText } from "./_util.ts";

const PORT = 8080;

/** A string's characters as bytes, one byte each. */
function bytes(text: string): Uint8Array {
  return Uint8Array.from(text, (char) => char.charCodeAt(0));
}

/** What the server decides for a request head: the 101 or the refusal. */
function decide(
  raw: string,
  settings: ServerHandshakeSettings = {},
  headers?: HeadersInit,
) {
  const handshake = new ServerHandshake(settings);
  try {
    const taken = takeRequestHead(bytes(raw));
    assert.ok(taken, "the head is whole");
    const url = requestUrl(taken.head, `http://127.0.0.1:${PORT}`);
    const checked = handshake.check(taken.head);
    if (checked instanceof HttpError) return checked;
    // The decision only writes the accept value into the 101: it is computed
    // apart, asynchronously (tested below). The heads accepted here all have
    // the RFC's sample key.
    assert.equal(checked.key, GOOD_KEY);
    return handshake.accept(checked, {
      request: () => new Request(url, { headers: taken.head.headers }),
      headers,
      acceptValue: GOOD_ACCEPT,
    });
  } catch (error) {
    if (error instanceof HttpError) return error;
    throw error;
  }
}

/** The refusal a head gets; fails if it is accepted. */
function refusal(
  raw: string,
  settings?: ServerHandshakeSettings,
  headers?: HeadersInit,
): HttpError {
  const decision = decide(raw, settings, headers);
  assert.ok(decision instanceof HttpError, `refused: ${JSON.stringify(raw)}`);
  return decision;
}

/** The acceptance a head gets, its 101 parsed; fails if it is refused. */
function acceptance(
  raw: string,
  settings?: ServerHandshakeSettings,
  headers?: HeadersInit,
) {
  const decision = decide(raw, settings, headers);
  if (decision instanceof HttpError) {
    assert.fail(`refused with ${decision.status}: ${decision.message}`);
  }
  const text = decision.response;
  assert.ok(text.endsWith("\r\n\r\n"), text);
  const [status, ...lines] = text.slice(0, -4).split("\r\n");
  const fields = lines.map((line): [string, string] => {
    const colon = line.indexOf(":");
    return [line.slice(0, colon), line.slice(colon + 1).trim()];
  });
  return { ...decision, status, fields, headers: new Headers(fields) };
}

const request = (headers: Record<string, string> = {}, line?: string) =>
  upgradeRequest(PORT, headers, line);

// --- §4.2.2: the server's answer -----------------------------------------------

Deno.test("§4.2.2 a valid upgrade gets 101 with the RFC's accept value and the handshake's headers, nothing else", () => {
  const accepted = acceptance(request());
  assert.equal(accepted.status, "HTTP/1.1 101 Switching Protocols");
  assert.deepEqual(accepted.fields, [
    ["upgrade", "websocket"],
    ["connection", "Upgrade"],
    ["sec-websocket-accept", GOOD_ACCEPT],
  ]);
  assert.equal(accepted.protocol, "");
  assert.equal(accepted.extensions, "");
  assert.equal(accepted.perMessageDeflate, undefined);
});

Deno.test("§4.2.1 upgrade and connection tokens are matched case-insensitively in lists", () => {
  acceptance(
    request({ Upgrade: "WebSocket", Connection: "keep-alive, UPGRADE" }),
  );
  acceptance(request({ Upgrade: "h2c, websocket", Connection: "Upgrade" }));
});

Deno.test("§4.2.2 Sec-WebSocket-Accept is base64(SHA-1(key + GUID)), WebCrypto's SHA-1 checked against RFC 3174's vectors and node:crypto", async () => {
  assert.equal(await computeAccept(GOOD_KEY), GOOD_ACCEPT);
  assert.equal(await computeAccept("dGhlIHNhbXBsZSBub25jZQ=="), GOOD_ACCEPT);
  const base64 = (hex: string) => Uint8Array.fromHex(hex).toBase64();
  // RFC 3174 §7.3's test vectors, and the empty message.
  assert.equal(
    await sha1Base64("abc"),
    base64("a9993e364706816aba3e25717850c26c9cd0d89d"),
  );
  assert.equal(
    await sha1Base64(
      "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
    ),
    base64("84983e441c3bd26ebaae4aa1f95129e5e54670f1"),
  );
  assert.equal(
    await sha1Base64("a".repeat(1_000_000)),
    base64("34aa973cd4c4daa4f61eeb2bdbad27316534016f"),
  );
  assert.equal(
    await sha1Base64(""),
    base64("da39a3ee5e6b4b0d3255bfef95601890afd80709"),
  );
  // Every length around the 64-byte block boundaries, as node:crypto says.
  const text = pseudoText(300);
  for (let length = 0; length <= 300; length++) {
    const input = text.slice(0, length);
    assert.equal(
      await sha1Base64(input),
      createHash("sha1").update(input).digest("base64"),
      `length ${length}`,
    );
  }
});

// --- §4.2.1: refusals ---------------------------------------------------------------

const refusals: [string, string, number][] = [
  [
    "a Connection header without upgrade",
    request({ Connection: "keep-alive" }),
    400,
  ],
  ["a missing Sec-WebSocket-Key", request({ "Sec-WebSocket-Key": "" }), 400],
  [
    "a key that decodes to 15 bytes",
    request({ "Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAA" }),
    400,
  ],
  [
    "a key that is not base64",
    request({ "Sec-WebSocket-Key": "!!!!!!!!!!!!!!!!!!!!!!==" }),
    400,
  ],
  [
    "two keys",
    request({}).replace(
      "\r\n\r\n",
      `\r\nSec-WebSocket-Key: ${GOOD_KEY}\r\n\r\n`,
    ),
    400,
  ],
  [
    "a missing Sec-WebSocket-Version",
    request({ "Sec-WebSocket-Version": "" }),
    400,
  ],
  [
    "a Sec-WebSocket-Version with no-break spaces around 13",
    request({ "Sec-WebSocket-Version": "\xa013\xa0" }),
    400,
  ],
  [
    "a Sec-WebSocket-Version that is not a number",
    request({ "Sec-WebSocket-Version": "13, 13" }),
    400,
  ],
  ["a missing Host", request({ Host: "" }), 400],
  ["a Host with userinfo", request({ Host: "user:pw@127.0.0.1" }), 400],
  [
    "two Host lines",
    request({ "X-A": "1" }).replace("X-A: 1", "Host: 127.0.0.1"),
    400,
  ],
  ["version 8", request({ "Sec-WebSocket-Version": "8" }), 426],
  ["a POST upgrade", request({}, "POST /chat HTTP/1.1"), 405],
  ["a lower-case get", request({}, "get /chat HTTP/1.1"), 405],
  ["an HTTP/1.0 upgrade", request({}, "GET /chat HTTP/1.0"), 400],
  ["an HTTP/2.0 upgrade", request({}, "GET /chat HTTP/2.0"), 505],
  ["a malformed request line", request({}, "GET  /chat HTTP/1.1"), 400],
  ["a control byte in the target", request({}, "GET /ch\x01at HTTP/1.1"), 400],
  ["a space before a colon", request().replace("Upgrade:", "Upgrade :"), 400],
  [
    "obsolete line folding",
    request().replace(
      "Upgrade: websocket\r\n",
      "Upgrade: websocket\r\n continued\r\n",
    ),
    400,
  ],
  ["a body by Content-Length", request({ "Content-Length": "5" }), 400],
  ["a body chunked", request({ "Transfer-Encoding": "chunked" }), 400],
  ["a target *", request({}, "GET * HTTP/1.1"), 400],
  ["an authority-form target", request({}, "GET example.com:80 HTTP/1.1"), 400],
  ["a target of another scheme", request({}, "GET ftp://x/ HTTP/1.1"), 400],
  ["a javascript: target", request({}, "GET javascript:x HTTP/1.1"), 400],
  [
    "a request line over 8 KiB",
    request({}, `GET /${"a".repeat(9 * 1024)} HTTP/1.1`),
    414,
  ],
  [
    "a head over 16 KiB",
    request(Object.fromEntries(
      Array.from({ length: 40 }, (_, i) => [`X-Filler-${i}`, "b".repeat(500)]),
    )),
    431,
  ],
];

for (const [what, raw, status] of refusals) {
  Deno.test(`§4.2.1 ${what} is refused with ${status}, a message and the headers the status needs`, () => {
    const refused = refusal(raw);
    assert.equal(refused.status, status, refused.message);
    assert.ok(refused.message.length > 0);
    if (status === 426) {
      assert.equal(refused.headers["sec-websocket-version"], "13");
    }
    if (status === 405) assert.equal(refused.headers.allow, "GET");
  });
}

Deno.test("§4.2.1 a request without Upgrade: websocket is refused with 426 naming the protocol", () => {
  const refused = refusal("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  assert.equal(refused.status, 426);
  assert.deepEqual(refused.headers, {
    upgrade: "websocket",
    "sec-websocket-version": "13",
  });
});

Deno.test("§4.2.1 a Content-Length of 0 is no body and is accepted", () => {
  acceptance(request({ "Content-Length": "0" }));
});

Deno.test("RFC 9112 §2.2 empty lines before the request line are ignored", () => {
  assert.equal(acceptance("\r\n\r\n" + request()).protocol, "");
});

Deno.test("§4.2.1 a head cut off by the client's end is refused with 400; nothing at all is no request", async () => {
  const reader = (chunks: string[]) => ({
    read(buffer: Uint8Array): Promise<number | null> {
      const chunk = chunks.shift();
      if (chunk === undefined) return Promise.resolve(null);
      buffer.set(bytes(chunk));
      return Promise.resolve(chunk.length);
    },
  });
  await assert.rejects(
    readRequestHead(
      reader(["GET / HTTP/1.1\r\n", "Host: x\r\n"]),
      DEFAULT_HTTP1_LIMITS,
    ),
    { status: 400, message: "Incomplete request head" },
  );
  assert.equal(
    await readRequestHead(reader([]), DEFAULT_HTTP1_LIMITS),
    undefined,
  );
  assert.equal(
    await readRequestHead(reader(["\r\n"]), DEFAULT_HTTP1_LIMITS),
    undefined,
  );
  const read = await readRequestHead(
    reader(["\r\nGET /a HT", "TP/1.1\r\nHost: x\r\n\r", "\nfirst frame"]),
    DEFAULT_HTTP1_LIMITS,
  );
  assert.equal(read?.head.target, "/a");
  assert.equal(String.fromCharCode(...read!.leftover), "first frame");
});

Deno.test("§4.2.1 heads read one after another (a buffer used again) keep nothing of each other, nor their leftover", async () => {
  const reader = (text: string) => ({
    read(buffer: Uint8Array): Promise<number | null> {
      buffer.set(bytes(text));
      return Promise.resolve(text.length);
    },
  });
  const long = await readRequestHead(
    reader(
      `GET /long HTTP/1.1\r\nHost: x\r\nX-Pad: ${"p".repeat(900)}\r\n\r\nframe`,
    ),
    DEFAULT_HTTP1_LIMITS,
  );
  const short = await readRequestHead(
    reader("GET /s HTTP/1.1\r\nHost: y\r\n\r\n"),
    DEFAULT_HTTP1_LIMITS,
  );
  // A failed read (a reset) gives its buffer back too.
  await assert.rejects(
    readRequestHead(
      { read: () => Promise.reject(new Deno.errors.ConnectionReset()) },
      DEFAULT_HTTP1_LIMITS,
    ),
    Deno.errors.ConnectionReset,
  );
  const last = await readRequestHead(
    reader("GET /t HTTP/1.1\r\nHost: z\r\n\r\n\x81"),
    DEFAULT_HTTP1_LIMITS,
  );
  assert.equal(String.fromCharCode(...long!.leftover), "frame");
  assert.equal(short?.text, "GET /s HTTP/1.1\r\nHost: y");
  assert.equal(short?.leftover.length, 0);
  assert.equal(short?.head.headers.get("x-pad"), null);
  assert.equal(last?.text, "GET /t HTTP/1.1\r\nHost: z");
  assert.deepEqual([...last!.leftover], [0x81]);
  // The leftover is a copy: reading the next head does not change it.
  await readRequestHead(
    reader("GET /u HTTP/1.1\r\nHost: u\r\n\r\nOTHER"),
    DEFAULT_HTTP1_LIMITS,
  );
  assert.equal(String.fromCharCode(...long!.leftover), "frame");
  assert.deepEqual([...last!.leftover], [0x81]);
});

// --- §10.2: origins -------------------------------------------------------------------

for (
  const [form, origins] of [
    ["a list", ["https://good.example"]],
    ["a function", (origin: string) => origin === "https://good.example"],
  ] as const
) {
  Deno.test(`§10.2 origins as ${form}: other origins and look-alikes get 403; the allowed origin and no Origin are accepted`, () => {
    for (
      const origin of [
        "https://evil.example",
        "https://good.example.evil.com",
        "https://good.example:8443",
        "http://good.example",
        "https://good.exampl",
        "null",
      ]
    ) {
      const refused = refusal(request({ Origin: origin }), { origins });
      assert.equal(refused.status, 403, origin);
    }
    acceptance(request({ Origin: "https://good.example" }), { origins });
    acceptance(request(), { origins });
  });
}

Deno.test("§10.2 origins other than an array of serialized origins or a function are a TypeError that says why", () => {
  assert.throws(() => checkOrigins("https://app.bank.com"), {
    name: "TypeError",
    message:
      'The origins option must be an array of origins or a function, got the string "https://app.bank.com"',
  });
  assert.throws(() => checkOrigins([42]), TypeError);
  for (
    const [entry, meant] of [
      ["https://x.com/", "https://x.com"],
      ["https://x.com:443", "https://x.com"],
      ["http://x.com:80", "http://x.com"],
      ["https://X.com", "https://x.com"],
      ["https://x.com/path", "https://x.com"],
      ["https://user@x.com", "https://x.com"],
    ]
  ) {
    assert.throws(() => checkOrigins([entry]), {
      name: "TypeError",
      message:
        `The origins option has "${entry}", which is not an origin as browsers send it (scheme://host[:port], lower-case, no default port, no path): "${meant}"?`,
    });
  }
  for (const entry of ["x.com", "null", "file:///tmp", ""]) {
    assert.throws(() => checkOrigins([entry]), TypeError, entry);
  }
  const allowed = checkOrigins([
    "https://x.com",
    "http://localhost:8080",
    "chrome-extension://abcdef",
  ]);
  assert.ok(allowed instanceof Set && allowed.size === 3);
  assert.throws(
    () => new ServerHandshake({ origins: "https://x.com" as never }),
    TypeError,
  );
});

// --- §4.2.2: subprotocols, extensions, extra headers -----------------------------------

Deno.test("§4.2.2 the first offered subprotocol the server speaks is chosen; none is no header", () => {
  const offer = { "Sec-WebSocket-Protocol": "superchat, chat.v1 , chat.v2" };
  const chosen = acceptance(request(offer), {
    protocols: ["chat.v2", "chat.v1"],
  });
  assert.equal(chosen.protocol, "chat.v1");
  assert.equal(chosen.headers.get("sec-websocket-protocol"), "chat.v1");
  const none = acceptance(
    request({ "Sec-WebSocket-Protocol": "superchat" }),
    { protocols: ["chat.v2", "chat.v1"] },
  );
  assert.equal(none.protocol, "");
  assert.equal(none.headers.get("sec-websocket-protocol"), null);
});

Deno.test("§4.2.2 a protocols function chooses among the offers, with the request", () => {
  let seen: [string[], string] | undefined;
  const chosen = acceptance(
    request({ "Sec-WebSocket-Protocol": "a, b, c" }),
    {
      protocols: (offered, req) => {
        seen = [offered, new URL(req.url).pathname];
        return offered.at(-1);
      },
    },
  );
  assert.deepEqual(seen, [["a", "b", "c"], "/chat"]);
  assert.equal(chosen.protocol, "c");
});

Deno.test("§4.2.2 a protocols function that throws or picks what was not offered gives 500 with the fault as its cause", () => {
  const fault = new Error("boom");
  const thrown = refusal(
    request({ "Sec-WebSocket-Protocol": "a" }),
    {
      protocols: () => {
        throw fault;
      },
    },
  );
  assert.equal(thrown.status, 500);
  assert.equal(thrown.cause, fault);
  const unoffered = refusal(
    request({ "Sec-WebSocket-Protocol": "a" }),
    { protocols: () => "b" },
  );
  assert.equal(unoffered.status, 500);
  assert.match(String(unoffered.cause), /"b" was not offered/);
});

Deno.test("RFC 7692 §5 permessage-deflate is negotiated only when the server has it", () => {
  const offer = {
    "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits",
  };
  const off = acceptance(request(offer));
  assert.equal(off.extensions, "");
  assert.equal(off.headers.get("sec-websocket-extensions"), null);
  const on = acceptance(request(offer), { perMessageDeflate: {} });
  assert.match(on.extensions, /^permessage-deflate/);
  assert.equal(on.headers.get("sec-websocket-extensions"), on.extensions);
  assert.ok(on.perMessageDeflate);
  assert.deepEqual(on.perMessageDeflate.options, {});
});

Deno.test("§4.2.2 extra headers neither override nor repeat the handshake's in the 101, but set-cookie goes through", () => {
  const accepted = acceptance(
    request({
      "Sec-WebSocket-Protocol": "chat",
      "Sec-WebSocket-Extensions": "permessage-deflate",
    }),
    { protocols: ["chat"], perMessageDeflate: {} },
    [
      ["upgrade", "h2c"],
      ["connection", "close"],
      ["sec-websocket-accept", "bogus"],
      ["sec-websocket-protocol", "evil"],
      ["sec-websocket-extensions", "x-evil"],
      ["content-length", "5"],
      ["transfer-encoding", "chunked"],
      ["set-cookie", "a=1"],
      ["set-cookie", "b=2"],
    ],
  );
  const values = (name: string) =>
    accepted.fields.filter(([n]) => n === name).map(([, v]) => v);
  assert.deepEqual(values("upgrade"), ["websocket"]);
  assert.deepEqual(values("connection"), ["Upgrade"]);
  assert.deepEqual(values("sec-websocket-accept"), [GOOD_ACCEPT]);
  assert.deepEqual(values("sec-websocket-protocol"), ["chat"]);
  const extensions = values("sec-websocket-extensions");
  assert.equal(extensions.length, 1);
  assert.match(extensions[0], /^permessage-deflate/);
  assert.deepEqual(values("content-length"), []);
  assert.deepEqual(values("transfer-encoding"), []);
  assert.deepEqual(values("set-cookie"), ["a=1", "b=2"]);
});

Deno.test("§4.2.2 extra headers with CR or LF give 500, never a 101", () => {
  for (const value of ["a\r\nx-injected: 1", "a\nb", "a\rb"]) {
    const refused = refusal(request(), {}, { "x-extra": value });
    assert.equal(refused.status, 500, JSON.stringify(value));
    assert.ok(refused.cause instanceof TypeError);
  }
});

Deno.test("reject makes a refusal with its own copy of the headers", () => {
  const handshake = new ServerHandshake();
  const headers = { "retry-after": "1" };
  const refused = handshake.reject(503, "Too many connections", headers);
  assert.ok(refused instanceof HttpError);
  assert.equal(refused.status, 503);
  assert.equal(refused.message, "Too many connections");
  assert.deepEqual(refused.headers, headers);
  assert.notEqual(refused.headers, headers);
});

Deno.test("a protocols option that is neither an array of strings nor a function is a TypeError", () => {
  assert.throws(
    () => new ServerHandshake({ protocols: "chat" as never }),
    TypeError,
  );
});
