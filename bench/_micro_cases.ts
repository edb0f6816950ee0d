/**
 * The micro benchmark cases, shared by `micro_bench.ts` (which registers them
 * with `Deno.bench`) and `run.ts` (which turns their times into bytes/s).
 *
 * @module
 */
import { computeAccept } from "../src/engine/_accept_value.ts";
import { requestUrl, takeRequestHead } from "../src/http/_http1.ts";
import {
  ServerHandshake,
  type UpgradeRequest,
} from "../src/protocol/_server_handshake.ts";
import {
  encodeFrame,
  FrameDecoder,
  type FrameHandler,
} from "../src/protocol/frame.ts";
import { applyMask } from "../src/protocol/mask.ts";
import { MessageAssembler } from "../src/protocol/message_assembler.ts";
import { fragmentPayload, pseudoRandomBytes } from "../tests/_util.ts";
import { subscriptionsOf, TopicHub } from "../src/pubsub/topic_hub.ts";
import { encodeMaskedFrame, HANDSHAKE_ACCEPT, HANDSHAKE_KEY } from "./load.ts";
import { acceptValue } from "./servers/_floor.ts";

/** One micro benchmark. */
export interface MicroCase {
  /** What `Deno.bench` calls it. */
  name: string;
  /** `decode`, `unmask`, `encode`, `reassemble`, `handshake` or `hub`. */
  group: string;
  /** Payload bytes handled per iteration. */
  bytes: number;
  /** Frames handled per iteration. */
  frames: number;
  /** One iteration (`Deno.bench` awaits a promise it returns). */
  fn: () => void;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const KEY = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);

/** A handler that only counts, so that the decoder's own cost is measured. */
class _CountingHandler implements FrameHandler {
  frames = 0;
  bytes = 0;
  onFrameStart(): void {
    this.frames++;
  }
  onFramePayload(bytes: Uint8Array): void {
    this.bytes += bytes.length;
  }
  onFrameEnd(): void {}
}

function _size(bytes: number): string {
  return bytes >= MiB
    ? `${bytes / MiB} MiB`
    : bytes >= KiB
    ? `${bytes / KiB} KiB`
    : `${bytes} B`;
}

/**
 * Decoding `count` masked client frames of `size` bytes that arrive in
 * `chunkSize`-byte reads (the server's side). The decoder unmasks in place,
 * so every iteration XORs the same buffer again: the work is the same.
 */
function _decodeCase(
  size: number,
  count: number,
  chunkSize = Infinity,
): MicroCase {
  const frame = encodeMaskedFrame(2, pseudoRandomBytes(size, 1), KEY);
  const stream = new Uint8Array(frame.length * count);
  for (let i = 0; i < count; i++) stream.set(frame, i * frame.length);
  const chunks: Uint8Array[] = [];
  for (let at = 0; at < stream.length; at += chunkSize) {
    chunks.push(stream.subarray(at, Math.min(at + chunkSize, stream.length)));
  }
  const handler = new _CountingHandler();
  const decoder = new FrameDecoder(handler, { role: "server" });
  const framesText = count === 1 ? "frame" : `${count} × ${_size(size)} frames`;
  const name = count === 1
    ? `decode ${_size(size)} frame` +
      (chunks.length > 1 ? ` in ${_size(chunkSize)} reads` : "")
    : `decode ${framesText}`;
  return {
    name,
    group: "decode",
    bytes: size * count,
    frames: count,
    fn: () => {
      for (const chunk of chunks) decoder.push(chunk);
    },
  };
}

function _unmaskCase(size: number, offset: number): MicroCase {
  const buffer = pseudoRandomBytes(size + offset, 1);
  const data = buffer.subarray(offset);
  return {
    name: `applyMask ${_size(size)}` + (offset ? ", unaligned" : ""),
    group: "unmask",
    bytes: size,
    frames: 1,
    fn: () => applyMask(data, KEY),
  };
}

function _encodeCase(size: number, masked: boolean): MicroCase {
  const frame = { fin: true, opcode: 2, payload: pseudoRandomBytes(size, 1) };
  return {
    name: `encodeFrame ${_size(size)}` + (masked ? ", masked" : ""),
    group: "encode",
    bytes: size,
    frames: 1,
    fn: masked ? () => encodeFrame(frame, KEY) : () => encodeFrame(frame),
  };
}

/**
 * Reassembling one `size`-byte message of `kind` (`text`: UTF-8 with 1- to
 * 4-byte characters; `binary`) sent in `fragment`-byte frames, as masked
 * client frames read 64 KiB at a time: decoder, assembler, UTF-8 check and
 * decoding. The masking key is zero, so that unmasking in place leaves the
 * bytes as they were for the next iteration.
 */
function _reassembleCase(
  kind: "text" | "binary",
  size: number,
  fragment: number,
): MicroCase {
  const payload = fragmentPayload(kind, size);
  const zero = new Uint8Array(4);
  const frames: Uint8Array[] = [];
  for (let at = 0; at < size; at += fragment) {
    frames.push(encodeFrame({
      fin: at + fragment >= size,
      opcode: at === 0 ? (kind === "text" ? 1 : 2) : 0,
      payload: payload.subarray(at, at + fragment),
    }, zero));
  }
  const stream = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
  let at = 0;
  for (const frame of frames) {
    stream.set(frame, at);
    at += frame.length;
  }
  const chunks: Uint8Array[] = [];
  for (let at = 0; at < stream.length; at += 64 * KiB) {
    chunks.push(stream.subarray(at, at + 64 * KiB));
  }
  let received = 0;
  const assembler = new MessageAssembler({
    onMessage: (message) => received += message.length,
    onControl: () => {},
  });
  const decoder = new FrameDecoder(assembler, { role: "server" });
  return {
    name: `reassemble ${_size(size)} ${kind} in ${_size(fragment)} fragments`,
    group: "reassemble",
    bytes: size,
    frames: frames.length,
    fn: () => {
      for (const chunk of chunks) decoder.push(chunk);
    },
  };
}

/**
 * The server's opening handshake without I/O: the `Sec-WebSocket-Accept`
 * value alone (SHA-1 by WebCrypto, one awaited at a time; and by
 * `node:crypto`'s synchronous `createHash`, which the module does not use,
 * for comparison), and the whole decision for a browser's upgrade head (the
 * head parser, the URL, the checks, the 101 with a given accept value).
 * "Payload" is the bytes hashed or parsed; a "frame" is one handshake.
 */
function _handshakeCases(): MicroCase[] {
  const key = HANDSHAKE_KEY;
  const head = new TextEncoder().encode(
    "GET /chat HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\n" +
      "Pragma: no-cache\r\nCache-Control: no-cache\r\n" +
      "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36\r\n" +
      "Upgrade: websocket\r\nOrigin: https://example.com\r\n" +
      `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\n` +
      "Accept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.9\r\n" +
      "Sec-WebSocket-Protocol: chat.v2, chat.v1\r\n\r\n",
  );
  const handshake = new ServerHandshake({
    origins: ["https://example.com"],
    protocols: ["chat.v1"],
  });
  const request = () => new Request("http://example.com/chat");
  return [
    {
      name: "computeAccept (SHA-1 by WebCrypto)",
      group: "handshake",
      bytes: key.length + 36,
      frames: 1,
      fn: async () => void await computeAccept(key),
    },
    {
      name: "accept value by node:crypto's createHash, for comparison",
      group: "handshake",
      bytes: key.length + 36,
      frames: 1,
      fn: () => void acceptValue(key),
    },
    {
      name: "upgrade head to 101: parse, URL, check, accept",
      group: "handshake",
      bytes: head.length,
      frames: 1,
      fn: () => {
        const taken = takeRequestHead(head)!;
        requestUrl(taken.head, "http://127.0.0.1:80");
        const checked = handshake.check(taken.head) as UpgradeRequest;
        handshake.accept(checked, { request, acceptValue: HANDSHAKE_ACCEPT });
      },
    },
  ];
}

/**
 * `TopicHub.publish` of 64 B text to `subscribers` that take it and do
 * nothing (no socket, no frame), on a topic without history or keeping its
 * last 1,000 in memory (as bench/servers/ours_fanout.ts `--history`): what
 * history adds to each publication, apart from the deliveries (with one
 * subscriber; with many, the loop over them varies more than that).
 */
function _hubCase(subscribers: number, history: boolean): MicroCase {
  const hub = new TopicHub(
    history ? { history: { size: 1000, ttl: 600_000 } } : {},
  );
  for (let i = 0; i < subscribers; i++) {
    subscriptionsOf(hub).subscribe({ offer: () => true }, "t");
  }
  const message = "x".repeat(64);
  return {
    name: `hub publish 64 B to ${subscribers.toLocaleString("en-US")}, ${
      history ? "history in memory" : "no history"
    }`,
    group: "hub",
    bytes: message.length,
    frames: 1,
    fn: () => void hub.publish("t", message),
  };
}

/** Every micro benchmark, in the order they run. */
export const MICRO_CASES: MicroCase[] = [
  _decodeCase(16, 1024),
  _decodeCase(KiB, 64),
  _decodeCase(64 * KiB, 1),
  _decodeCase(MiB, 1),
  _decodeCase(MiB, 1, 64 * KiB),
  _unmaskCase(16, 0),
  _unmaskCase(64 * KiB, 0),
  _unmaskCase(MiB, 0),
  _unmaskCase(MiB, 1),
  _encodeCase(16, false),
  _encodeCase(KiB, false),
  _encodeCase(64 * KiB, false),
  _encodeCase(MiB, false),
  _encodeCase(KiB, true),
  _reassembleCase("text", MiB, 1),
  _reassembleCase("binary", MiB, 1),
  _reassembleCase("text", MiB, 64),
  _reassembleCase("text", MiB, 64 * KiB),
  ..._handshakeCases(),
  _hubCase(1, false),
  _hubCase(1, true),
];
