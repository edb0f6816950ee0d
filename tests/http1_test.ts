// Tests of the sans-I/O HTTP/1.1 core (src/http/_http1.ts): bytes in, decisions and
// bytes out, grouped by RFC 9112 / RFC 9110 section; smuggling cases throughout.
import assert from "node:assert/strict";
import {
  hasToken,
  headerTokens,
  HttpError,
  type RequestHead,
} from "../src/http/_http.ts";
import {
  BodyDecoder,
  type BodyFraming,
  CONTINUE_RESPONSE,
  decideRequestFraming,
  DEFAULT_HTTP1_LIMITS,
  encodeChunk,
  type Http1Limits,
  LAST_CHUNK,
  parseContentLength,
  type RequestFraming,
  requestUrl,
  ResponseBodyEncoder,
  type ResponseHeadOptions,
  serializeErrorResponse,
  serializeResponseHead,
  takeRequestHead,
} from "../src/http/_http1.ts";
import { concat } from "./_util.ts";

/** A string's characters as bytes, one byte each (so "\xe9" is the byte 0xe9). */
function bytes(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

/** Bytes as a string, one character per byte. */
function text(data: Uint8Array): string {
  let out = "";
  for (const byte of data) out += String.fromCharCode(byte);
  return out;
}

function limits(overrides: Partial<Http1Limits>): Http1Limits {
  return { ...DEFAULT_HTTP1_LIMITS, ...overrides };
}

/** Asserts that `fn` throws an `HttpError` with `status`. */
function assertRefused(fn: () => unknown, status: number, what = ""): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof HttpError, `${what}: ${error}`);
    assert.equal(error.status, status, `${what}: ${error.message}`);
    return true;
  });
}

/** The head of a complete raw request head. */
function head(raw: string): RequestHead {
  const taken = takeRequestHead(bytes(raw));
  assert.ok(taken, "head is complete");
  return taken.head;
}

/** The framing decision for a raw request head. */
function decide(raw: string, given: Http1Limits = DEFAULT_HTTP1_LIMITS) {
  return decideRequestFraming(head(raw), given);
}

/** A request head with the given header lines. */
function request(
  lines: string[],
  version = "HTTP/1.1",
  method = "POST",
): string {
  return `${method} / ${version}\r\n${
    lines.map((l) => `${l}\r\n`).join("")
  }\r\n`;
}

// RFC 9112 §2.2: message parsing.

Deno.test("RFC 9112 §2.2 takeRequestHead waits for the empty line, then gives the head and its size", () => {
  const raw = "GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nX-A: 1\r\n\r\n";
  for (let n = 0; n < raw.length; n++) {
    assert.equal(takeRequestHead(bytes(raw.slice(0, n))), undefined, `${n}`);
  }
  const taken = takeRequestHead(bytes(raw + "NEXT"));
  assert.ok(taken);
  assert.equal(taken.size, raw.length);
  assert.equal(taken.head.method, "GET");
  assert.equal(taken.head.target, "/a?b=c");
  assert.equal(taken.head.version, "HTTP/1.1");
  assert.deepEqual([...taken.head.headers], [["host", "example.com"], [
    "x-a",
    "1",
  ]]);
});

Deno.test("RFC 9112 §2.2 a head arriving in pieces gives the same result with the scanned hint", () => {
  const raw = bytes(
    "\r\nPUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n",
  );
  for (let step = 1; step <= 4; step++) {
    let scanned = 0;
    let taken;
    for (let n = step; !taken; n = Math.min(n + step, raw.length)) {
      taken = takeRequestHead(
        raw.subarray(0, n),
        DEFAULT_HTTP1_LIMITS,
        scanned,
      );
      scanned = n;
    }
    assert.equal(taken.size, raw.length);
    assert.equal(taken.head.target, "/x");
    assert.equal(taken.head.headers.get("content-length"), "3");
  }
});

Deno.test("RFC 9112 §2.2 empty lines before the request line are skipped and counted in the size", () => {
  const taken = takeRequestHead(
    bytes("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
  );
  assert.ok(taken);
  assert.equal(taken.size, 31);
  assert.equal(taken.head.method, "GET");
  assert.equal(takeRequestHead(bytes("\r\n\r\n")), undefined);
  assert.equal(takeRequestHead(bytes("\r\n\r")), undefined);
});

Deno.test("RFC 9112 §2.2 a bare LF anywhere in the head is refused with 400 as soon as it arrives", () => {
  const cases = [
    "GET / HTTP/1.1\nHost: a\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\n\n",
    "GET / HTTP/1.1\n\n",
    "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET / HTTP/1.1\r\nX: a\nb\r\n\r\n",
    // Incomplete: refused without waiting for the rest.
    "GET / HTTP/1.1\n",
  ];
  for (const raw of cases) {
    assertRefused(() => takeRequestHead(bytes(raw)), 400, JSON.stringify(raw));
  }
});

Deno.test("RFC 9112 §2.2 a bare CR in the head is refused with 400", () => {
  for (
    const raw of [
      "GET / HTTP/1.1\rHost: a\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
      "GET / HTTP/1.1\r\nX: \r\r\n\r\n",
      "\r\rGET / HTTP/1.1\r\n\r\n",
    ]
  ) {
    assertRefused(() => takeRequestHead(bytes(raw)), 400, JSON.stringify(raw));
  }
  // A CR that ended the last piece is checked with the next piece.
  const cut = bytes("GET / HTTP/1.1\r\nX: a\rb");
  assert.equal(takeRequestHead(cut.subarray(0, cut.length - 1)), undefined);
  assertRefused(
    () => takeRequestHead(cut, DEFAULT_HTTP1_LIMITS, cut.length - 1),
    400,
  );
  // Refused as soon as it arrives, before the head is complete.
  assertRefused(() => takeRequestHead(bytes("GET / HTTP/1.1\r\nX: a\rb")), 400);
});

Deno.test("RFC 9112 §2.2 a whitespace-only line is not an empty line: 400", () => {
  assertRefused(
    () => takeRequestHead(bytes("   \r\nGET / HTTP/1.1\r\n\r\n")),
    400,
  );
  assertRefused(() => takeRequestHead(bytes("   \r\n\r\n")), 400);
});

Deno.test("RFC 9112 §2.2 whitespace between the request line and the first header line is refused with 400", () => {
  assertRefused(
    () => takeRequestHead(bytes("GET / HTTP/1.1\r\n Host: a\r\n\r\n")),
    400,
  );
});

// RFC 9112 §3: request line.

Deno.test("RFC 9112 §3 a head over maxHeadSize gets 431, a request line alone over it 414, exactly maxHeadSize passes", () => {
  const raw = "GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789\r\n\r\n";
  const taken = takeRequestHead(
    bytes(raw),
    limits({ maxHeadSize: raw.length }),
  );
  assert.equal(taken?.size, raw.length);
  assertRefused(
    () => takeRequestHead(bytes(raw), limits({ maxHeadSize: raw.length - 1 })),
    431,
  );
  // Without its end yet: refused once maxHeadSize bytes hold no end.
  assertRefused(
    () => takeRequestHead(bytes(raw.slice(0, 29)), limits({ maxHeadSize: 29 })),
    431,
  );
  assert.equal(
    takeRequestHead(bytes(raw.slice(0, 28)), limits({ maxHeadSize: 29 })),
    undefined,
  );
  assertRefused(
    () =>
      takeRequestHead(
        bytes(`GET /${"a".repeat(100)} HTTP/1.1\r\n`),
        limits({ maxHeadSize: 64 }),
      ),
    414,
  );
  // Empty lines before the request line count too.
  assertRefused(
    () =>
      takeRequestHead(bytes("\r\n".repeat(40)), limits({ maxHeadSize: 64 })),
    414,
  );
});

Deno.test("RFC 9112 §3 malformed request lines are refused with 400", () => {
  const lines = [
    "GET  / HTTP/1.1",
    "GET / HTTP/1.1 ",
    " GET / HTTP/1.1",
    "GET\t/ HTTP/1.1",
    "GET / http/1.1",
    "GET / HTTP/1.10",
    "GET / HTTP/1",
    "GET /",
    "GET HTTP/1.1",
    "GET /a b HTTP/1.1",
    "GET /caf\xe9 HTTP/1.1",
    "GET /\x00 HTTP/1.1",
    "GE@T / HTTP/1.1",
    "\x16\x03\x01\x02\x00 HTTP/1.1",
  ];
  for (const line of lines) {
    assertRefused(
      () => takeRequestHead(bytes(`${line}\r\nHost: a\r\n\r\n`)),
      400,
      JSON.stringify(line),
    );
  }
});

Deno.test("RFC 9110 §15.6.6 a request line with a major version other than 1 is refused with 505", () => {
  for (
    const raw of [
      "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
      "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
      "GET / HTTP/0.9\r\nHost: a\r\n\r\n",
      "GET / HTTP/3.1\r\nHost: a\r\n\r\n",
    ]
  ) {
    assertRefused(() => takeRequestHead(bytes(raw)), 505, JSON.stringify(raw));
  }
  const h2: RequestHead = {
    method: "GET",
    target: "/",
    version: "HTTP/2.0",
    headers: new Headers({ host: "a" }),
  };
  assertRefused(() => decideRequestFraming(h2), 505);
  assertRefused(() => decideRequestFraming({ ...h2, version: "HTTP/1" }), 400);
});

Deno.test("RFC 9110 §2.5 an HTTP/1.2 request is handled as HTTP/1.1", () => {
  const framing = decide("GET / HTTP/1.2\r\nHost: a\r\n\r\n");
  assert.equal(framing.version, "HTTP/1.1");
  assert.equal(framing.keepAlive, true);
});

// RFC 9112 §5, RFC 9110 §5.5: field syntax.

Deno.test("RFC 9112 §5.1 whitespace between a field name and its colon is refused with 400", () => {
  for (
    const line of [
      "Transfer-Encoding : chunked",
      "Content-Length\t: 5",
      "Host : a",
    ]
  ) {
    assertRefused(
      () => takeRequestHead(bytes(request([line]))),
      400,
      JSON.stringify(line),
    );
  }
});

Deno.test("RFC 9112 §5.2 obsolete line folding is refused with 400", () => {
  for (
    const lines of [
      ["Host: a", "X-A: b", " c"],
      ["Host: a", "Transfer-Encoding: gzip,", "\tchunked"],
      ["Host: a", "Content-Length: 5", " "],
    ]
  ) {
    assertRefused(() => takeRequestHead(bytes(request(lines))), 400);
  }
  assert.throws(
    () => takeRequestHead(bytes(request(["Host: a", "X-A: b", " c"]))),
    { status: 400, message: "Obsolete line folding in request head" },
  );
});

Deno.test("RFC 9112 §5.1 a field line without a colon, with an empty name or a name that is not a token is refused with 400", () => {
  for (
    const line of [
      "Host",
      ": a",
      "X Y: z",
      "X\x7f: z",
      "Caf\xe9: a",
      "X(: a",
      "Transfer-Encoding\x00: chunked",
    ]
  ) {
    assertRefused(
      () => takeRequestHead(bytes(request(["Host: a", line]))),
      400,
      JSON.stringify(line),
    );
  }
});

Deno.test("RFC 9110 §5.5 control characters in a field value (NUL, VT, FF, DEL, ...) are refused with 400", () => {
  for (
    const line of [
      "Transfer-Encoding: \x0bchunked",
      "Transfer-Encoding: \x0cchunked",
      "Transfer-Encoding: chunked\x00",
      "X: a\x01b",
      "X: a\x7fb",
      "X: a\x1bb",
    ]
  ) {
    assertRefused(
      () => takeRequestHead(bytes(request(["Host: a", line]))),
      400,
      JSON.stringify(line),
    );
  }
});

Deno.test("RFC 9110 §5.5 OWS around a value is dropped, obs-text is kept byte for byte", () => {
  const h = head(
    request(["Host: a", "X: \t caf\xe9 \x80\x9f \t", "Y:", "Z:  "]),
  );
  assert.equal(h.headers.get("x"), "caf\xe9 \x80\x9f");
  assert.equal(h.headers.get("y"), "");
  assert.equal(h.headers.get("z"), "");
});

Deno.test("RFC 9110 §5.6.1 a token list has a token whatever its case, OWS and empty elements, and only whole", () => {
  const cases: [string | null, string, boolean][] = [
    ["websocket", "websocket", true],
    ["WebSocket", "websocket", true],
    ["h2c, websocket", "websocket", true],
    [" \t,, websocket \t,", "websocket", true],
    ["keep-alive, UPGRADE", "upgrade", true],
    ["websockets", "websocket", false],
    ["web socket", "websocket", false],
    ["websocket;q=1", "websocket", false],
    ["", "websocket", false],
    [null, "websocket", false],
    [",", "upgrade", false],
    ["upgrad", "upgrade", false],
    ["\xfapgrade", "upgrade", false],
  ];
  for (const [value, token, expected] of cases) {
    assert.equal(hasToken(value, token), expected, `${value} has ${token}`);
    // The same answer as the list it stands for.
    assert.equal(headerTokens(value).includes(token), expected);
  }
});

// RFC 9112 §3.2: Host.

Deno.test("RFC 9112 §3.2 an HTTP/1.1 request without Host is refused with 400; HTTP/1.0 may omit it", () => {
  assertRefused(() => decide("GET / HTTP/1.1\r\n\r\n"), 400);
  assertRefused(() => decide(request(["Content-Length: 0"])), 400);
  assert.equal(decide("GET / HTTP/1.0\r\n\r\n").version, "HTTP/1.0");
});

Deno.test("RFC 9112 §3.2 more than one Host line is refused with 400, even when they agree", () => {
  assertRefused(
    () => takeRequestHead(bytes(request(["Host: a", "Host: a"]))),
    400,
  );
  assertRefused(
    () => takeRequestHead(bytes(request(["Host: a", "X: 1", "host: b"]))),
    400,
  );
  // The two lines joined with a comma, as Headers would: not a uri-host.
  assertRefused(
    () => takeRequestHead(bytes(request(["Host: a, a"]))),
    400,
  );
});

Deno.test('RFC 9112 §3.2 a Host value that is not uri-host [ ":" port ] is refused with 400', () => {
  for (
    const host of [
      "a, b",
      "a/path",
      "user@a",
      "a b",
      "a:80:90",
      "a:8o",
      "[::1",
      "a?b",
      "a#b",
      "a\\b",
    ]
  ) {
    assertRefused(
      () => decide(request([`Host: ${host}`])),
      400,
      JSON.stringify(host),
    );
  }
});

Deno.test("RFC 9112 §3.2 valid Host values are accepted, the empty one included", () => {
  for (
    const host of [
      "example.com",
      "example.com:8080",
      "127.0.0.1:80",
      "[::1]:8080",
      "[fe80::1%25eth0]",
      "xn--caf-dma.example",
      "a:",
      "",
    ]
  ) {
    assert.equal(decide(request([`Host: ${host}`])).keepAlive, true, host);
  }
});

Deno.test("RFC 9112 §3.3 each request's URL comes from its own target and Host, also after the same ones", () => {
  const url = (target: string, host: string, base = "http://b") =>
    requestUrl(head(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\n\r\n`), base);
  // The same target, Host and base twice (the second from the last one
  // made), then each of the three changed in turn.
  assert.equal(
    url("/a?x=1", "example.com:8080"),
    "http://example.com:8080/a?x=1",
  );
  assert.equal(
    url("/a?x=1", "example.com:8080"),
    "http://example.com:8080/a?x=1",
  );
  assert.equal(url("/b", "example.com:8080"), "http://example.com:8080/b");
  assert.equal(url("/b", "example.org"), "http://example.org/b");
  assert.equal(url("/b", "example.org", "https://b"), "https://example.org/b");
  assert.equal(url("/b", "example.org", "https://b"), "https://example.org/b");
  assert.equal(url("/b", "example.org"), "http://example.org/b");
  // An invalid one after a valid one is still refused.
  assert.throws(
    () => url("/b", "256.256.256.256"),
    (error) => error instanceof HttpError && error.status === 400,
  );
  assert.equal(url("/b", "example.org"), "http://example.org/b");
});

// RFC 9112 §6.1: Transfer-Encoding.

Deno.test("RFC 9112 §6.1 Transfer-Encoding: chunked frames the body by chunks, case-insensitively", () => {
  for (
    const value of ["chunked", "Chunked", "CHUNKED", "\tchunked ", "chunked  "]
  ) {
    const framing = decide(request(["Host: a", `Transfer-Encoding: ${value}`]));
    assert.deepEqual(framing.body, { type: "chunked" }, JSON.stringify(value));
  }
});

Deno.test("RFC 9112 §6.1 Transfer-Encoding together with Content-Length is refused with 400", () => {
  for (
    const lines of [
      ["Host: a", "Content-Length: 6", "Transfer-Encoding: chunked"],
      ["Host: a", "Transfer-Encoding: chunked", "Content-Length: 6"],
      ["Host: a", "Transfer-Encoding: chunked", "Content-Length: 0"],
      ["Host: a", "Transfer-Encoding: gzip", "Content-Length: 5"],
    ]
  ) {
    assertRefused(() => decide(request(lines)), 400, lines.join("|"));
  }
});

Deno.test("RFC 9112 §6.1 Transfer-Encoding in an HTTP/1.0 request is refused with 400", () => {
  assertRefused(
    () => decide(request(["Transfer-Encoding: chunked"], "HTTP/1.0")),
    400,
  );
  assertRefused(
    () =>
      decide(
        request(
          ["Transfer-Encoding: chunked", "Content-Length: 5"],
          "HTTP/1.0",
        ),
      ),
    400,
  );
});

Deno.test("RFC 9112 §6.1 chunked applied twice is refused with 400, in one line or two", () => {
  assertRefused(
    () => decide(request(["Host: a", "Transfer-Encoding: chunked, chunked"])),
    400,
  );
  assertRefused(
    () =>
      decide(
        request([
          "Host: a",
          "Transfer-Encoding: chunked",
          "Transfer-Encoding: chunked",
        ]),
      ),
    400,
  );
});

Deno.test("RFC 9112 §6.3 a Transfer-Encoding that does not end with exactly chunked is refused with 400", () => {
  for (
    const value of [
      "xchunked",
      "chunked, gzip",
      "identity",
      "gzip",
      "chunk",
      "chunked;a=b",
      "chunked x",
      '"chunked"',
      "",
      ", chunked",
      "chunked,",
      "chunked, ,",
    ]
  ) {
    assertRefused(
      () => decide(request(["Host: a", `Transfer-Encoding: ${value}`])),
      400,
      JSON.stringify(value),
    );
  }
});

Deno.test("RFC 9112 §6.1 a transfer coding before chunked that is not implemented gets 501", () => {
  for (const value of ["gzip, chunked", "deflate, chunked", "x-foo,chunked"]) {
    assertRefused(
      () => decide(request(["Host: a", `Transfer-Encoding: ${value}`])),
      501,
      value,
    );
  }
  // Transfer-Encoding in two lines: the codings are joined in order.
  assertRefused(
    () =>
      decide(
        request([
          "Host: a",
          "Transfer-Encoding: gzip",
          "Transfer-Encoding: chunked",
        ]),
      ),
    501,
  );
});

Deno.test("RFC 9110 §5.1 Transfer_Encoding is another field: the body is framed by Content-Length", () => {
  const framing = decide(
    request(["Host: a", "Transfer_Encoding: chunked", "Content-Length: 5"]),
  );
  assert.deepEqual(framing.body, { type: "length", length: 5 });
});

// RFC 9112 §6.3, RFC 9110 §8.6: Content-Length.

Deno.test("RFC 9110 §8.6 Content-Length is 1*DIGIT; identical repeats and lists count once", () => {
  const cases: [string[], number][] = [
    [["Content-Length: 5"], 5],
    [["Content-Length: 0005"], 5],
    [["Content-Length:\t5 "], 5],
    [["Content-Length: 5, 5"], 5],
    [["Content-Length: 5,5,5"], 5],
    [["Content-Length: 5", "Content-Length: 5"], 5],
    [["Content-Length: 16777216"], 16777216],
  ];
  for (const [lines, length] of cases) {
    assert.deepEqual(
      decide(request(["Host: a", ...lines])).body,
      { type: "length", length },
      lines.join("|"),
    );
  }
  assert.deepEqual(decide(request(["Host: a", "Content-Length: 0"])).body, {
    type: "length",
    length: 0,
  });
});

Deno.test("RFC 9112 §6.3 an invalid or conflicting Content-Length is refused with 400", () => {
  const cases = [
    ["Content-Length: +5"],
    ["Content-Length: -5"],
    ["Content-Length: -0"],
    ["Content-Length: 5 5"],
    ["Content-Length: 0x5"],
    ["Content-Length: 5.0"],
    ["Content-Length: 1e3"],
    ["Content-Length: 5_0"],
    ["Content-Length: "],
    ["Content-Length: 5,"],
    ["Content-Length: ,5"],
    ["Content-Length: 5, 6"],
    ["Content-Length: 5, 05"],
    ["Content-Length: 5", "Content-Length: 6"],
    ["Content-Length: 5", "Content-Length: "],
  ];
  for (const lines of cases) {
    assertRefused(
      () => decide(request(["Host: a", ...lines])),
      400,
      lines.join("|"),
    );
  }
});

Deno.test("RFC 9110 §15.5.14 a Content-Length over maxBodySize is refused with 413 before the body is read", () => {
  const small = limits({ maxBodySize: 10 });
  assert.deepEqual(
    decide(request(["Host: a", "Content-Length: 10"]), small).body,
    {
      type: "length",
      length: 10,
    },
  );
  assertRefused(
    () => decide(request(["Host: a", "Content-Length: 11"]), small),
    413,
  );
  assertRefused(
    () => decide(request(["Host: a", "Content-Length: 99999999999999999999"])),
    413,
  );
  assert.equal(parseContentLength("99999999999999999999"), Infinity);
  assert.equal(parseContentLength("000000000000000000001"), 1);
});

Deno.test("RFC 9112 §6.3 a request with neither Transfer-Encoding nor Content-Length has no body", () => {
  const framing = decide(request(["Host: a"], "HTTP/1.1", "POST"));
  assert.deepEqual(framing.body, { type: "length", length: 0 });
  assert.equal(framing.expectContinue, false);
});

Deno.test("RFC 9112 §6.3 a GET may have a Content-Length body: framing does not depend on the method", () => {
  assert.deepEqual(
    decide(request(["Host: a", "Content-Length: 3"], "HTTP/1.1", "GET")).body,
    { type: "length", length: 3 },
  );
});

// RFC 9110 §10.1.1: Expect.

Deno.test("RFC 9110 §10.1.1 Expect: 100-continue on a request with a body asks for 100 Continue first", () => {
  for (
    const lines of [
      ["Content-Length: 5", "Expect: 100-continue"],
      ["Content-Length: 5", "Expect: 100-Continue"],
      ["Transfer-Encoding: chunked", "Expect: 100-continue"],
      // Empty list elements are skipped (RFC 9110 §5.6.1).
      ["Content-Length: 5", "Expect: , 100-continue,"],
    ]
  ) {
    assert.equal(
      decide(request(["Host: a", ...lines])).expectContinue,
      true,
      lines.join("|"),
    );
  }
  assert.equal(text(CONTINUE_RESPONSE), "HTTP/1.1 100 Continue\r\n\r\n");
});

Deno.test("RFC 9110 §10.1.1 100-continue is moot without a body, and ignored from HTTP/1.0", () => {
  assert.equal(
    decide(request(["Host: a", "Expect: 100-continue"])).expectContinue,
    false,
  );
  assert.equal(
    decide(request(["Host: a", "Content-Length: 5", "Expect:"])).expectContinue,
    false,
  );
  assert.equal(
    decide(request(["Content-Length: 0", "Expect: 100-continue"], "HTTP/1.0"))
      .expectContinue,
    false,
  );
  assert.equal(
    decide(request(["Content-Length: 5", "Expect: 100-continue"], "HTTP/1.0"))
      .expectContinue,
    false,
  );
});

Deno.test("RFC 9110 §10.1.1 any other expectation is refused with 417", () => {
  for (
    const value of ["foo", "100-continue, foo", "200-ok", "100-continue=1"]
  ) {
    assertRefused(
      () =>
        decide(request(["Host: a", "Content-Length: 5", `Expect: ${value}`])),
      417,
      value,
    );
  }
});

// RFC 9112 §9.3: persistence.

Deno.test("RFC 9112 §9.3 keep-alive matrix for HTTP/1.0 and HTTP/1.1", () => {
  const matrix: [string, string | null, boolean][] = [
    ["HTTP/1.1", null, true],
    ["HTTP/1.1", "close", false],
    ["HTTP/1.1", "Close", false],
    ["HTTP/1.1", "keep-alive", true],
    ["HTTP/1.1", "keep-alive, close", false],
    ["HTTP/1.1", "upgrade,close", false],
    ["HTTP/1.1", "upgrade", true],
    ["HTTP/1.0", null, false],
    ["HTTP/1.0", "keep-alive", true],
    ["HTTP/1.0", "Keep-Alive", true],
    ["HTTP/1.0", "foo, keep-alive", true],
    ["HTTP/1.0", "keep-alive, close", false],
    ["HTTP/1.0", "close", false],
  ];
  for (const [version, connection, keepAlive] of matrix) {
    const lines = ["Host: a"];
    if (connection !== null) lines.push(`Connection: ${connection}`);
    const framing: RequestFraming = decide(request(lines, version, "GET"));
    assert.equal(framing.keepAlive, keepAlive, `${version} ${connection}`);
    assert.equal(framing.version, version);
  }
});

// RFC 9112 §7.1: chunked body decoding.

interface Decoded {
  body: string;
  consumed: number;
  done: boolean;
}

/** Decodes `input` pushed in pieces that start at `cuts`. */
function decodeInPieces(
  framing: BodyFraming,
  input: Uint8Array,
  cuts: number[],
  given: Http1Limits = DEFAULT_HTTP1_LIMITS,
): Decoded {
  const decoder = new BodyDecoder(framing, given);
  let body = "";
  let consumed = 0;
  const bounds = [...cuts, input.length];
  let from = 0;
  for (const to of bounds) {
    const result = decoder.push(input.subarray(from, to));
    body += text(result.data);
    consumed += result.consumed;
    assert.equal(result.done, decoder.done);
    // The rest of a piece is only left over once the body is done.
    if (!result.done) assert.equal(result.consumed, to - from);
    from = to;
  }
  return { body, consumed, done: decoder.done };
}

/** Decodes whole, byte by byte and in two pieces cut everywhere; all must agree. */
function decodeEveryWay(
  framing: BodyFraming,
  raw: string,
  given: Http1Limits = DEFAULT_HTTP1_LIMITS,
): Decoded {
  const input = bytes(raw);
  const whole = decodeInPieces(framing, input, [], given);
  const bytewise = decodeInPieces(
    framing,
    input,
    Array.from({ length: input.length }, (_, i) => i + 1).slice(0, -1),
    given,
  );
  assert.deepEqual(bytewise, whole, `bytewise ${JSON.stringify(raw)}`);
  for (let cut = 0; cut <= input.length; cut++) {
    assert.deepEqual(
      decodeInPieces(framing, input, [cut], given),
      whole,
      `cut at ${cut} of ${JSON.stringify(raw)}`,
    );
  }
  return whole;
}

/** Asserts that `raw` is refused with `status` whole, byte by byte and cut everywhere. */
function assertBodyRefused(
  framing: BodyFraming,
  raw: string,
  status: number,
  given: Http1Limits = DEFAULT_HTTP1_LIMITS,
): void {
  const input = bytes(raw);
  const ways: number[][] = [
    [],
    Array.from({ length: input.length - 1 }, (_, i) => i + 1),
  ];
  for (let cut = 0; cut <= input.length; cut++) ways.push([cut]);
  for (const cuts of ways) {
    assertRefused(
      () => {
        const decoded = decodeInPieces(framing, input, cuts, given);
        if (!decoded.done) new BodyDecoder(framing, given).finish();
      },
      status,
      `${JSON.stringify(raw)} cut at ${cuts.length > 1 ? "every byte" : cuts}`,
    );
  }
}

const CHUNKED: BodyFraming = { type: "chunked" };

Deno.test("RFC 9112 §7.1 a chunked body decodes to its data and stops at its end", () => {
  const raw = "5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n";
  assert.deepEqual(decodeEveryWay(CHUNKED, raw + "GET / HTTP/1.1\r\n"), {
    body: "hello, world",
    consumed: raw.length,
    done: true,
  });
});

Deno.test("RFC 9112 §7.1 chunk data comes out as views into the pushed bytes", () => {
  const input = bytes("5\r\nhello\r\n0\r\n\r\n");
  const result = new BodyDecoder(CHUNKED).push(input);
  assert.equal(result.data.buffer, input.buffer);
  assert.equal(result.data.byteOffset, 3);
  assert.equal(text(result.data), "hello");
});

Deno.test("RFC 9112 §7.1 the chunks of one push come out as one joined piece, whatever their size", () => {
  // 1-byte chunks: one array for the push, not one per chunk (issue 19).
  const data = "abcdefghij".repeat(100);
  let raw = "";
  for (const char of data) raw += `1\r\n${char}\r\n`;
  raw += "0\r\n\r\n";
  const input = bytes(raw);
  const result = new BodyDecoder(CHUNKED).push(input);
  assert.equal(text(result.data), data);
  assert.notEqual(result.data.buffer, input.buffer);
  assert.equal(result.data.buffer.byteLength, data.length);
  assert.equal(result.done, true);
  // Runs long and short mixed, and a push that ends inside a chunk.
  const mixed = `40\r\n${"x".repeat(64)}\r\n2\r\nab\r\n50\r\n${"y".repeat(40)}`;
  const decoder = new BodyDecoder(CHUNKED);
  const first = decoder.push(bytes(mixed));
  assert.equal(text(first.data), `${"x".repeat(64)}ab${"y".repeat(40)}`);
  const second = decoder.push(bytes(`${"y".repeat(40)}\r\n0\r\n\r\n`));
  assert.equal(text(second.data), "y".repeat(40));
  assert.equal(second.done, true);
});

Deno.test("RFC 9112 §7.1 chunk sizes are hex digits in either case, leading zeros allowed", () => {
  const data = "x".repeat(0xab);
  for (const size of ["ab", "AB", "aB", "00ab"]) {
    assert.equal(
      decodeInPieces(CHUNKED, bytes(`${size}\r\n${data}\r\n0\r\n\r\n`), [])
        .body,
      data,
    );
  }
  assert.deepEqual(decodeEveryWay(CHUNKED, "0\r\n\r\n"), {
    body: "",
    consumed: 5,
    done: true,
  });
  assert.equal(decodeEveryWay(CHUNKED, "000\r\n\r\n").done, true);
});

Deno.test("RFC 9112 §7.1.1 chunk extensions are checked and ignored", () => {
  const raw = '5;name=value;flag ; q="a \\" b" \t;t=x\r\nhello\r\n' +
    "0;last\r\n\r\n";
  assert.deepEqual(decodeEveryWay(CHUNKED, raw), {
    body: "hello",
    consumed: raw.length,
    done: true,
  });
});

Deno.test("RFC 9112 §7.1.1 malformed chunk extensions are refused with 400", () => {
  for (
    const line of [
      "5;",
      "5 ",
      "5\t",
      "5;a=",
      "5;a b",
      "5;a=b c",
      "5;a\x01",
      "5;a\x7f",
      '5;a="x',
      '5;a="x"y',
      "5;=b",
      "5;a;",
    ]
  ) {
    assertBodyRefused(CHUNKED, `${line}\r\nhello\r\n0\r\n\r\n`, 400);
  }
});

Deno.test("RFC 9112 §7.1 control characters in a chunk extension or a trailer field are refused as they arrive", () => {
  for (const raw of ["5;a\x01", "5;a=\x7f", "0\r\nX: \x00", "0\r\nX\x1b"]) {
    assertRefused(
      () => new BodyDecoder(CHUNKED).push(bytes(raw)),
      400,
      JSON.stringify(raw),
    );
  }
});

Deno.test("RFC 9112 §7.1.1 chunk extensions are limited in total over the body with 413", () => {
  const small = limits({ maxChunkExtensionSize: 16 });
  // 16 bytes of extensions in all: accepted.
  const fits = "1;aaaaa\r\nx\r\n1;bbbbb\r\ny\r\n0;c=d\r\n\r\n";
  assert.equal(decodeEveryWay(CHUNKED, fits, small).body, "xy");
  // One byte more, spread over chunks: refused.
  assertBodyRefused(
    CHUNKED,
    "1;aaaaa\r\nx\r\n1;bbbbb\r\ny\r\n0;cc=d\r\n\r\n",
    413,
    small,
  );
  // The default limit, 16 KiB.
  assertRefused(
    () =>
      new BodyDecoder(CHUNKED).push(
        bytes(`1;${"e".repeat(20000)}\r\nx\r\n0\r\n\r\n`),
      ),
    413,
  );
});

Deno.test("RFC 9112 §7.1 a chunk size that is not 1*HEXDIG is refused with 400", () => {
  for (
    const size of [
      " 5",
      "+5",
      "-5",
      "0x5",
      "5_0",
      "g",
      "",
      ";a",
      "\t5",
      "5\x00",
    ]
  ) {
    assertBodyRefused(CHUNKED, `${size}\r\nhello\r\n0\r\n\r\n`, 400);
  }
});

Deno.test("RFC 9112 §7.1 a bare LF or bare CR in chunk framing is refused with 400", () => {
  for (
    const raw of [
      "5\nhello\r\n0\r\n\r\n",
      "5;a=b\nhello\r\n0\r\n\r\n",
      "5\rhello\r\n0\r\n\r\n",
      "5\r\nhello\n0\r\n\r\n",
      "5\r\nhello\r0\r\n\r\n",
      "5\r\r\nhello\r\n0\r\n\r\n",
      "5\r\rhello\r\n0\r\n\r\n",
      "5;a=b\r\rhello\r\n0\r\n\r\n",
      "5\r\nhello\n\n0\r\n\r\n",
      "5\r\nhello\r\r0\r\n\r\n",
      "5\r\nhello\r\n0\n\r\n",
      "5\r\nhello\r\n0\r\n\n",
      "5\r\nhello\r\n0\r\n\r\r",
      "5\r\nhello\r\n0\r\nX: y\n\r\n",
      "5\r\nhello\r\n0\r\nX: y\r\r\n\r\n",
      "5\r\nhello\r\n0\r\nX: y\rZX: w\r\n\r\n",
      "5\r\nhello\r\n0\r\nX: y\r\n\n",
    ]
  ) {
    assertBodyRefused(CHUNKED, raw, 400);
  }
});

Deno.test("RFC 9112 §7.1 chunk data longer than its size is refused with 400", () => {
  assertBodyRefused(CHUNKED, "5\r\nhello!!\r\n0\r\n\r\n", 400);
  assertBodyRefused(CHUNKED, "3\r\nhello\r\n0\r\n\r\n", 400);
  // A wrong byte where the CR belongs, even with the LF after it.
  assertBodyRefused(CHUNKED, "5\r\nhello!\n0\r\n\r\n", 400);
});

Deno.test("RFC 9112 §7.1 a last chunk without the final CRLF is refused with 400", () => {
  // The next request's line would be read as a trailer field: not one.
  assertBodyRefused(CHUNKED, "0\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  // The input ends there: incomplete.
  assertBodyRefused(CHUNKED, "5\r\nhello\r\n0\r\n", 400);
  assertBodyRefused(CHUNKED, "5\r\nhello\r\n0\r\nX: y\r\n", 400);
  assertBodyRefused(CHUNKED, "5\r\nhel", 400);
});

Deno.test("RFC 9112 §7.1 a chunk size that overflows is refused with 400, one over the body limit with 413", () => {
  const unlimited = limits({ maxBodySize: Infinity });
  assertBodyRefused(CHUNKED, "10000000000000000\r\n", 400, unlimited);
  assertBodyRefused(CHUNKED, "ffffffffffffffff\r\n", 400, unlimited);
  // Leading zeros count: 17 digits cannot be a 64-bit size.
  assertBodyRefused(CHUNKED, "00000000000000001\r\nx\r\n0\r\n\r\n", 400);
  assertBodyRefused(CHUNKED, "ffffffffffffffff\r\n", 413);
  // 16 MiB + 1, refused on the size line before any data.
  assertBodyRefused(CHUNKED, "1000001\r\n", 413);
});

Deno.test("RFC 9112 §7.1 the body limit counts data over all chunks, exactly the limit passes", () => {
  const ten = limits({ maxBodySize: 10 });
  assert.equal(
    decodeEveryWay(CHUNKED, "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", ten).body,
    "helloworld",
  );
  assertBodyRefused(
    CHUNKED,
    "5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n",
    413,
    ten,
  );
});

Deno.test("RFC 9112 §7.1.2 trailer fields are checked and dropped, framing fields included", () => {
  const raw = "5\r\nhello\r\n0\r\nContent-Length: 50\r\nX-Sum:\t abc \r\n" +
    "Transfer-Encoding: chunked\r\n\r\n";
  assert.deepEqual(decodeEveryWay(CHUNKED, raw + "NEXT"), {
    body: "hello",
    consumed: raw.length,
    done: true,
  });
});

Deno.test("RFC 9112 §7.1.2 malformed trailer fields are refused with 400", () => {
  for (
    const trailer of [
      "X-A: b\r\n c",
      " X-A: b",
      "X-A : b",
      "X-A",
      ": b",
      "X-A: b\x00",
      "X-A: b\x7f",
    ]
  ) {
    assertBodyRefused(CHUNKED, `0\r\n${trailer}\r\n\r\n`, 400);
  }
  assert.throws(
    () => new BodyDecoder(CHUNKED).push(bytes("0\r\nX-A: b\r\n c\r\n\r\n")),
    { status: 400, message: "Obsolete line folding in trailer section" },
  );
});

Deno.test("RFC 9112 §7.1.2 the trailer section is limited with 431; the final CRLF does not count", () => {
  const small = limits({ maxTrailerSize: 8 });
  // "X-A: bc\r\n" is 9 bytes.
  assert.equal(
    decodeEveryWay(CHUNKED, "0\r\nX-A: b\r\n\r\n", small).done,
    true,
  );
  assertBodyRefused(CHUNKED, "0\r\nX-A: bc\r\n\r\n", 431, small);
  assert.equal(
    decodeEveryWay(CHUNKED, "0\r\n\r\n", limits({ maxTrailerSize: 0 })).done,
    true,
  );
});

Deno.test("RFC 9112 §7.1 a decoder error stays: later pushes and finish throw the same error", () => {
  const decoder = new BodyDecoder(CHUNKED);
  let first: unknown;
  try {
    decoder.push(bytes("5\r\nhello!!"));
  } catch (error) {
    first = error;
  }
  assert.ok(first instanceof HttpError);
  assert.equal(first.status, 400);
  assert.throws(() => decoder.push(bytes("\r\n")), (error) => error === first);
  assert.throws(() => decoder.finish(), (error) => error === first);
});

Deno.test("RFC 9112 §7.1 finish() refuses a body cut short with 400 and accepts a complete one", () => {
  const decoder = new BodyDecoder(CHUNKED);
  decoder.push(bytes("5\r\nhel"));
  assertRefused(() => decoder.finish(), 400);
  const complete = new BodyDecoder(CHUNKED);
  complete.push(bytes("0\r\n\r\n"));
  complete.finish();
  assert.equal(complete.done, true);
});

// RFC 9112 §6.2: Content-Length bodies.

Deno.test("RFC 9112 §6.2 a Content-Length body is exactly that many bytes; the rest is left", () => {
  const framing: BodyFraming = { type: "length", length: 5 };
  assert.deepEqual(decodeEveryWay(framing, "helloGET / HTTP/1.1\r\n"), {
    body: "hello",
    consumed: 5,
    done: true,
  });
  const input = bytes("hello");
  const result = new BodyDecoder(framing).push(input);
  assert.equal(result.data.buffer, input.buffer);
  const decoder = new BodyDecoder(framing);
  decoder.push(bytes("hel"));
  assert.equal(decoder.received, 3);
  assertRefused(() => decoder.finish(), 400);
});

Deno.test("RFC 9112 §6.3 a body of length 0 is done before any byte", () => {
  const decoder = new BodyDecoder({ type: "length", length: 0 });
  assert.equal(decoder.done, true);
  assert.deepEqual(decoder.push(bytes("GET")), {
    data: new Uint8Array(0),
    consumed: 0,
    done: true,
  });
  decoder.finish();
});

Deno.test("RFC 9110 §15.5.14 a decoder for a length over maxBodySize refuses with 413", () => {
  assertRefused(
    () =>
      new BodyDecoder(
        { type: "length", length: 11 },
        limits({ maxBodySize: 10 }),
      ),
    413,
  );
});

// RFC 9112 §9.3.2: pipelining.

/** Runs the head → framing → body loop over pieces, as a server would; one line per request. */
function serveBytes(pieces: Uint8Array[]): string[] {
  const served: string[] = [];
  let buffer: Uint8Array = new Uint8Array(0);
  let scanned = 0;
  let current:
    | { head: RequestHead; decoder: BodyDecoder; body: string }
    | undefined;
  for (const piece of pieces) {
    buffer = concat([buffer, piece]);
    while (true) {
      if (!current) {
        const taken = takeRequestHead(buffer, DEFAULT_HTTP1_LIMITS, scanned);
        if (!taken) {
          scanned = buffer.length;
          break;
        }
        scanned = 0;
        buffer = buffer.subarray(taken.size);
        const framing = decideRequestFraming(taken.head);
        current = {
          head: taken.head,
          decoder: new BodyDecoder(framing.body),
          body: "",
        };
      }
      const result = current.decoder.push(buffer);
      current.body += text(result.data);
      buffer = buffer.subarray(result.consumed);
      if (!result.done) break;
      served.push(
        `${current.head.method} ${current.head.target} ${
          JSON.stringify(current.body)
        }`,
      );
      current = undefined;
    }
  }
  return served;
}

Deno.test("RFC 9112 §9.3.2 pipelined requests come out the same whatever the read boundaries", () => {
  const raw = bytes(
    "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" +
      "POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
      "3;x=y\r\nwor\r\n2\r\nld\r\n0\r\nX-T: 1\r\n\r\n" +
      "\r\nGET /c HTTP/1.1\r\nHost: a\r\n\r\n" +
      "GET /d HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
  );
  const expected = [
    'POST /a "hello"',
    'POST /b "world"',
    'GET /c ""',
    'GET /d ""',
  ];
  assert.deepEqual(serveBytes([raw]), expected);
  const bytewise = Array.from(raw, (_, i) => raw.subarray(i, i + 1));
  assert.deepEqual(serveBytes(bytewise), expected);
  for (let cut = 0; cut <= raw.length; cut++) {
    assert.deepEqual(
      serveBytes([raw.subarray(0, cut), raw.subarray(cut)]),
      expected,
      `cut at ${cut}`,
    );
  }
});

Deno.test("RFC 9112 §11.2 a CL.TE smuggling attempt is refused before the smuggled request is read", () => {
  const raw = bytes(
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n" +
      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
  );
  assertRefused(() => serveBytes([raw]), 400);
  // TE.CL with differing Content-Length lines: refused as well.
  assertRefused(
    () =>
      serveBytes([
        bytes(
          "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\n" +
            "GET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
      ]),
    400,
  );
});

// RFC 9112 §6.3, RFC 9110 §6.4.1, §8.6: response heads.

function serialize(
  response: Response,
  options: Partial<ResponseHeadOptions> = {},
) {
  const result = serializeResponseHead(response, {
    method: "GET",
    version: "HTTP/1.1",
    keepAlive: true,
    ...options,
  });
  return { ...result, head: text(result.bytes) };
}

Deno.test("RFC 9112 §6.2 a response with a Content-Length header is framed by it", () => {
  const result = serialize(
    new Response("hello", {
      headers: { "content-type": "text/plain", "content-length": "5" },
    }),
  );
  assert.equal(
    result.head,
    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\n",
  );
  assert.deepEqual(result.framing, { type: "length", length: 5 });
  assert.equal(result.keepAlive, true);
});

Deno.test("RFC 9112 §7.1 a response of unknown length to HTTP/1.1 is chunked", () => {
  const result = serialize(new Response("hello"));
  assert.equal(
    result.head,
    "HTTP/1.1 200 OK\r\ncontent-type: text/plain;charset=UTF-8\r\n" +
      "transfer-encoding: chunked\r\n\r\n",
  );
  assert.deepEqual(result.framing, { type: "chunked" });
  assert.equal(result.keepAlive, true);
});

Deno.test("RFC 9112 §6.1 a response of unknown length to HTTP/1.0 is ended by closing, never chunked", () => {
  const result = serialize(new Response("hello"), { version: "HTTP/1.0" });
  assert.equal(
    result.head,
    "HTTP/1.1 200 OK\r\ncontent-type: text/plain;charset=UTF-8\r\nconnection: close\r\n\r\n",
  );
  assert.deepEqual(result.framing, { type: "close" });
  assert.equal(result.keepAlive, false);
});

Deno.test("RFC 9112 §9.3 an HTTP/1.0 keep-alive response with a length says connection: keep-alive", () => {
  const result = serialize(new Response(null, { status: 201 }), {
    version: "HTTP/1.0",
  });
  assert.equal(
    result.head,
    "HTTP/1.1 201 Created\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n",
  );
  assert.equal(result.keepAlive, true);
});

Deno.test("RFC 9112 §9.6 a response on a connection that will close says connection: close", () => {
  const result = serialize(new Response("x"), { keepAlive: false });
  assert.match(
    result.head,
    /\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n$/,
  );
  assert.equal(result.keepAlive, false);
  // The app's own connection: close is honoured.
  const app = serialize(
    new Response(null, { headers: { connection: "Close" } }),
  );
  assert.equal(
    app.head,
    "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
  );
  assert.equal(app.keepAlive, false);
});

Deno.test("RFC 9110 §9.3.2 a response to HEAD has no body and keeps the app's Content-Length", () => {
  const withLength = serialize(
    new Response(null, { headers: { "content-length": "1234" } }),
    { method: "HEAD" },
  );
  assert.equal(
    withLength.head,
    "HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n",
  );
  assert.deepEqual(withLength.framing, { type: "none" });
  const unknown = serialize(new Response("hello"), { method: "HEAD" });
  assert.equal(
    unknown.head,
    "HTTP/1.1 200 OK\r\ncontent-type: text/plain;charset=UTF-8\r\n\r\n",
  );
  assert.deepEqual(unknown.framing, { type: "none" });
  assert.equal(unknown.keepAlive, true);
  const measured = serialize(new Response("hello"), {
    method: "HEAD",
    bodyLength: 5,
  });
  assert.match(measured.head, /\r\ncontent-length: 5\r\n\r\n$/);
});

Deno.test("RFC 9110 §8.6 a 204 carries neither Content-Length nor Transfer-Encoding", () => {
  const result = serialize(
    new Response(null, {
      status: 204,
      headers: {
        "content-length": "0",
        "transfer-encoding": "chunked",
        etag: '"1"',
      },
    }),
  );
  assert.equal(result.head, 'HTTP/1.1 204 No Content\r\netag: "1"\r\n\r\n');
  assert.deepEqual(result.framing, { type: "none" });
  // Not even in answer to HEAD.
  const head = serialize(
    new Response(null, { status: 204, headers: { "content-length": "7" } }),
    { method: "HEAD" },
  );
  assert.equal(head.head, "HTTP/1.1 204 No Content\r\n\r\n");
});

Deno.test("RFC 9110 §8.6 a 304 has no body and keeps the app's Content-Length", () => {
  const result = serialize(
    new Response(null, {
      status: 304,
      headers: { "content-length": "42", "transfer-encoding": "chunked" },
    }),
  );
  assert.equal(
    result.head,
    "HTTP/1.1 304 Not Modified\r\ncontent-length: 42\r\n\r\n",
  );
  assert.deepEqual(result.framing, { type: "none" });
  const bare = serialize(new Response(null, { status: 304 }));
  assert.equal(bare.head, "HTTP/1.1 304 Not Modified\r\n\r\n");
});

Deno.test("RFC 9110 §15.2 a 1xx response has no body or length and closes the connection after it", () => {
  const result = serialize(
    new Response(null, { status: 101, headers: { "content-length": "3" } }),
  );
  assert.equal(
    result.head,
    "HTTP/1.1 101 Switching Protocols\r\nconnection: close\r\n\r\n",
  );
  assert.deepEqual(result.framing, { type: "none" });
  assert.equal(result.keepAlive, false);
});

Deno.test("RFC 9110 §7.6.1 the app's hop-by-hop framing fields are replaced, not sent", () => {
  const result = serialize(
    new Response("hello", {
      headers: {
        "transfer-encoding": "gzip, chunked",
        connection: "keep-alive",
        "keep-alive": "timeout=5",
        "proxy-connection": "keep-alive",
        te: "trailers",
        trailer: "x-sum",
        "x-kept": "1",
      },
    }),
  );
  assert.equal(
    result.head,
    "HTTP/1.1 200 OK\r\ncontent-type: text/plain;charset=UTF-8\r\nx-kept: 1\r\n" +
      "transfer-encoding: chunked\r\n\r\n",
  );
});

Deno.test("RFC 9110 §8.6 an invalid Content-Length from the app is dropped; the known length wins", () => {
  for (const value of ["abc", "5, 6", "-1", "0x5", "99999999999999999999"]) {
    const result = serialize(
      new Response("hello", { headers: { "content-length": value } }),
    );
    assert.deepEqual(result.framing, { type: "chunked" }, value);
    assert.doesNotMatch(result.head, /content-length/, value);
  }
  assert.deepEqual(
    serialize(new Response("hello", { headers: { "content-length": "5, 5" } }))
      .framing,
    { type: "length", length: 5 },
  );
  const measured = serialize(
    new Response("hello", { headers: { "content-length": "9" } }),
    { bodyLength: 5 },
  );
  assert.match(measured.head, /\r\ncontent-length: 5\r\n\r\n$/);
  assert.deepEqual(measured.framing, { type: "length", length: 5 });
  // A null body is known to be empty.
  const empty = serialize(
    new Response(null, { headers: { "content-length": "9" } }),
  );
  assert.deepEqual(empty.framing, { type: "length", length: 0 });
});

Deno.test("RFC 9110 §5.5 response header values go out as their latin1 bytes, set-cookie line by line", () => {
  const headers = new Headers({ "x-name": "caf\xe9" });
  headers.append("set-cookie", "a=1");
  headers.append("set-cookie", "b=2");
  const result = serializeResponseHead(new Response(null, { headers }), {
    method: "GET",
    version: "HTTP/1.1",
    keepAlive: true,
  });
  const head = text(result.bytes);
  assert.equal(
    head,
    "HTTP/1.1 200 OK\r\nset-cookie: a=1\r\nset-cookie: b=2\r\nx-name: caf\xe9\r\n" +
      "content-length: 0\r\n\r\n",
  );
  assert.equal(result.bytes.length, head.length);
  assert.equal(result.bytes[head.indexOf("\xe9")], 0xe9);
});

Deno.test("RFC 9112 §4 the reason phrase is the app's, else the usual one, else empty", () => {
  assert.match(
    serialize(new Response(null, { status: 200, statusText: "Fine" })).head,
    /^HTTP\/1\.1 200 Fine\r\n/,
  );
  assert.match(
    serialize(new Response(null, { status: 413 })).head,
    /^HTTP\/1\.1 413 Content Too Large\r\n/,
  );
  assert.match(
    serialize(new Response(null, { status: 299 })).head,
    /^HTTP\/1\.1 299 \r\n/,
  );
});

Deno.test("RFC 9110 §6.6.1 a Date is added when given, unless the app set one", () => {
  const date = new Date(0).toUTCString();
  assert.equal(
    serialize(new Response(null), { date }).head,
    "HTTP/1.1 200 OK\r\ndate: Thu, 01 Jan 1970 00:00:00 GMT\r\ncontent-length: 0\r\n\r\n",
  );
  assert.equal(
    serialize(new Response(null, { headers: { date: "x" } }), { date }).head,
    "HTTP/1.1 200 OK\r\ndate: x\r\ncontent-length: 0\r\n\r\n",
  );
});

Deno.test("RFC 9110 §7.8 an Upgrade header from the app comes with the upgrade connection option", () => {
  const response = new Response(null, {
    status: 426,
    headers: { upgrade: "websocket" },
  });
  assert.equal(
    serialize(response).head,
    "HTTP/1.1 426 Upgrade Required\r\nupgrade: websocket\r\ncontent-length: 0\r\n" +
      "connection: upgrade\r\n\r\n",
  );
  assert.match(
    serialize(response, { keepAlive: false }).head,
    /\r\nconnection: close, upgrade\r\n\r\n$/,
  );
});

Deno.test("serializeResponseHead refuses Response.error() with a TypeError", () => {
  assert.throws(() => serialize(Response.error()), TypeError);
});

// RFC 9112 §7.1: chunked response bodies.

Deno.test("RFC 9112 §7.1 encodeChunk frames data as hex size, CRLF, data, CRLF", () => {
  assert.equal(text(encodeChunk(bytes("hello"))), "5\r\nhello\r\n");
  const big = new Uint8Array(0x1ab).fill(0x61);
  assert.equal(text(encodeChunk(big)), `1ab\r\n${"a".repeat(0x1ab)}\r\n`);
  assert.equal(text(LAST_CHUNK), "0\r\n\r\n");
});

Deno.test("RFC 9112 §7.1 an empty chunk encodes to nothing, never to an early last chunk", () => {
  assert.equal(encodeChunk(new Uint8Array(0)).length, 0);
  const encoder = new ResponseBodyEncoder({ type: "chunked" });
  assert.equal(encoder.encode(new Uint8Array(0)).length, 0);
});

Deno.test("RFC 9112 §7.1 a chunked response body decodes back to its data", () => {
  const encoder = new ResponseBodyEncoder({ type: "chunked" });
  const pieces = ["hello", "", ", ", "x".repeat(300), "!"];
  const wire = concat([
    ...pieces.map((piece) => encoder.encode(bytes(piece))),
    encoder.end(),
  ]);
  assert.deepEqual(decodeEveryWay(CHUNKED, text(wire)), {
    body: pieces.join(""),
    consumed: wire.length,
    done: true,
  });
});

Deno.test("RFC 9112 §6.2 a response body longer or shorter than its Content-Length throws a RangeError", () => {
  const exact = new ResponseBodyEncoder({ type: "length", length: 5 });
  const chunk = bytes("hel");
  assert.equal(exact.encode(chunk), chunk);
  assert.equal(text(exact.encode(bytes("lo"))), "lo");
  assert.equal(exact.end().length, 0);
  const long = new ResponseBodyEncoder({ type: "length", length: 5 });
  long.encode(bytes("hel"));
  assert.throws(() => long.encode(bytes("lo!")), RangeError);
  const short = new ResponseBodyEncoder({ type: "length", length: 5 });
  short.encode(bytes("hel"));
  assert.throws(() => short.end(), RangeError);
});

Deno.test("RFC 9112 §6.3 a bodiless response drops body chunks; a close-delimited one passes them", () => {
  const none = new ResponseBodyEncoder({ type: "none" });
  assert.equal(none.encode(bytes("hello")).length, 0);
  assert.equal(none.end().length, 0);
  const close = new ResponseBodyEncoder({ type: "close" });
  assert.equal(text(close.encode(bytes("hello"))), "hello");
  assert.equal(close.end().length, 0);
});

// Refusals.

Deno.test("serializeErrorResponse writes a whole plain-text response that closes the connection", () => {
  const error = new HttpError(503, "Too many connections", {
    "retry-after": "1",
  });
  assert.equal(
    text(serializeErrorResponse(error)),
    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n" +
      "retry-after: 1\r\ncontent-length: 20\r\nconnection: close\r\n\r\n" +
      "Too many connections",
  );
  assert.equal(
    text(serializeErrorResponse(new HttpError(400, "Bad"), { method: "HEAD" })),
    "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n" +
      "content-length: 3\r\nconnection: close\r\n\r\n",
  );
});
