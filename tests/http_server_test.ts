// Tests of plain HTTP/1.1 on serve()'s port (`fetch`, src/server/_http_server.ts): request
// bodies, keep-alive, streamed responses, limits, errors, and WebSockets beside them.
import assert from "node:assert/strict";
// deno-lint-ignore no-import-prefix
import { Hono } from "npm:hono@4";
import { connect, type ServeOptions } from "../mod.ts";
import {
  headerValues,
  parseAnswer,
  RawClient,
  text,
  upgradeRequest,
  type WireAnswer,
} from "./_raw_client.ts";
import { frame } from "./_wire.ts";
import { makeCertificates } from "./_tls.ts";
import {
  capturingConsoleError,
  collectGarbage,
  deadline,
  echo,
  never,
  serveLocal,
  sleep,
  start,
  stopChild,
  waitFor,
} from "./_util.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A quiet server with `fetch`, and the WebSocket echo. */
function startHttp(
  fetch: ServeOptions["fetch"],
  options: ServeOptions = {},
) {
  return start({ fetch, ...options }, echo);
}

/** Answers with the method, path and request body it read. */
async function echoRequest(request: Request): Promise<Response> {
  const body = await request.text();
  return new Response(
    `${request.method} ${new URL(request.url).pathname} ${body}`,
  );
}

/**
 * A fetch that reads the whole request body and answers `answer`; when the
 * read fails, it resolves `failed` with the error, then rethrows it
 * (`rethrow`) or answers all the same.
 */
function readingBody(
  failed: PromiseWithResolvers<unknown>,
  answer: string,
  { rethrow = false } = {},
): (request: Request) => Promise<Response> {
  return async (request) => {
    try {
      await request.arrayBuffer();
    } catch (error) {
      failed.resolve(error);
      if (rethrow) throw error;
    }
    return new Response(answer);
  };
}

/** Deno's fetch through a client of its own, closed by the caller. */
async function fetchText(
  client: Deno.HttpClient,
  url: string,
  init: RequestInit = {},
): Promise<{ status: number; headers: Headers; body: string }> {
  const response = await deadline(
    fetch(url, { ...init, client }),
    `fetch ${url}`,
  );
  const body = await deadline(response.text(), `the body of ${url}`);
  return { status: response.status, headers: response.headers, body };
}

// --- Request bodies (RFC 9112 §6) ---

Deno.test("§6.2 a POST body framed by Content-Length reaches fetch whole", async () => {
  await using server = startHttp(echoRequest);
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world",
  );
  const answer = await client.readResponse();
  assert.equal(answer.status, 200);
  assert.equal(answer.body, "POST /upload hello world");
});

Deno.test("§7.1 a chunked POST body arriving in pieces reaches fetch decoded", async () => {
  await using server = startHttp(echoRequest);
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
  );
  await sleep(20);
  await client.write("1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n");
  const answer = await client.readResponse();
  assert.equal(answer.status, 200);
  assert.equal(answer.body, "POST /c hello world");
});

Deno.test("a request body is read from the connection only as fetch reads it", async () => {
  const firstChunk = Promise.withResolvers<string>();
  await using server = startHttp(async (request) => {
    const reader = request.body!.getReader();
    const first = await reader.read();
    firstChunk.resolve(decoder.decode(first.value));
    let rest = "";
    for (let r; !(r = await reader.read()).done;) {
      rest += decoder.decode(r.value);
    }
    return new Response(`rest=${rest}`);
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabcde",
  );
  assert.equal(await deadline(firstChunk.promise, "the first chunk"), "abcde");
  await client.write("fghij");
  assert.equal((await client.readResponse()).body, "rest=fghij");
});

Deno.test("a client that leaves mid-body errors the request body stream, and the server goes on", async () => {
  const failed = Promise.withResolvers<unknown>();
  let errors = 0;
  await using server = startHttp(
    readingBody(failed, "read all", { rethrow: true }),
    { onError: () => errors++ },
  );
  {
    await using client = await RawClient.connect(server.addr.port);
    await client.write(
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\npartial",
    );
    await sleep(20);
  }
  const error = await deadline(failed.promise, "the body's failure");
  assert.ok(error instanceof Error, String(error));
  // The failure is the client's, not the app's: onError does not hear of it.
  assert.equal(errors, 0);
  await using again = await RawClient.connect(server.addr.port);
  await again.write(
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok",
  );
  assert.equal((await again.readResponse()).body, "read all");
});

Deno.test("a client that resets mid-body errors the request body stream, and the server goes on", async () => {
  const failed = Promise.withResolvers<unknown>();
  await using server = startHttp(readingBody(failed, "read all"));
  // Deno cannot set SO_LINGER: Python's socket sends a real TCP reset.
  const script = `
import socket, struct, time
s = socket.create_connection(("127.0.0.1", ${server.addr.port}))
s.sendall(b"POST / HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 1000\\r\\n\\r\\npartial")
time.sleep(0.2)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
`;
  const child = new Deno.Command("python3", { args: ["-c", script] }).spawn();
  let error: unknown;
  let python: Deno.CommandStatus;
  try {
    error = await deadline(failed.promise, "the body's failure");
  } finally {
    // Waits WAIT_LIMIT for python's exit, then kills it (a non-zero code).
    python = await stopChild(child);
  }
  assert.ok(error instanceof Deno.errors.ConnectionReset, String(error));
  assert.equal(python.code, 0, "python's exit code");
  await using again = await RawClient.connect(server.addr.port);
  await again.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal((await again.readResponse()).body, "read all");
});

Deno.test("a request body that stalls past idleTimeout fails with TimedOut and closes the connection", async () => {
  const failed = Promise.withResolvers<unknown>();
  await using server = startHttp(readingBody(failed, "late"), {
    idleTimeout: 200,
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
  );
  const error = await deadline(failed.promise, "the stalled body's failure");
  assert.ok(error instanceof Deno.errors.TimedOut, String(error));
  assert.equal(await client.readEof(), true);
});

// --- Persistence and pipelining (RFC 9112 §9) ---

Deno.test("§9.3 two requests on one kept-alive connection get both answers on it", async () => {
  const ports = new Set<number>();
  await using server = startHttp((request, info) => {
    ports.add(info.remoteAddr.port);
    return new Response(new URL(request.url).pathname);
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write("GET /one HTTP/1.1\r\nHost: x\r\n\r\n");
  const one = await client.readResponse();
  assert.equal(one.body, "/one");
  assert.equal(one.headers.get("connection"), null);
  assert.equal(one.headers.get("content-length"), "4");
  assert.ok(one.headers.get("date")?.endsWith(" GMT"));
  await client.write("GET /two HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal((await client.readResponse()).body, "/two");
  assert.deepEqual([...ports], [(client.conn.localAddr as Deno.NetAddr).port]);
});

Deno.test("§9.3.2 pipelined requests in one write are answered in order", async () => {
  await using server = startHttp(async (request) => {
    const path = new URL(request.url).pathname;
    // The first answer is the slowest: order must not follow speed.
    if (path === "/1") await sleep(30);
    return new Response(`${path}:${await request.text()}`);
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n" +
      "POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" +
      "POST /3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n" +
      "GET /4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
  );
  const bodies = [];
  for (let i = 0; i < 4; i++) bodies.push((await client.readResponse()).body);
  assert.deepEqual(bodies, ["/1:", "/2:abc", "/3:de", "/4:"]);
  assert.equal(await client.readEof(), true);
});

Deno.test("§9.6 Connection: close and HTTP/1.0 without keep-alive close after the answer", async () => {
  await using server = startHttp(() => new Response("bye"));
  for (
    const head of [
      "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      "GET / HTTP/1.0\r\n\r\n",
    ]
  ) {
    await using client = await RawClient.connect(server.addr.port);
    await client.write(head);
    const answer = await client.readResponse();
    assert.equal(answer.body, "bye");
    assert.equal(answer.headers.get("connection"), "close");
    assert.equal(await client.readEof(), true);
  }
});

Deno.test("a body fetch did not read is drained, and the connection carries the next request", async () => {
  await using server = startHttp((request) =>
    new Response(`ignored ${request.method}`)
  );
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde" +
      // A GET with a body: Request cannot carry it, so it is read and dropped.
      "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz",
  );
  assert.equal((await client.readResponse()).body, "ignored POST");
  assert.equal((await client.readResponse()).body, "ignored GET");
  await client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal((await client.readResponse()).body, "ignored GET");
});

Deno.test("an unread body longer than the drain allowance closes the connection after the answer", async () => {
  await using server = startHttp(() => new Response("no thanks"));
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\nabc",
  );
  const answer = await client.readResponse();
  assert.equal(answer.body, "no thanks");
  assert.equal(answer.headers.get("connection"), "close");
  client.conn.closeWrite();
  assert.equal(await client.readEof(), true);
});

Deno.test("a kept-alive connection idle past keepAliveTimeout is closed", async () => {
  await using server = startHttp(() => new Response("ok"), {
    keepAliveTimeout: 100,
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal((await client.readResponse()).body, "ok");
  assert.equal(await client.readEof(), true);
});

Deno.test("a later head on a kept-alive connection has maxHeadSize (431) and handshakeTimeout from its first byte", async () => {
  await using server = startHttp(() => new Response("ok"), {
    maxHeadSize: 1024,
    handshakeTimeout: 200,
  });
  {
    await using client = await RawClient.connect(server.addr.port);
    await client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.equal((await client.readResponse()).body, "ok");
    await client.write(
      `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(2000)}\r\n\r\n`,
    );
    assert.equal((await client.readResponse()).status, 431);
    assert.equal(await client.readEof(), true);
  }
  await using client = await RawClient.connect(server.addr.port);
  await client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal((await client.readResponse()).body, "ok");
  await client.write("GET / HTTP/1.1\r\n");
  assert.equal(await client.readEof(), true);
});

Deno.test("keepAliveTimeout 0 closes the connection after each answer", async () => {
  await using server = startHttp(() => new Response("once"), {
    keepAliveTimeout: 0,
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  const answer = await client.readResponse();
  assert.equal(answer.headers.get("connection"), "close");
  assert.equal(await client.readEof(), true);
});

// --- Responses (RFC 9112 §6.3, §7) ---

Deno.test("a streamed response reaches Deno's fetch chunk by chunk, chunked", async () => {
  const firstRead = Promise.withResolvers<void>();
  await using server = startHttp(() => {
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(encoder.encode("first,"));
        // Only a client that got the first chunk can let the second go: a
        // server that buffered the body would never answer.
        await deadline(firstRead.promise, "the client's first read");
        await sleep(20);
        controller.enqueue(encoder.encode("second,"));
        await sleep(20);
        controller.enqueue(encoder.encode("third"));
        controller.close();
      },
    });
    return new Response(body, { headers: { "content-type": "text/plain" } });
  });
  using client = Deno.createHttpClient({});
  const response = await deadline(
    fetch(`http://127.0.0.1:${server.addr.port}/stream`, { client }),
    "the streamed response",
  );
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("transfer-encoding"), "chunked");
  const reader = response.body!.getReader();
  const first = await deadline(reader.read(), "the first chunk");
  assert.equal(decoder.decode(first.value), "first,");
  firstRead.resolve();
  let rest = "";
  for (let r; !(r = await deadline(reader.read(), "a chunk")).done;) {
    rest += decoder.decode(r.value);
  }
  assert.equal(rest, "second,third");
});

Deno.test("a 1 MiB upload answered with its own body streams through both ways", async () => {
  await using server = startHttp((request) => new Response(request.body));
  using client = Deno.createHttpClient({});
  const sent = new Uint8Array(1 << 20).map((_, i) => i * 7);
  const response = await deadline(
    fetch(`http://127.0.0.1:${server.addr.port}/echo`, {
      method: "POST",
      body: sent,
      client,
    }),
    "the echo's head",
  );
  const back = new Uint8Array(
    await deadline(response.arrayBuffer(), "the echo"),
  );
  assert.equal(back.length, sent.length);
  assert.ok(back.every((byte, i) => byte === sent[i]), "the same bytes");
});

Deno.test("§9.3.2 HEAD gets GET's Content-Length and no body, and the connection goes on", async () => {
  await using server = startHttp(() => new Response("twelve bytes"));
  await using client = await RawClient.connect(server.addr.port);
  await client.write("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
  const head = await client.readResponse("HEAD");
  assert.equal(head.status, 200);
  assert.equal(head.headers.get("content-length"), "12");
  // Had a body followed the HEAD answer, it would be read as this status line.
  await client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  const get = await client.readResponse();
  assert.equal(get.status, 200);
  assert.equal(get.body, "twelve bytes");
});

Deno.test("§6.1 204 and 304 carry no body and no Transfer-Encoding", async () => {
  await using server = startHttp((request) =>
    new URL(request.url).pathname === "/204"
      ? new Response(null, { status: 204 })
      : new Response(null, { status: 304, headers: { etag: '"a"' } })
  );
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    "GET /204 HTTP/1.1\r\nHost: x\r\n\r\nGET /304 HTTP/1.1\r\nHost: x\r\n\r\nGET /204 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
  );
  for (const status of [204, 304, 204]) {
    const answer = await client.readResponse();
    assert.equal(answer.status, status);
    assert.equal(answer.headers.get("transfer-encoding"), null);
    assert.equal(answer.headers.get("content-length"), null);
  }
  assert.equal(await client.readEof(), true);
});

Deno.test("§10.1.1 Expect: 100-continue gets 100 Continue when fetch reads the body", async () => {
  await using server = startHttp(echoRequest);
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    "PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
  );
  assert.equal((await client.readResponse()).status, 100);
  await client.write("data");
  const answer = await client.readResponse();
  assert.equal(answer.status, 200);
  assert.equal(answer.body, "PUT /x data");
  assert.equal(answer.headers.get("connection"), null);
});

Deno.test("§10.1.1 a body held back for 100-continue that fetch never reads gets the answer without 100, then a close", async () => {
  await using server = startHttp(() => new Response("denied", { status: 401 }));
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
  );
  const answer = await client.readResponse();
  assert.equal(answer.status, 401);
  assert.equal(answer.headers.get("connection"), "close");
  assert.equal(await client.readEof(), true);
});

// --- Refusals: smuggling and limits (RFC 9112 §6.1, §11.2) ---

Deno.test("§6.1 Content-Length with Transfer-Encoding is refused with 400 and the connection closed", async () => {
  let called = false;
  await using server = startHttp(() => {
    called = true;
    return new Response("served");
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n" +
      "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
  );
  const answer = await client.readResponse();
  assert.equal(answer.status, 400);
  assert.equal(answer.headers.get("connection"), "close");
  assert.equal(await client.readEof(), true);
  assert.equal(called, false);
});

Deno.test("§3.2 two Host lines in a plain request are refused with 400", async () => {
  await using server = startHttp(() => new Response("served"));
  await using client = await RawClient.connect(server.addr.port);
  await client.write("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
  assert.equal((await client.readResponse()).status, 400);
  assert.equal(await client.readEof(), true);
});

Deno.test("a Content-Length over maxBodySize gets 413 before fetch runs, and the connection closes", async () => {
  let called = false;
  await using server = startHttp(() => {
    called = true;
    return new Response("served");
  }, { maxBodySize: 1000 });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n",
  );
  const answer = await client.readResponse();
  assert.equal(answer.status, 413);
  assert.equal(await client.readEof(), true);
  assert.equal(called, false);
});

Deno.test("a chunked body growing over maxBodySize gets 413, fetch's read fails, and the connection closes", async () => {
  const failed = Promise.withResolvers<unknown>();
  let errors = 0;
  await using server = startHttp(
    readingBody(failed, "read it all", { rethrow: true }),
    { maxBodySize: 1000, onError: () => errors++ },
  );
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
      `3e8\r\n${"a".repeat(1000)}\r\n1\r\nb\r\n0\r\n\r\n`,
  );
  const answer = await client.readResponse();
  assert.equal(answer.status, 413);
  assert.equal(answer.headers.get("connection"), "close");
  assert.ok(await deadline(failed.promise, "the read's failure"));
  assert.equal(await client.readEof(), true);
  assert.equal(errors, 0);
});

Deno.test("§9.1 a method Fetch forbids (TRACE) gets 501", async () => {
  await using server = startHttp(() => new Response("served"));
  await using client = await RawClient.connect(server.addr.port);
  await client.write("TRACE / HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal((await client.readResponse()).status, 501);
});

// --- Errors ---

Deno.test("a fetch that throws gets 500 without details, reported to onError", async () => {
  const reported: unknown[] = [];
  await using server = startHttp((request) => {
    if (new URL(request.url).pathname === "/sync") throw new Error("secret");
    return Promise.reject(new Error("secret too"));
  }, { onError: (error) => reported.push(error) });
  await using client = await RawClient.connect(server.addr.port);
  for (const path of ["/sync", "/async"]) {
    await client.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
    const answer = await client.readResponse();
    assert.equal(answer.status, 500);
    assert.ok(!answer.body.includes("secret"), answer.body);
  }
  assert.deepEqual(
    reported.map((error) => (error as Error).message),
    ["secret", "secret too"],
  );
});

Deno.test("a throwing onError goes to console.error and the server answers 500 all the same", async () => {
  await capturingConsoleError(async (logged) => {
    {
      await using server = startHttp(() => {
        throw new Error("app fault");
      }, {
        onError: () => {
          throw new Error("onError fault");
        },
      });
      await using client = await RawClient.connect(server.addr.port);
      await client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      assert.equal((await client.readResponse()).status, 500);
    }
    assert.equal(logged.length, 1);
    assert.ok(
      logged[0].some((arg) => (arg as Error)?.message === "app fault"),
    );
  });
});

Deno.test("a response body that errors midway closes the connection: the client sees a cut response", async () => {
  const reported: unknown[] = [];
  await using server = startHttp(() =>
    new Response(
      new ReadableStream({
        async pull(controller) {
          controller.enqueue(encoder.encode("partial"));
          await sleep(20);
          controller.error(new Error("stream broke"));
        },
      }),
    ), { onError: (error) => reported.push(error) });
  await using client = await RawClient.connect(server.addr.port);
  await client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  const all = await client.readAll();
  assert.ok(all.includes("transfer-encoding: chunked\r\n"), all);
  assert.ok(all.endsWith("\r\n\r\n7\r\npartial\r\n"), all);
  assert.equal((reported[0] as Error).message, "stream broke");
});

Deno.test("a Content-Length the body does not honour cuts the response and reports the fault", async () => {
  const reported: unknown[] = [];
  await using server = startHttp(() =>
    new Response(
      new ReadableStream({
        async pull(controller) {
          await sleep(10);
          controller.enqueue(encoder.encode("short"));
          controller.close();
        },
      }),
      { headers: { "content-length": "100" } },
    ), { onError: (error) => reported.push(error) });
  await using client = await RawClient.connect(server.addr.port);
  await client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  const all = await client.readAll();
  assert.ok(all.includes("content-length: 100\r\n"), all);
  assert.ok(all.endsWith("\r\n\r\nshort"), all);
  assert.ok(reported[0] instanceof RangeError, String(reported[0]));
});

// --- Options ---

Deno.test("the removed onRequest option is a TypeError that names fetch, alone or beside fetch; fetch keeps the connection alive", async () => {
  const removed = { onRequest: () => new Response("b") } as ServeOptions;
  assert.throws(() => start(removed), {
    name: "TypeError",
    message: "The onRequest option was removed: use fetch",
  });
  assert.throws(
    () => start({ ...removed, fetch: () => new Response("a") }),
    TypeError,
  );
  await using server = start({
    fetch: async (request) => new Response(await request.text()),
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody",
  );
  assert.equal((await client.readResponse()).body, "body");
  await client.write(
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok",
  );
  assert.equal((await client.readResponse()).body, "ok");
});

Deno.test("without fetch a plain request gets 426 and the connection closes", async () => {
  await using server = start();
  await using client = await RawClient.connect(server.addr.port);
  await client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  const answer = await client.readResponse();
  assert.equal(answer.status, 426);
  assert.equal(answer.headers.get("upgrade"), "websocket");
  assert.equal(await client.readEof(), true);
});

Deno.test("fetch sees the client's address in info.remoteAddr", async () => {
  await using server = startHttp((_request, info) =>
    new Response(`${info.remoteAddr.hostname}:${info.remoteAddr.port}`)
  );
  await using client = await RawClient.connect(server.addr.port);
  await client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  const local = client.conn.localAddr as Deno.NetAddr;
  assert.equal(
    (await client.readResponse()).body,
    `127.0.0.1:${local.port}`,
  );
});

// --- WebSockets beside HTTP ---

Deno.test("HTTP requests and a WebSocket from connect() share the port", async () => {
  await using server = startHttp(echoRequest);
  using http = Deno.createHttpClient({});
  const base = `http://127.0.0.1:${server.addr.port}`;
  const answer = await fetchText(http, `${base}/a`, {
    method: "POST",
    body: "x",
  });
  assert.equal(answer.body, "POST /a x");
  const socket = await deadline(
    connect(`ws://127.0.0.1:${server.addr.port}/ws`),
    "connect()",
  );
  try {
    socket.send("ping over ws");
    const reader = socket.readable.getReader();
    const echoed = await deadline(reader.read(), "the echo");
    assert.equal(echoed.value, "ping over ws");
    reader.releaseLock();
    assert.equal((await fetchText(http, `${base}/b`)).body, "GET /b ");
  } finally {
    socket.close();
    await deadline(socket.closed, "the socket's close");
  }
});

Deno.test("an upgrade after plain requests on one kept-alive connection opens a WebSocket", async () => {
  await using server = startHttp(() => new Response("plain"));
  const port = server.addr.port;
  await using client = await RawClient.connect(port);
  for (let i = 0; i < 2; i++) {
    await client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    const answer = await deadline(client.readHead(), "a plain answer");
    assert.equal(answer.status, 200);
    assert.equal(answer.body, "plain");
  }
  await client.write(upgradeRequest(port));
  assert.equal((await deadline(client.readHead(), "the 101")).status, 101);
  await client.write(frame(1, "after http"));
  const echoed = await deadline(client.readFrame(), "the echo");
  assert.equal(text(echoed!.payload), "after http");
});

Deno.test("a Hono app (GET and POST routes) and Deno's WebSocket share one port", async () => {
  const app = new Hono();
  app.get("/hello/:name", (c) => c.text(`Hello ${c.req.param("name")}`));
  app.post("/sum", async (c) => {
    const { a, b } = await c.req.json();
    return c.json({ sum: a + b }, 201);
  });
  await using server = start(
    { fetch: app.fetch },
    (socket) => socket.readable.pipeTo(socket.writable),
  );
  const base = `127.0.0.1:${server.addr.port}`;
  using http = Deno.createHttpClient({});
  const hello = await fetchText(http, `http://${base}/hello/deno`);
  assert.equal(hello.status, 200);
  assert.equal(hello.body, "Hello deno");
  const sum = await fetchText(http, `http://${base}/sum`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ a: 2, b: 3 }),
  });
  assert.equal(sum.status, 201);
  assert.deepEqual(JSON.parse(sum.body), { sum: 5 });
  assert.equal((await fetchText(http, `http://${base}/nope`)).status, 404);
  const ws = new WebSocket(`ws://${base}/live`);
  try {
    await deadline(
      new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = reject;
      }),
      "the WebSocket's open",
    );
    const message = new Promise<string>((resolve) => {
      ws.onmessage = (event) => resolve(event.data);
    });
    ws.send("hi hono");
    assert.equal(await deadline(message, "the echo"), "hi hono");
  } finally {
    const closed = new Promise((resolve) => ws.onclose = resolve);
    ws.close();
    await deadline(closed, "the WebSocket's close");
  }
});

Deno.test("https: fetch serves requests with bodies over TLS, kept alive, beside wss", async () => {
  const { ca, cert, key } = await makeCertificates();
  const ports = new Set<number>();
  await using server = start({
    cert,
    key,
    fetch: async (request, info) => {
      ports.add(info.remoteAddr.port);
      return new Response(`${request.url} ${await request.text()}`);
    },
  }, echo);
  const base = `https://localhost:${server.addr.port}`;
  using http = Deno.createHttpClient({ caCerts: [ca] });
  for (const body of ["one", "two"]) {
    const answer = await fetchText(http, `${base}/tls`, {
      method: "POST",
      body,
    });
    assert.equal(answer.body, `${base}/tls ${body}`);
  }
  assert.equal(ports.size, 1, "both requests came on one connection");
  const socket = await deadline(
    connect(`wss://localhost:${server.addr.port}/`, { caCerts: [ca] }),
    "connect() over TLS",
  );
  try {
    socket.send("secure");
    const reader = socket.readable.getReader();
    assert.equal((await deadline(reader.read(), "the echo")).value, "secure");
    reader.releaseLock();
  } finally {
    socket.close();
    await deadline(socket.closed, "the socket's close");
  }
});

// --- Shutdown ---

Deno.test("shutdown() closes an idle kept-alive connection at once", async () => {
  const server = startHttp(() => new Response("ok"), {
    keepAliveTimeout: 60_000,
    closeTimeout: 60_000,
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal((await client.readResponse()).body, "ok");
  // Far below both timeouts: only closing idle connections at once meets it.
  await deadline(server.shutdown(), "shutdown()", 5_000);
  assert.equal(await client.readEof(), true);
});

Deno.test("shutdown() lets a response in flight finish, with Connection: close", async () => {
  const started = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  const server = startHttp(async () => {
    started.resolve();
    await release.promise;
    return new Response("finished");
  }, { closeTimeout: 10_000 });
  await using client = await RawClient.connect(server.addr.port);
  await client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  await deadline(started.promise, "the request");
  const stopped = server.shutdown();
  release.resolve();
  const answer = await client.readResponse();
  assert.equal(answer.body, "finished");
  assert.equal(answer.headers.get("connection"), "close");
  await deadline(stopped, "shutdown()");
});

Deno.test("shutdown() cuts a response still streaming after closeTimeout", async () => {
  let timer: ReturnType<typeof setInterval> | undefined;
  const server = startHttp(() =>
    new Response(
      new ReadableStream({
        start(controller) {
          controller.enqueue(encoder.encode("tick"));
          timer = setInterval(() => {
            controller.enqueue(encoder.encode("tick"));
          }, 20);
        },
        cancel() {
          clearInterval(timer);
        },
      }),
    ), { closeTimeout: 200 });
  try {
    await using client = await RawClient.connect(server.addr.port);
    await client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    const buffer = new Uint8Array(4096);
    await deadline(client.conn.read(buffer), "the head and a first tick");
    await deadline(server.shutdown(), "shutdown()");
    const rest = await client.readAll();
    assert.ok(rest.endsWith("tick\r\n"), "the body was cut, not ended");
  } finally {
    clearInterval(timer);
  }
});

// --- Chunk sizes and memory (issue 19, item 1) ---

/** The bytes the heap and the array buffers hold now, after a collection. */
async function heldBytes(): Promise<number> {
  await collectGarbage();
  const { heapUsed, external } = Deno.memoryUsage();
  return heapUsed + external;
}

Deno.test("§7.1 a chunked body in 1-byte chunks reaches fetch in a piece per read, and what fetch holds of it stays proportional to its size", async () => {
  const size = 256 * 1024;
  const seen = Promise.withResolvers<
    { pieces: number; bytes: number; held: number }
  >();
  await using server = startHttp(async (request) => {
    const before = await heldBytes();
    const pieces: Uint8Array[] = [];
    for await (const piece of request.body!) pieces.push(piece);
    // What an app that buffers the body (request.arrayBuffer(), a JSON
    // parser's collect) keeps until it joins the pieces.
    const held = await heldBytes() - before;
    let bytes = 0;
    for (const piece of pieces) bytes += piece.length;
    seen.resolve({ pieces: pieces.length, bytes, held });
    return new Response("ok");
  });
  const oneByte = encoder.encode("1\r\nx\r\n");
  const wire = new Uint8Array(size * oneByte.length);
  for (let i = 0; i < size; i++) wire.set(oneByte, i * oneByte.length);
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
  );
  await client.write(wire);
  await client.write("0\r\n\r\n");
  assert.equal((await client.readResponse()).body, "ok");
  const { pieces, bytes, held } = await deadline(seen.promise, "the body");
  assert.equal(bytes, size);
  // One piece per read of the connection (16 KiB reads: ~2,700 data bytes
  // each here), not one per chunk (262,144 before).
  assert.ok(pieces <= wire.length / 512, `${pieces} pieces`);
  // The pieces' bytes and objects: before, ~150 bytes per data byte.
  assert.ok(held < 4 * size, `${held} bytes held for a ${size}-byte body`);
});

// --- Methods (RFC 9110 §9.1) ---

Deno.test("RFC 9110 §9.1 a lower-case head is another method than HEAD: its answer has a body, and a request pipelined after it is answered in step", async () => {
  await using server = startHttp((request) =>
    new Response(`${request.method} body`)
  );
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    "head / HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n",
  );
  // Fetch's Request normalizes the name; the framing follows the token.
  const first = await client.readResponse("head");
  assert.equal(first.status, 200);
  assert.equal(first.body, "HEAD body");
  const second = await client.readResponse();
  assert.equal(second.body, "GET body");
});

Deno.test("RFC 9110 §15.2 a Response with status 101 from fetch is no answer: 500, reported to onError", async () => {
  const errors: unknown[] = [];
  await using server = startHttp(
    () => new Response(null, { status: 101, headers: { upgrade: "x" } }),
    { onError: (error) => errors.push(error) },
  );
  await using client = await RawClient.connect(server.addr.port);
  await client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  const answer = await client.readResponse();
  assert.equal(answer.status, 500);
  assert.equal(answer.headers.get("upgrade"), null);
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof TypeError, String(errors[0]));
  assert.match(String(errors[0]), /101/);
  // The connection goes on.
  await client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal((await client.readResponse()).status, 500);
});

// --- A client that leaves (issue 19, item 4) ---

/** A response body that sends one event, then waits, counting its cancels. */
function waitingEvents(cancelled: { count: number }): Response {
  return new Response(
    new ReadableStream({
      start(controller) {
        controller.enqueue(encoder.encode("data: first\n\n"));
      },
      cancel() {
        cancelled.count++;
      },
    }),
    { headers: { "content-type": "text/event-stream" } },
  );
}

Deno.test("a streamed response waiting for data: the client's FIN or reset cancels the body, aborts request.signal and frees the connection", async () => {
  const cancelled = { count: 0 };
  let aborted = 0;
  const server = startHttp((request) => {
    request.signal.addEventListener("abort", () => aborted++);
    return waitingEvents(cancelled);
  }, { closeTimeout: 60_000 });
  try {
    const count = 20;
    for (let i = 0; i < count; i++) {
      await using client = await RawClient.connect(server.addr.port);
      await client.write("GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
      const answer = await client.readHead();
      assert.equal(answer.status, 200);
      // Half of them half-close and wait: the server must close its side.
      if (i % 2 === 0) {
        await client.conn.closeWrite();
        const rest = await client.readAll();
        assert.ok(rest.includes("data: first"), rest);
      }
    }
    await waitFor(
      () => cancelled.count === count && aborted === count,
      "every body cancelled and every signal aborted",
    );
  } finally {
    // The connections are gone: nothing is left for the shutdown to wait
    // for, far below closeTimeout.
    await deadline(server.shutdown(), "shutdown()", 5_000);
  }
});

Deno.test("a long poll whose handler has not answered yet: the client leaving aborts request.signal", async () => {
  const called = Promise.withResolvers<void>();
  const aborted = Promise.withResolvers<unknown>();
  await using server = startHttp(async (request) => {
    called.resolve();
    await new Promise((resolve) =>
      request.signal.addEventListener("abort", resolve)
    );
    aborted.resolve(request.signal.reason);
    return new Response("too late");
  });
  {
    await using client = await RawClient.connect(server.addr.port);
    await client.write("GET /poll HTTP/1.1\r\nHost: x\r\n\r\n");
    await deadline(called.promise, "the handler");
  }
  const reason = await deadline(aborted.promise, "request.signal's abort");
  assert.ok(reason instanceof DOMException, String(reason));
  assert.equal(reason.name, "AbortError");
});

Deno.test("shutdown() with a streamed response waiting for data resolves within closeTimeout, cancelling the body and aborting request.signal", async () => {
  const cancelled = { count: 0 };
  let aborted = 0;
  const server = startHttp((request) => {
    request.signal.addEventListener("abort", () => aborted++);
    return waitingEvents(cancelled);
  }, { closeTimeout: 200 });
  await using client = await RawClient.connect(server.addr.port);
  await client.write("GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal((await client.readHead()).status, 200);
  const start = performance.now();
  await deadline(server.shutdown(), "shutdown()", 5_000);
  // closeTimeout, plus at most one sweep of the deadlines and some slack.
  assert.ok(performance.now() - start < 2_000);
  assert.equal(cancelled.count, 1);
  assert.equal(aborted, 1);
  assert.ok((await client.readAll()).includes("data: first"));
});

Deno.test("a streamed response the client stops reading is cut after idleTimeout: the body is cancelled and request.signal aborts", async () => {
  const cancelled = Promise.withResolvers<void>();
  const aborted = Promise.withResolvers<void>();
  const chunk = new Uint8Array(64 * 1024);
  await using server = startHttp((request) => {
    request.signal.addEventListener("abort", () => aborted.resolve());
    return new Response(
      new ReadableStream({
        pull(controller) {
          controller.enqueue(chunk);
        },
        cancel() {
          cancelled.resolve();
        },
      }),
    );
  }, { idleTimeout: 300 });
  await using client = await RawClient.connect(server.addr.port);
  await client.write("GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
  // The client reads nothing: the server's writes stall once the buffers
  // are full.
  await deadline(cancelled.promise, "the body's cancel");
  await deadline(aborted.promise, "request.signal's abort");
});

// --- Caps on plain HTTP (issue 19, item 6) ---

Deno.test("over maxHttpConnections the oldest idle kept-alive connection is closed to make room, and the new one is served", async () => {
  await using server = startHttp(() => new Response("ok"), {
    maxHttpConnections: 2,
    keepAliveTimeout: 60_000,
  });
  const port = server.addr.port;
  await using first = await RawClient.connect(port);
  await first.write("GET /1 HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal((await first.readResponse()).body, "ok");
  await using second = await RawClient.connect(port);
  await second.write("GET /2 HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal((await second.readResponse()).body, "ok");
  await using third = await RawClient.connect(port);
  await third.write("GET /3 HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal((await third.readResponse()).body, "ok");
  assert.equal(await first.readEof(), true, "the oldest idle one is closed");
  await second.write("GET /2 HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal((await second.readResponse()).body, "ok");
});

Deno.test("over maxHttpConnections with none idle, a new connection gets 503 with Retry-After: 1; WebSockets do not count", async () => {
  const release = Promise.withResolvers<void>();
  let started = 0;
  await using server = startHttp(async () => {
    started++;
    await release.promise;
    return new Response("ok");
  }, { maxHttpConnections: 2 });
  const port = server.addr.port;
  // A WebSocket first: it is not an HTTP connection once open.
  await using socket = await RawClient.open(port);
  const busy: RawClient[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const client = await RawClient.connect(port);
      busy.push(client);
      await client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    await waitFor(() => started === 2, "both requests in the handler");
    await using third = await RawClient.connect(port);
    await third.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    const refused = await third.readResponse();
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get("retry-after"), "1");
    assert.equal(await third.readEof(), true);
    release.resolve();
    for (const client of busy) {
      assert.equal((await client.readResponse()).body, "ok");
    }
  } finally {
    release.resolve();
    for (const client of busy) client.close();
  }
  await socket.write(frame(1, "still open"));
  assert.equal(text((await socket.readFrame())!.payload), "still open");
});

Deno.test("a request body trickling past bodyTimeout fails with TimedOut, though each piece comes within idleTimeout", async () => {
  const failed = Promise.withResolvers<unknown>();
  await using server = startHttp(readingBody(failed, "late"), {
    bodyTimeout: 300,
    idleTimeout: 5_000,
  });
  await using client = await RawClient.connect(server.addr.port);
  await client.write(
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
  );
  let sent = 0;
  const trickle = (async () => {
    try {
      while (sent < 1000) {
        await client.write("x");
        sent++;
        await sleep(20);
      }
    } catch {
      // The server closed the connection.
    }
  })();
  const error = await deadline(failed.promise, "the slow body's failure");
  assert.ok(error instanceof Deno.errors.TimedOut, String(error));
  assert.match((error as Error).message, /bodyTimeout/);
  assert.ok(sent < 100, `${sent} bytes sent before the timeout`);
  assert.equal(await client.readEof(), true);
  await trickle;
});

Deno.test("RFC 9110 §15.6.4 a fetch that does not answer within idleTimeout gets 503, then the connection closes", async () => {
  await using local = serveLocal({ idleTimeout: 300, fetch: never });
  await using client = await RawClient.connect(local.port);
  await client.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  const answer = await deadline(client.readHead(), "the answer");
  assert.equal(answer.status, 503);
  assert.equal(await deadline(client.readEof(), "EOF"), true);
});

// --- RFC 9110 §8.6 framing of bodiless answers, byte for byte ----------------------

/**
 * Sends a request and reads the whole answer as it came, up to the server's
 * close: for answers after which the server closes the connection.
 */
async function exchange(port: number, request: string): Promise<WireAnswer> {
  await using client = await RawClient.connect(port);
  await client.write(request);
  return parseAnswer(await client.readAllBytes());
}

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
  assert.deepEqual(headerValues(answer, "content-length"), []);
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
  assert.deepEqual(headerValues(head, "content-length"), ["10"]);
  assert.equal(head.body.length, 0);
  const sized = await exchange(
    local.port,
    `HEAD /sized HTTP/1.1\r\nHost: x\r\n${close}`,
  );
  assert.deepEqual(headerValues(sized, "content-length"), ["10"]);
  assert.equal(sized.body.length, 0);
  const get = await exchange(
    local.port,
    `GET / HTTP/1.1\r\nHost: x\r\n${close}`,
  );
  assert.deepEqual(headerValues(get, "content-length"), ["10"]);
  assert.equal(text(get.body), "hello body");
});
