import zlib from "node:zlib";
import { _concat } from "./_bytes.ts";
import type { Message } from "./message_assembler.ts";
import { WebSocketError } from "./websocket_error.ts";

/**
 * Settings of the permessage-deflate extension (RFC 7692), for the
 * `perMessageDeflate` option of {@linkcode serve} and {@linkcode connect}.
 *
 * A server applies the `...NoContextTakeover` and `...MaxWindowBits`
 * settings to each client's offer as far as RFC 7692 §7.1 lets it; a client
 * puts them in its offer. Window sizes are powers of two: 9 means 512 bytes,
 * 15 means 32 KiB. The value 8 is not supported, because zlib cannot deflate
 * with a 256-byte window.
 *
 * Memory: each connection that compresses keeps a zlib compressor, about
 * 230 KiB (with 15-bit windows; about 160 KiB with 9-bit ones), created at
 * its first compressed message out, and a decompressor, about 40 KiB,
 * created at its first compressed message in (measured on Deno 2.9 as the
 * server's RSS per connection). A connection that never compresses costs
 * nothing more.
 *
 * @example A server that compresses messages of 4 KiB and more, keeping no
 * context between messages on either side
 * ```ts ignore
 * import { serve } from "@scope/ws";
 *
 * serve({
 *   port: 8080,
 *   perMessageDeflate: {
 *     threshold: 4096,
 *     serverNoContextTakeover: true,
 *     clientNoContextTakeover: true,
 *   },
 * }, (socket) => socket.readable.pipeTo(socket.writable));
 * ```
 */
export interface PerMessageDeflateOptions {
  /**
   * Messages smaller than this, in bytes (UTF-8 bytes for text), are sent
   * uncompressed: for small messages the compressed frame saves little and
   * costs time. `Infinity` compresses nothing but still accepts compressed
   * messages. Default 1,024.
   */
  threshold?: number;
  /**
   * The zlib compression level, from 0 (none) to 9 (smallest), or -1 for
   * zlib's default (6). Default -1.
   */
  level?: number;
  /**
   * Start every message the server sends from an empty window
   * (`server_no_context_takeover`): less compression, but no state to keep
   * between messages. Default `false`.
   */
  serverNoContextTakeover?: boolean;
  /**
   * Have the client start every message from an empty window
   * (`client_no_context_takeover`). Default `false`.
   */
  clientNoContextTakeover?: boolean;
  /**
   * The largest window the server compresses with, 9 to 15
   * (`server_max_window_bits`). Default 15.
   */
  serverMaxWindowBits?: number;
  /**
   * The largest window the client compresses with, 9 to 15
   * (`client_max_window_bits`); a server can only ask it of a client that
   * offers `client_max_window_bits`, as browsers do. Default 15.
   */
  clientMaxWindowBits?: number;
}

/** The outcome of a permessage-deflate negotiation (RFC 7692 §7.1). */
export interface _DeflateParams {
  serverNoContextTakeover: boolean;
  clientNoContextTakeover: boolean;
  /** 8 to 15; 15 when the parameter was left out. */
  serverMaxWindowBits: number;
  /** 8 to 15; 15 when the parameter was left out. */
  clientMaxWindowBits: number;
}

/** The parameters of one permessage-deflate offer or response. */
interface _Offer {
  serverNoContextTakeover: boolean;
  clientNoContextTakeover: boolean;
  serverMaxWindowBits?: number;
  /** `true` when the parameter came without a value. */
  clientMaxWindowBits?: number | true;
}

/** One element of a `Sec-WebSocket-Extensions` list (RFC 6455 §9.1). */
export interface _Extension {
  /** The extension token, lower-cased. */
  name: string;
  /** The parameters in order: names lower-cased, `true` for no value. */
  params: [string, string | true][];
}

const NAME = "permessage-deflate";
const DEFAULT_THRESHOLD = 1024;
/** RFC 9110 §5.6.2 `tchar`, what tokens are made of. */
const TOKEN_CHAR = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]$/;
/** RFC 7692 §7.1.2: a decimal integer from 8 to 15, without leading zeros. */
const WINDOW_BITS = /^(?:[89]|1[0-5])$/;

// --- Negotiation (sans-I/O) -------------------------------------------------

/**
 * Parses a `Sec-WebSocket-Extensions` value (repeated headers joined with
 * commas, as `Headers.get` does) into its elements (RFC 6455 §9.1:
 * `extension-token *( ";" extension-param )`, a parameter value being a
 * token or a quoted-string). A malformed element gives `null` in its place,
 * so that it can be declined without losing the others.
 */
export function _parseExtensions(value: string): (_Extension | null)[] {
  const out: (_Extension | null)[] = [];
  const length = value.length;
  let pos = 0;
  const skipSpace = () => {
    while (pos < length && (value[pos] === " " || value[pos] === "\t")) pos++;
  };
  const token = (): string => {
    const start = pos;
    while (pos < length && TOKEN_CHAR.test(value[pos])) pos++;
    return value.slice(start, pos);
  };
  const quoted = (): string | null => {
    let text = "";
    for (pos++; pos < length; pos++) {
      const char = value[pos];
      if (char === '"') {
        pos++;
        return text;
      }
      if (char === "\\") pos++;
      if (pos < length) text += value[pos];
    }
    return null;
  };
  const element = (): _Extension | null => {
    const name = token();
    if (name === "") return null;
    const params: [string, string | true][] = [];
    skipSpace();
    while (value[pos] === ";") {
      pos++;
      skipSpace();
      const key = token();
      if (key === "") return null;
      skipSpace();
      let param: string | true = true;
      if (value[pos] === "=") {
        pos++;
        skipSpace();
        const text = value[pos] === '"' ? quoted() : token();
        if (text === null || text === "") return null;
        param = text;
        skipSpace();
      }
      params.push([key.toLowerCase(), param]);
    }
    if (pos < length && value[pos] !== ",") return null;
    return { name: name.toLowerCase(), params };
  };
  // Moves past a malformed element: to the next comma outside quotes.
  const skipElement = () => {
    let inQuotes = false;
    for (; pos < length; pos++) {
      const char = value[pos];
      if (inQuotes) {
        if (char === "\\") pos++;
        else if (char === '"') inQuotes = false;
      } else if (char === '"') {
        inQuotes = true;
      } else if (char === ",") {
        break;
      }
    }
  };
  while (pos < length) {
    skipSpace();
    // Empty list elements are allowed and ignored (RFC 9110 §5.6.1).
    if (value[pos] === ",") {
      pos++;
      continue;
    }
    if (pos >= length) break;
    const parsed = element();
    if (parsed === null) skipElement();
    out.push(parsed);
    // Past the comma that ends the element.
    pos++;
  }
  return out;
}

/**
 * Reads the parameters of a permessage-deflate offer or response (RFC 7692
 * §7.1): `null` for an unknown parameter, a repeated one, a value where none
 * belongs, or a window size that is not 8 to 15.
 */
function _readParams(params: [string, string | true][]): _Offer | null {
  const offer: _Offer = {
    serverNoContextTakeover: false,
    clientNoContextTakeover: false,
  };
  const seen = new Set<string>();
  for (const [name, value] of params) {
    if (seen.has(name)) return null;
    seen.add(name);
    switch (name) {
      case "server_no_context_takeover":
      case "client_no_context_takeover":
        if (value !== true) return null;
        if (name === "server_no_context_takeover") {
          offer.serverNoContextTakeover = true;
        } else {
          offer.clientNoContextTakeover = true;
        }
        break;
      case "server_max_window_bits":
        if (value === true || !WINDOW_BITS.test(value)) return null;
        offer.serverMaxWindowBits = Number(value);
        break;
      case "client_max_window_bits":
        if (value !== true && !WINDOW_BITS.test(value)) return null;
        offer.clientMaxWindowBits = value === true ? true : Number(value);
        break;
      default:
        return null;
    }
  }
  return offer;
}

/**
 * The server's side of the negotiation (RFC 7692 §5, §7.1): it takes the
 * client's `Sec-WebSocket-Extensions` value and accepts the first
 * permessage-deflate offer it can honor, returning the response value and
 * the negotiated parameters, or `null` when it declines every offer.
 * Malformed offers are declined, not failed (§5.1 lets the server decline).
 */
export function _negotiateServer(
  header: string | null,
  options: PerMessageDeflateOptions,
): { response: string; params: _DeflateParams } | null {
  if (!header) return null;
  for (const extension of _parseExtensions(header)) {
    if (extension === null || extension.name !== NAME) continue;
    const offer = _readParams(extension.params);
    if (offer === null) continue;
    const params = _acceptOffer(offer, options);
    if (params !== null) return params;
  }
  return null;
}

function _acceptOffer(
  offer: _Offer,
  options: PerMessageDeflateOptions,
): { response: string; params: _DeflateParams } | null {
  let response = NAME;
  const serverNoContextTakeover = offer.serverNoContextTakeover ||
    (options.serverNoContextTakeover ?? false);
  const clientNoContextTakeover = options.clientNoContextTakeover ?? false;
  if (serverNoContextTakeover) response += "; server_no_context_takeover";
  if (clientNoContextTakeover) response += "; client_no_context_takeover";

  // §7.1.2.1: the server's window may only shrink below what the client
  // asked. An 8-bit window cannot be honored, since zlib's smallest raw
  // deflate window is 9 bits, and answering 9 would break the client's
  // limit: decline that offer, so that a later one may be accepted.
  let serverMaxWindowBits = options.serverMaxWindowBits ?? 15;
  if (offer.serverMaxWindowBits !== undefined) {
    if (offer.serverMaxWindowBits < 9) return null;
    serverMaxWindowBits = Math.min(
      serverMaxWindowBits,
      offer.serverMaxWindowBits,
    );
    response += `; server_max_window_bits=${serverMaxWindowBits}`;
  } else if (serverMaxWindowBits < 15) {
    response += `; server_max_window_bits=${serverMaxWindowBits}`;
  }

  // §7.1.2.2: the answer may carry client_max_window_bits only when the
  // offer had it; a value in the offer is a limit the client keeps anyway.
  let clientMaxWindowBits = 15;
  const offered = offer.clientMaxWindowBits;
  if (offered !== undefined) {
    const limit = offered === true ? 15 : offered;
    if (options.clientMaxWindowBits !== undefined) {
      clientMaxWindowBits = Math.min(limit, options.clientMaxWindowBits);
      response += `; client_max_window_bits=${clientMaxWindowBits}`;
    } else if (offered !== true) {
      clientMaxWindowBits = offered;
      response += `; client_max_window_bits=${clientMaxWindowBits}`;
    }
  }
  return {
    response,
    params: {
      serverNoContextTakeover,
      clientNoContextTakeover,
      serverMaxWindowBits,
      clientMaxWindowBits,
    },
  };
}

/**
 * The client's offer (RFC 7692 §7.1): the settings it asks of the server
 * and declares of itself, and `client_max_window_bits` always, so that the
 * server may choose the client's window, as browsers offer.
 */
export function _clientOffer(options: PerMessageDeflateOptions): string {
  let offer = NAME;
  if (options.serverNoContextTakeover) offer += "; server_no_context_takeover";
  if (options.clientNoContextTakeover) offer += "; client_no_context_takeover";
  if (options.serverMaxWindowBits !== undefined) {
    offer += `; server_max_window_bits=${options.serverMaxWindowBits}`;
  }
  offer += options.clientMaxWindowBits !== undefined
    ? `; client_max_window_bits=${options.clientMaxWindowBits}`
    : "; client_max_window_bits";
  return offer;
}

/**
 * Checks the server's `Sec-WebSocket-Extensions` answer against the
 * client's offer (RFC 6455 §9.1, RFC 7692 §7.1) and returns the negotiated
 * parameters, `null` when the server declined; throws a `TypeError` saying
 * what is wrong with an answer the client must fail the connection for.
 */
export function _acceptResponse(
  header: string,
  options: PerMessageDeflateOptions,
): _DeflateParams | null {
  const extensions = _parseExtensions(header);
  if (extensions.length === 0) return null;
  const [extension] = extensions;
  if (extension === null) {
    throw new TypeError(`Malformed Sec-WebSocket-Extensions "${header}"`);
  }
  if (extension.name !== NAME) {
    throw new TypeError(
      `The server chose the extension "${extension.name}", which the client did not offer`,
    );
  }
  if (extensions.length > 1) {
    throw new TypeError(
      `The server chose more than one extension: "${header}"`,
    );
  }
  const response = _readParams(extension.params);
  if (response === null) {
    throw new TypeError(
      `Invalid permessage-deflate parameters in "${header}"`,
    );
  }
  // §7.1.2.1: the server may shrink the window it was asked for, not grow it.
  const askedServer = options.serverMaxWindowBits;
  const serverBits = response.serverMaxWindowBits;
  if (
    askedServer !== undefined && serverBits !== undefined &&
    serverBits > askedServer
  ) {
    throw new TypeError(
      `The server chose server_max_window_bits=${serverBits}, above the ${askedServer} offered`,
    );
  }
  // §7.1.2.2: client_max_window_bits needs a value, and was offered always;
  // it may not exceed the value offered.
  const clientBits = response.clientMaxWindowBits;
  if (clientBits === true) {
    throw new TypeError(
      "The server answered client_max_window_bits without a value",
    );
  }
  const offeredClient = options.clientMaxWindowBits ?? 15;
  if (clientBits !== undefined && clientBits > offeredClient) {
    throw new TypeError(
      `The server chose client_max_window_bits=${clientBits}, above the ${offeredClient} offered`,
    );
  }
  return {
    // §7.1.1.1: the server may announce this even when not asked.
    serverNoContextTakeover: response.serverNoContextTakeover,
    // The client keeps its own declaration even if the server leaves it out.
    clientNoContextTakeover: response.clientNoContextTakeover ||
      (options.clientNoContextTakeover ?? false),
    serverMaxWindowBits: serverBits ?? 15,
    clientMaxWindowBits: clientBits ?? offeredClient,
  };
}

/**
 * Validates the `perMessageDeflate` option of `serve` or `connect`: `false`
 * or absent turn the extension off (`null`), `true` means the defaults.
 * Throws a `TypeError` or `RangeError` for a bad setting.
 */
export function _checkOptions(
  option: boolean | PerMessageDeflateOptions | undefined,
): PerMessageDeflateOptions | null {
  if (option === undefined || option === false) return null;
  if (option === true) return {};
  if (typeof option !== "object" || option === null) {
    throw new TypeError(
      "The perMessageDeflate option must be a boolean or an object",
    );
  }
  const { threshold, level } = option;
  if (threshold !== undefined && !(threshold >= 0)) {
    throw new RangeError(
      `The permessage-deflate threshold must be 0 or more, got ${threshold}`,
    );
  }
  if (
    level !== undefined &&
    !(Number.isInteger(level) && level >= -1 && level <= 9)
  ) {
    throw new RangeError(
      `The permessage-deflate level must be an integer from -1 to 9, got ${level}`,
    );
  }
  for (const name of ["serverMaxWindowBits", "clientMaxWindowBits"] as const) {
    const bits = option[name];
    if (
      bits !== undefined && !(Number.isInteger(bits) && bits >= 9 && bits <= 15)
    ) {
      throw new RangeError(
        `The permessage-deflate ${name} must be an integer from 9 to 15, got ${bits}`,
      );
    }
  }
  return option;
}

// --- Compression ------------------------------------------------------------

/** What RFC 7692 §7.2.1 strips from each message and §7.2.2 appends back. */
const TRAILER = new Uint8Array([0x00, 0x00, 0xff, 0xff]);

/** The negotiated codec of one connection: what a `Protocol` uses. */
export interface _DeflateSettings {
  params: _DeflateParams;
  options: PerMessageDeflateOptions;
}

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
export class _PerMessageDeflate {
  /** Outbound messages of at least this many bytes are compressed. */
  readonly threshold: number;
  #deflater: _Deflater | null;
  #inflater: _Inflater;

  /**
   * @param role Which side this connection is.
   * @param settings The negotiated parameters and local options.
   * @param maxMessageSize The largest inflated message accepted.
   */
  constructor(
    role: "server" | "client",
    settings: _DeflateSettings,
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
    // A client told to use an 8-bit window, which zlib cannot deflate with,
    // sends every message uncompressed: RFC 7692 lets a sender compress
    // none of its messages.
    this.#deflater = ownBits < 9 ? null : new _Deflater(
      ownBits,
      server ? params.serverNoContextTakeover : params.clientNoContextTakeover,
      options.level ?? zlib.constants.Z_DEFAULT_COMPRESSION,
    );
    this.threshold = this.#deflater === null
      ? Infinity
      : options.threshold ?? DEFAULT_THRESHOLD;
    // A decompressor window at least as big as the peer's is all it takes;
    // 9 bits at least, for peers whose zlib turns a requested 8 into 9.
    this.#inflater = new _Inflater(
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
   * Decompresses one message from its payload pieces, validating text as
   * UTF-8 as it comes out and refusing to inflate past the size limit
   * (rejects with a {@linkcode WebSocketError}: 1007 for corrupt data or
   * invalid UTF-8, 1009 past the limit). One call at a time.
   */
  inflate(text: boolean, pieces: Uint8Array[]): Promise<Message> {
    return this.#inflater.inflate(text, pieces);
  }

  /** Frees both zlib streams; a pending call then rejects. */
  close(): void {
    this.#deflater?.close();
    this.#inflater.close();
  }
}

/** An error for a compressor or decompressor used after `close()`. */
function _closedError(): WebSocketError {
  return new WebSocketError("The connection is closed", { closeCode: 1006 });
}

class _Deflater {
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
    if (this.#closed) return Promise.reject(_closedError());
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
        if (this.#closed) return reject(_closedError());
        if (error) return reject(error);
        const out = _concat(chunks, size);
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
    this.#reject?.(_closedError());
  }
}

/** The message being inflated. */
interface _InflateJob {
  text: boolean;
  chunks: Uint8Array[];
  size: number;
  string: string;
  done: boolean;
  resolve: (message: Message) => void;
  reject: (error: unknown) => void;
}

class _Inflater {
  #windowBits: number;
  #noContextTakeover: boolean;
  #maxSize: number;
  #stream: zlib.InflateRaw | null = null;
  #job: _InflateJob | null = null;
  /** Whether the current stream reached a final (BFINAL) block. */
  #ended = false;
  #utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  #closed = false;

  constructor(windowBits: number, noContextTakeover: boolean, maxSize: number) {
    this.#windowBits = windowBits;
    this.#noContextTakeover = noContextTakeover;
    this.#maxSize = maxSize;
  }

  inflate(text: boolean, pieces: Uint8Array[]): Promise<Message> {
    if (this.#closed) return Promise.reject(_closedError());
    if (this.#stream !== null && this.#ended) {
      // The previous message ended the DEFLATE stream: start a new one.
      this.#stream.close();
      this.#stream = null;
    }
    const stream = this.#stream ??= this.#open();
    return new Promise((resolve, reject) => {
      const job: _InflateJob = {
        text,
        chunks: [],
        size: 0,
        string: "",
        done: false,
        resolve,
        reject,
      };
      this.#job = job;
      for (const piece of pieces) stream.write(piece);
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
          closeCode: 1009,
          reason: "Message too big",
        }),
      );
      return;
    }
    if (job.text) {
      try {
        job.string += this.#utf8.decode(chunk, { stream: true });
      } catch {
        this.#fail(job, _invalidUtf8());
      }
    } else {
      job.chunks.push(chunk);
    }
  }

  #finish(job: _InflateJob, error?: Error | null): void {
    if (job.done) return;
    if (this.#closed) return this.#fail(job, _closedError());
    // Corrupt data is 1007, data inconsistent with the message type (RFC
    // 6455 §7.4.1), as ws answers it.
    if (error) {
      return this.#fail(
        job,
        new WebSocketError("Invalid compressed data", {
          closeCode: 1007,
          reason: "Invalid compressed data",
        }),
      );
    }
    let message: Message;
    if (job.text) {
      try {
        // Flushing throws on a sequence cut off at the end of the message.
        message = job.string + this.#utf8.decode();
      } catch {
        return this.#fail(job, _invalidUtf8());
      }
    } else {
      message = _concat(job.chunks, job.size);
    }
    job.done = true;
    this.#job = null;
    if (this.#noContextTakeover && !this.#ended) this.#stream!.reset();
    job.resolve(message);
  }

  /** Ends a job in error; the stream is dropped, as the connection fails. */
  #fail(job: _InflateJob, error: unknown): void {
    job.done = true;
    this.#job = null;
    this.#stream?.destroy();
    this.#stream = null;
    job.reject(error);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const job = this.#job;
    if (job !== null) this.#fail(job, _closedError());
    this.#stream?.close();
    this.#stream = null;
  }
}

function _invalidUtf8(): WebSocketError {
  return new WebSocketError("Invalid UTF-8 in text message", {
    closeCode: 1007,
    reason: "Invalid UTF-8",
  });
}
