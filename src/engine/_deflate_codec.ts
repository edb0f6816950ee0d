// The permessage-deflate codec (RFC 7692 §7.2): node:zlib streams that
// compress and inflate one message at a time, keeping the LZ77 window
// across messages unless negotiated off.

import { CloseCode } from "../protocol/constants.ts";
import zlib from "node:zlib";
import { concat } from "../protocol/_bytes.ts";
import { Utf8Text } from "../protocol/_utf8.ts";
import type { Message } from "../protocol/message_assembler.ts";
import {
  DEFAULT_THRESHOLD,
  type DeflateSettings,
} from "../protocol/permessage_deflate.ts";
import { WebSocketError } from "../protocol/websocket_error.ts";

/** What RFC 7692 §7.2.1 strips from each message and §7.2.2 appends back. */
const TRAILER = new Uint8Array([0x00, 0x00, 0xff, 0xff]);

/**
 * The permessage-deflate codec of one connection (RFC 7692 §7.2): a
 * compressor for the messages it sends and a decompressor for those it
 * receives, each a zlib stream kept across messages for context takeover
 * unless negotiated off.
 *
 * The zlib streams are `node:zlib`'s streaming API, which is asynchronous:
 * it is the only public API that can sync-flush and keep the LZ77 window
 * across messages. One message at a time goes through each direction (the
 * caller serializes), since a stream's output cannot be told apart between
 * overlapping messages. The streams are created on first use (a compressor
 * costs about 230 KiB, a decompressor about 40 KiB) and closed by `close()`.
 */
export class DeflateCodec {
  /** Outbound messages of at least this many bytes are compressed. */
  readonly threshold: number;
  /**
   * The settings of a compressed frame that this connection may take as
   * shared with others (a server with no context takeover, RFC 7692
   * §7.1.1.1: each message starts from an empty window); null otherwise.
   */
  readonly shared: { windowBits: number; level: number } | null;
  #deflater: Deflater | null;
  #inflater: Inflater;

  /**
   * @param role Which side this connection is.
   * @param settings The negotiated parameters and local options.
   * @param maxMessageSize The largest inflated message accepted.
   */
  constructor(
    role: "server" | "client",
    settings: DeflateSettings,
    maxMessageSize: number,
  ) {
    const { params, options } = settings;
    const server = role === "server";
    const ownBits = server
      ? params.serverMaxWindowBits
      : params.clientMaxWindowBits;
    const peerBits = server
      ? params.clientMaxWindowBits
      : params.serverMaxWindowBits;
    const level = options.level ?? zlib.constants.Z_DEFAULT_COMPRESSION;
    // A client told to use an 8-bit window, which zlib cannot deflate with,
    // sends every message uncompressed: RFC 7692 lets a sender compress
    // none of its messages.
    this.#deflater = ownBits < 9 ? null : new Deflater(
      ownBits,
      server ? params.serverNoContextTakeover : params.clientNoContextTakeover,
      level,
    );
    this.threshold = this.#deflater === null
      ? Infinity
      : options.threshold ?? DEFAULT_THRESHOLD;
    this.shared = server && params.serverNoContextTakeover
      ? {
        windowBits: ownBits,
        level,
      }
      : null;
    // A decompressor window at least as big as the peer's is all it takes;
    // 9 bits at least, for peers whose zlib turns a requested 8 into 9.
    this.#inflater = new Inflater(
      Math.max(peerBits, 9),
      server ? params.clientNoContextTakeover : params.serverNoContextTakeover,
      maxMessageSize,
    );
  }

  /**
   * Compresses one message: DEFLATE with a sync flush, the trailing
   * `00 00 ff ff` removed (§7.2.1). One call at a time.
   */
  compress(data: Uint8Array): Promise<Uint8Array> {
    return this.#deflater!.compress(data);
  }

  /**
   * Decompresses one message from its payload, validating text as
   * UTF-8 as it comes out and refusing to inflate past the size limit
   * (rejects with a {@linkcode WebSocketError}: 1007 for corrupt data or
   * invalid UTF-8, 1009 past the limit). One call at a time.
   */
  inflate(text: boolean, payload: Uint8Array): Promise<Message> {
    return this.#inflater.inflate(text, payload);
  }

  /** Frees the compressor; a pending or later `compress` rejects. */
  closeDeflater(): void {
    this.#deflater?.close();
  }

  /** Frees the decompressor; a pending or later `inflate` rejects. */
  closeInflater(): void {
    this.#inflater.close();
  }
}

/** An error for a compressor or decompressor used after `close()`. */
function closedError(): WebSocketError {
  return new WebSocketError("The connection is closed", {
    closeCode: CloseCode.AbnormalClosure,
  });
}

class Deflater {
  #windowBits: number;
  #noContextTakeover: boolean;
  #level: number;
  #stream: zlib.DeflateRaw | null = null;
  #chunks: Uint8Array[] = [];
  #size = 0;
  #reject: ((error: unknown) => void) | null = null;
  #closed = false;

  constructor(windowBits: number, noContextTakeover: boolean, level: number) {
    this.#windowBits = windowBits;
    this.#noContextTakeover = noContextTakeover;
    this.#level = level;
  }

  compress(data: Uint8Array): Promise<Uint8Array> {
    if (this.#closed) return Promise.reject(closedError());
    const stream = this.#stream ??= this.#open();
    return new Promise((resolve, reject) => {
      this.#reject = reject;
      stream.write(data);
      stream.flush(zlib.constants.Z_SYNC_FLUSH, (error?: Error | null) => {
        this.#reject = null;
        const chunks = this.#chunks;
        const size = this.#size;
        this.#chunks = [];
        this.#size = 0;
        if (this.#closed) return reject(closedError());
        if (error) return reject(error);
        const out = concat(chunks, size);
        // A sync flush ends with an empty stored block, 00 00 ff ff (§7.2.1).
        if (this.#noContextTakeover) stream.reset();
        resolve(out.subarray(0, out.length - TRAILER.length));
      });
    });
  }

  #open(): zlib.DeflateRaw {
    const stream = zlib.createDeflateRaw({
      windowBits: this.#windowBits,
      level: this.#level,
    });
    stream.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(chunk);
      this.#size += chunk.length;
    });
    // Errors also reach the flush callback, which reports them.
    stream.on("error", () => {});
    return stream;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stream?.close();
    this.#stream = null;
    this.#reject?.(closedError());
  }
}

/** The message being inflated. */
interface InflateJob {
  text: boolean;
  chunks: Uint8Array[];
  size: number;
  done: boolean;
  resolve: (message: Message) => void;
  reject: (error: unknown) => void;
}

class Inflater {
  #windowBits: number;
  #noContextTakeover: boolean;
  #maxSize: number;
  #stream: zlib.InflateRaw | null = null;
  #job: InflateJob | null = null;
  /** Whether the current stream reached a final (BFINAL) block. */
  #ended = false;
  /** Inflated text, checked as it comes out and decoded in large pieces. */
  #utf8 = new Utf8Text();
  #closed = false;

  constructor(windowBits: number, noContextTakeover: boolean, maxSize: number) {
    this.#windowBits = windowBits;
    this.#noContextTakeover = noContextTakeover;
    this.#maxSize = maxSize;
  }

  inflate(text: boolean, payload: Uint8Array): Promise<Message> {
    if (this.#closed) return Promise.reject(closedError());
    if (this.#stream !== null && this.#ended) {
      // The previous message ended the DEFLATE stream: start a new one.
      this.#stream.close();
      this.#stream = null;
    }
    const stream = this.#stream ??= this.#open();
    return new Promise((resolve, reject) => {
      const job: InflateJob = {
        text,
        chunks: [],
        size: 0,
        done: false,
        resolve,
        reject,
      };
      this.#job = job;
      stream.write(payload);
      stream.write(TRAILER);
      stream.flush(
        zlib.constants.Z_SYNC_FLUSH,
        (error?: Error | null) => this.#finish(job, error),
      );
    });
  }

  #open(): zlib.InflateRaw {
    const stream = zlib.createInflateRaw({ windowBits: this.#windowBits });
    this.#ended = false;
    stream.on("data", (chunk: Uint8Array) => this.#onData(chunk));
    // RFC 7692 §7.2.3.3 lets a sender end a message with a BFINAL block
    // (then one 00 byte). zlib then ends the stream and ignores what
    // follows, so the next message needs a new one, without the window.
    stream.on("end", () => {
      if (this.#stream === stream) this.#ended = true;
    });
    // Corrupt data also reaches the flush callback, which reports it.
    stream.on("error", () => {});
    return stream;
  }

  /** Takes inflated output as it comes: counted, and text checked at once. */
  #onData(chunk: Uint8Array): void {
    const job = this.#job;
    if (job === null || job.done) return;
    job.size += chunk.length;
    if (job.size > this.#maxSize) {
      // A decompression bomb stops here: destroying the stream stops zlib
      // before it inflates the rest of its input.
      this.#fail(
        job,
        new WebSocketError("Message too big", {
          closeCode: CloseCode.MessageTooBig,
          reason: "Message too big",
        }),
      );
      return;
    }
    if (job.text) {
      if (!this.#utf8.push(chunk)) this.#fail(job, invalidUtf8());
    } else {
      job.chunks.push(chunk);
    }
  }

  #finish(job: InflateJob, error?: Error | null): void {
    if (job.done) return;
    if (this.#closed) return this.#fail(job, closedError());
    // Corrupt data is 1007, data inconsistent with the message type (RFC
    // 6455 §7.4.1), as ws answers it.
    if (error) {
      return this.#fail(
        job,
        new WebSocketError("Invalid compressed data", {
          closeCode: CloseCode.InvalidPayload,
          reason: "Invalid compressed data",
        }),
      );
    }
    let message: Message;
    if (job.text) {
      // A sequence cut off at the end of the message is invalid too.
      const text = this.#utf8.end();
      if (text === null) return this.#fail(job, invalidUtf8());
      message = text;
    } else {
      message = concat(job.chunks, job.size);
    }
    job.done = true;
    this.#job = null;
    if (this.#noContextTakeover && !this.#ended) this.#stream!.reset();
    job.resolve(message);
  }

  /** Ends a job in error; the stream is dropped, as the connection fails. */
  #fail(job: InflateJob, error: unknown): void {
    job.done = true;
    this.#utf8.reset();
    this.#job = null;
    this.#stream?.destroy();
    this.#stream = null;
    job.reject(error);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const job = this.#job;
    if (job !== null) this.#fail(job, closedError());
    this.#stream?.close();
    this.#stream = null;
  }
}

function invalidUtf8(): WebSocketError {
  return new WebSocketError("Invalid UTF-8 in text message", {
    closeCode: CloseCode.InvalidPayload,
    reason: "Invalid UTF-8",
  });
}
