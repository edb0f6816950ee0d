// RFC 6455 §5.4 fragmentation end to end over TCP: reassembly stays linear
// however finely a message is cut, a server keeps answering others while a
// message in millions of fragments arrives, and maxFragments. The rules of
// reassembly themselves are tested without sockets in
// message_assembler_test.ts and protocol_test.ts.

import assert from "node:assert/strict";
import { cpuUsage } from "node:process";
import { RawClient, roundTrip, text } from "./_raw_client.ts";
import { fragments, frame, type WireFrame } from "./_wire.ts";
import {
  assertBytesEqual,
  deadline,
  fragmentPayload,
  pseudoRandomBytes,
  serveLocal,
  waitFor,
} from "./_util.ts";

const MiB = 1024 * 1024;
const encoder = new TextEncoder();

/**
 * Runs `fn` while `Uint8Array.prototype.set` and `slice` count the bytes
 * they copy: a deterministic measure of reassembly work, unlike CPU time on
 * a shared machine. The prototype is restored whatever happens.
 */
async function countingCopies<T>(
  fn: () => Promise<T>,
): Promise<{ result: T; copied: number; cpuMs: number }> {
  const proto = Uint8Array.prototype;
  const set = proto.set;
  const slice = proto.slice;
  let copied = 0;
  Object.defineProperty(proto, "set", {
    configurable: true,
    writable: true,
    value: function (
      this: Uint8Array,
      source: ArrayLike<number>,
      offset?: number,
    ): void {
      copied += source.length;
      set.call(this, source, offset);
    },
  });
  Object.defineProperty(proto, "slice", {
    configurable: true,
    writable: true,
    value: function (
      this: Uint8Array,
      begin?: number,
      end?: number,
    ): Uint8Array {
      const out = slice.call(this, begin, end);
      copied += out.length;
      return out;
    },
  });
  const before = cpuUsage();
  try {
    const result = await fn();
    const cpu = cpuUsage(before);
    return { result, copied, cpuMs: (cpu.user + cpu.system) / 1000 };
  } finally {
    // Both are inherited from %TypedArray%.prototype: drop the own ones.
    Reflect.deleteProperty(proto, "set");
    Reflect.deleteProperty(proto, "slice");
  }
}

/** Sends `bytes` (a whole message) and reads the echoed frame. */
async function echoOver(
  client: RawClient,
  bytes: Uint8Array,
): Promise<WireFrame> {
  const [, echoed] = await Promise.all([
    client.write(bytes),
    client.readFrame(),
  ]);
  assert.ok(echoed, "an echo, not the end of the connection");
  return echoed;
}

Deno.test("§5.4 a 16 MiB binary message in 1,024 fragments of 16 KiB is echoed over TCP with reassembly copies linear in its size", async () => {
  await using local = serveLocal();
  await using client = await RawClient.open(local.port);
  const message = pseudoRandomBytes(16 * MiB);
  const whole = frame(2, message);
  const pieces = fragments(2, message, 16 * 1024);

  const one = await countingCopies(() => echoOver(client, whole));
  const many = await countingCopies(() => echoOver(client, pieces));
  console.log(
    `16 MiB echo: one frame ${(one.copied / MiB).toFixed(1)} MiB copied, ` +
      `${one.cpuMs.toFixed(0)} ms CPU; 1,024 fragments ${
        (many.copied / MiB).toFixed(1)
      } MiB copied, ${many.cpuMs.toFixed(0)} ms CPU`,
  );
  for (const { result } of [one, many]) {
    assert.equal(result.opcode, 2);
    assert.equal(result.fin, true);
    assertBytesEqual(result.payload, message, "the echo");
  }
  // Quadratic reassembly copied ~8 GiB here (each fragment re-copied all
  // before it); linear reassembly copies each fragment once, plus a few
  // copies of the message as its buffer grows.
  assert.ok(
    many.copied <= 4 * message.length,
    `1,024 fragments copied ${many.copied} bytes, one frame ${one.copied}`,
  );
});

Deno.test("§5.4 a 4 MiB message in 64-byte fragments (65,536 of them) is echoed, text and binary (Autobahn 9.3.1, 9.4.1 style)", async () => {
  await using local = serveLocal();
  await using client = await RawClient.open(local.port);
  // Text with 2-, 3- and 4-byte characters, so that fragments cut them.
  const unit = "abcd\u00e9\u20ac\u{1F600}xyz"; // 16 bytes of UTF-8
  const textMessage = unit.repeat((4 * MiB) / 16);
  const textBytes = encoder.encode(textMessage);
  assert.equal(textBytes.length, 4 * MiB);
  const binary = pseudoRandomBytes(4 * MiB);

  const echoedText = await deadline(
    echoOver(client, fragments(1, textBytes, 64)),
    "text echo",
    60_000,
  );
  assert.equal(echoedText.opcode, 1);
  assertBytesEqual(echoedText.payload, textBytes, "the text echo");
  const echoedBinary = await deadline(
    echoOver(client, fragments(2, binary, 64)),
    "binary echo",
    60_000,
  );
  assert.equal(echoedBinary.opcode, 2);
  assertBytesEqual(echoedBinary.payload, binary, "the binary echo");
});

Deno.test("§10.4 a message in more than maxFragments frames fails with 1008 Too many fragments, and other connections are still served", async () => {
  await using local = serveLocal({ maxFragments: 1000 });
  await using client = await RawClient.open(local.port);
  const frames = fragments(2, pseudoRandomBytes(4 * MiB), 64);
  // The first 1,100 fragments (70 bytes each on the wire): 100 too many.
  await client.write(frames.subarray(0, 1100 * 70)).catch(() => {});
  const { code, reason } = await deadline(
    client.readUntilClose(),
    "close frame",
  );
  assert.equal(code, 1008);
  assert.equal(reason, "Too many fragments");
  await using other = await RawClient.open(local.port);
  assert.equal(await roundTrip(other, "server still up"), "server still up");
});

/**
 * Has another process send a `size`-byte message of `kind` (`text`,
 * `binary`, or `compressed` binary) in `fragment`-byte fragments (1-byte
 * ones are seven bytes of frame each) as fast as TCP takes them, and a
 * second client ping the server once the sender's first MiB is on its way. Returns whether the
 * message was still arriving when the pong came, and the message.
 *
 * Decoding a few million frames takes the server a second or more, and
 * the pong must not wait for it. The test's own code, the sender's progress
 * report included, only runs when the server lets the event loop go on: a
 * connection that kept it for the whole message makes the ping go out, and
 * the pong come back, only after the message is delivered. Also returns
 * how many `TextDecoder` calls the process made meanwhile.
 */
async function pingWhileFragmentsArrive(
  kind: "text" | "binary" | "compressed",
  size: number,
  fragment = 1,
): Promise<
  { inFlight: boolean; message: string | Uint8Array; decodes: number }
> {
  const messages: (string | Uint8Array)[] = [];
  await using local = serveLocal(
    { perMessageDeflate: kind === "compressed" },
    async (socket) => {
      for await (const message of socket.readable) messages.push(message);
    },
  );
  await using pinger = await RawClient.open(local.port);
  const fixture = new URL("./_fixtures/fragment_sender.ts", import.meta.url);
  const sender = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      fixture.pathname,
      `${local.port}`,
      kind,
      `${size}`,
      `${fragment}`,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = sender.stdout.pipeThrough(new TextDecoderStream())
    .getReader();
  const decode = TextDecoder.prototype.decode;
  let decodes = 0;
  TextDecoder.prototype.decode = function (...args) {
    decodes++;
    return decode.apply(this, args);
  };
  try {
    const { value } = await deadline(lines.read(), "the sender's first MiB");
    assert.equal(value?.trim(), "sending");
    assert.equal(messages.length, 0, "the message is still arriving");
    await pinger.write(frame(9, "still there?"));
    const pong = await deadline(pinger.readFrame(), "the pong");
    const inFlight = messages.length === 0;
    assert.equal(pong?.opcode, 10);
    assert.equal(text(pong.payload), "still there?");
    await waitFor(() => messages.length > 0, "the message", 60_000);
    assert.equal(messages.length, 1);
    return { inFlight, message: messages[0], decodes };
  } finally {
    TextDecoder.prototype.decode = decode;
    await lines.cancel();
    try {
      sender.kill("SIGKILL");
    } catch {
      // It exited by itself.
    }
    await sender.status;
  }
}

Deno.test("§5.4 a 4 MiB text message in 1-byte fragments is delivered whole, and another client's ping is answered while it arrives", async () => {
  const { inFlight, message, decodes } = await pingWhileFragmentsArrive(
    "text",
    4 * MiB,
  );
  assert.equal(typeof message, "string");
  assert.equal(
    message,
    new TextDecoder().decode(fragmentPayload("text", 4 * MiB)),
  );
  assert.ok(inFlight, "the pong waited for the whole message");
  // Not a decoder call per fragment (4 million), nor a string piece each:
  // the text is decoded in pieces of up to 64 KiB.
  assert.ok(decodes <= 256, `${decodes} TextDecoder calls`);
});

for (
  const [kind, name] of [
    ["binary", "§5.4 a 4 MiB binary message"],
    // Random bytes hardly compress: about 4 million fragments.
    ["compressed", "RFC 7692 a 4 MiB compressed message"],
  ] as const
) {
  Deno.test(`${name} in 1-byte fragments is delivered whole, and another client's ping is answered while it arrives`, async () => {
    const { inFlight, message } = await pingWhileFragmentsArrive(kind, 4 * MiB);
    assert.ok(message instanceof Uint8Array);
    assertBytesEqual(message, fragmentPayload(kind, 4 * MiB), "the message");
    assert.ok(inFlight, "the pong waited for the whole message");
  });
}

Deno.test("§5.4 a 16 MiB binary message in 64-byte fragments is delivered whole, and another client's ping is answered while it arrives", async () => {
  // A read holds a few thousand of these frames and ends no message: the
  // frames are counted across reads.
  const { inFlight, message } = await pingWhileFragmentsArrive(
    "binary",
    16 * MiB,
    64,
  );
  assert.ok(message instanceof Uint8Array);
  assertBytesEqual(message, fragmentPayload("binary", 16 * MiB), "the message");
  assert.ok(inFlight, "the pong waited for the whole message");
});
