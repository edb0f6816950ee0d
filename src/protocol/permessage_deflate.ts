// permessage-deflate negotiation (RFC 7692 §5, §7.1), with no I/O: the
// options users give, the server's answer to an offer, the client's offer
// and its check of the answer.

import { parseExtensions } from "./_extensions.ts";

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
export interface DeflateParams {
  serverNoContextTakeover: boolean;
  clientNoContextTakeover: boolean;
  /** 8 to 15; 15 when the parameter was left out. */
  serverMaxWindowBits: number;
  /** 8 to 15; 15 when the parameter was left out. */
  clientMaxWindowBits: number;
}
/** The parameters of one permessage-deflate offer or response. */
interface Offer {
  serverNoContextTakeover: boolean;
  clientNoContextTakeover: boolean;
  serverMaxWindowBits?: number;
  /** `true` when the parameter came without a value. */
  clientMaxWindowBits?: number | true;
}
const NAME = "permessage-deflate";
/** The default {@linkcode PerMessageDeflateOptions.threshold}. */
export const DEFAULT_THRESHOLD = 1024;
/** RFC 7692 §7.1.2: a decimal integer from 8 to 15, without leading zeros. */
const WINDOW_BITS = /^(?:[89]|1[0-5])$/;

/**
 * Reads the parameters of a permessage-deflate offer or response (RFC 7692
 * §7.1): `null` for an unknown parameter, a repeated one, a value where none
 * belongs, or a window size that is not 8 to 15.
 */
function readParams(params: [string, string | true][]): Offer | null {
  const offer: Offer = {
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
export function negotiateServer(
  header: string | null,
  options: PerMessageDeflateOptions,
): { response: string; params: DeflateParams } | null {
  if (!header) return null;
  for (const extension of parseExtensions(header)) {
    if (extension === null || extension.name !== NAME) continue;
    const offer = readParams(extension.params);
    if (offer === null) continue;
    const params = acceptOffer(offer, options);
    if (params !== null) return params;
  }
  return null;
}

function acceptOffer(
  offer: Offer,
  options: PerMessageDeflateOptions,
): { response: string; params: DeflateParams } | null {
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
export function clientOffer(options: PerMessageDeflateOptions): string {
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
export function acceptResponse(
  header: string,
  options: PerMessageDeflateOptions,
): DeflateParams | null {
  const extensions = parseExtensions(header);
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
  const response = readParams(extension.params);
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
export function checkOptions(
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

/** The negotiated extension of one connection: parameters and local options. */
export interface DeflateSettings {
  params: DeflateParams;
  options: PerMessageDeflateOptions;
}
