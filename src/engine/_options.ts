// The options that `serve()`, `connect()` and `upgradeWebSocket()` share:
// their defaults, and one check for each kind of value, which refuses what
// is invalid with a `TypeError` (not a number, not one of the choices) or a
// `RangeError` (out of range, or not a whole number where one is needed)
// naming the option. Each entry point resolves its options once, through
// these, into the settings its parts then use as they are.

import { DEFAULT_MAX_MESSAGE_SIZE } from "../protocol/message_assembler.ts";
import {
  DEFAULT_SOCKET_OPTIONS,
  type SocketOptions,
} from "../socket/socket.ts";

/** The largest HTTP head accepted by default, in bytes. */
const DEFAULT_MAX_HEAD_SIZE = 16 * 1024;
/** How long the opening handshake may take by default, in ms. */
const DEFAULT_HANDSHAKE_TIMEOUT = 10_000;
/** How long the closing handshake and TCP close may take by default, in ms. */
const DEFAULT_CLOSE_TIMEOUT = 5_000;
/** Ping a peer silent this long (ms): the default of server and client. */
const DEFAULT_PING_INTERVAL = 30_000;
/** Close a peer silent this long (ms) with 1001: the default of both. */
const DEFAULT_IDLE_TIMEOUT = 60_000;

/**
 * The longest timeout, in ms: a timer asked to wait longer than 2^31 - 1 ms
 * fires at once.
 */
export const MAX_TIMEOUT = 2 ** 31 - 1;

/** The option's value as a number, or a `TypeError` naming the option. */
function number(name: string, value: unknown): number {
  if (typeof value !== "number") {
    throw new TypeError(
      `The ${name} option must be a number, got ${typeof value}`,
    );
  }
  return value;
}

/**
 * A size or a count: a whole number of `min` or more, or `Infinity` for no
 * limit; `fallback` when the option is not given.
 *
 * @example
 * ```ts ignore
 * integerOption("maxQueued", options.maxQueued, 1024 * 1024); // 1 or more
 * ```
 */
export function integerOption<F extends number | undefined>(
  name: string,
  value: unknown,
  fallback: F,
  min = 1,
): number | F {
  if (value === undefined) return fallback;
  const limit = number(name, value);
  if (!(limit >= min && (Number.isInteger(limit) || limit === Infinity))) {
    throw new RangeError(
      `The ${name} option must be a whole number of ${min} or more (Infinity: no limit), got ${limit}`,
    );
  }
  return limit;
}

/**
 * A timeout in ms, up to {@linkcode MAX_TIMEOUT}: more than 0, or 0 too
 * when `off` (the option then turns something off); `fallback` when the
 * option is not given.
 *
 * @example
 * ```ts ignore
 * timeoutOption("idleTimeout", options.idleTimeout, 60_000, "off");
 * ```
 */
export function timeoutOption(
  name: string,
  value: unknown,
  fallback: number,
  zero: "off" | "refused",
): number {
  if (value === undefined) return fallback;
  const ms = number(name, value);
  const off = zero === "off";
  if (!(ms >= 0 && ms <= MAX_TIMEOUT && (off || ms > 0))) {
    throw new RangeError(
      `The ${name} option must be a number of ms ${
        off ? "from 0 (off)" : "more than 0"
      } up to ${MAX_TIMEOUT}, got ${ms}`,
    );
  }
  return ms;
}

/**
 * One of `choices`, or a `TypeError` naming the option; `fallback` when the
 * option is not given.
 *
 * @example
 * ```ts ignore
 * choiceOption("backpressure", options.backpressure, ["close", "drop"], "close");
 * ```
 */
export function choiceOption<T extends string>(
  name: string,
  value: unknown,
  choices: readonly T[],
  fallback: T,
): T {
  if (value === undefined) return fallback;
  if (!choices.includes(value as T)) {
    throw new TypeError(
      `The ${name} option must be ${
        choices.map((choice) => `"${choice}"`).join(" or ")
      }, got ${typeof value === "string" ? `"${value}"` : typeof value}`,
    );
  }
  return value as T;
}

/** The limits every entry point has, checked, with their defaults. */
export interface SocketLimits {
  /** The largest message, in bytes, after reassembly (and inflating). */
  maxMessageSize: number;
  /** How long the closing handshake may take, in ms. */
  closeTimeout: number;
  /** How long the peer may send nothing, in ms; 0: no limit. */
  idleTimeout: number;
}

/**
 * Resolves the limits every entry point has: `maxMessageSize`,
 * `closeTimeout` and `idleTimeout`.
 *
 * @example
 * ```ts ignore
 * const { maxMessageSize } = resolveSocketLimits({ maxMessageSize: 1024 });
 * ```
 */
export function resolveSocketLimits(options: {
  maxMessageSize?: number;
  closeTimeout?: number;
  idleTimeout?: number;
}): SocketLimits {
  return {
    maxMessageSize: integerOption(
      "maxMessageSize",
      options.maxMessageSize,
      DEFAULT_MAX_MESSAGE_SIZE,
    ),
    closeTimeout: timeoutOption(
      "closeTimeout",
      options.closeTimeout,
      DEFAULT_CLOSE_TIMEOUT,
      "refused",
    ),
    idleTimeout: timeoutOption(
      "idleTimeout",
      options.idleTimeout,
      DEFAULT_IDLE_TIMEOUT,
      "off",
    ),
  };
}

/** The limits of a WebSocket over TCP (`serve()`, `connect()`), checked. */
export interface ConnectionLimits extends SocketLimits {
  /** The most frames one message may have; undefined: no limit. */
  maxFragments: number | undefined;
  /** How long a peer stays silent before it is pinged, in ms; 0: never. */
  pingInterval: number;
  /** How long the opening handshake may take, in ms. */
  handshakeTimeout: number;
  /** The largest HTTP head, in bytes. */
  maxHeadSize: number;
}

/**
 * Resolves the limits of a WebSocket over TCP: those of
 * {@linkcode resolveSocketLimits}, and `maxFragments`, `pingInterval`,
 * `handshakeTimeout` and `maxHeadSize`.
 *
 * @example
 * ```ts ignore
 * const limits = resolveConnectionLimits(options); // serve()'s or connect()'s
 * ```
 */
export function resolveConnectionLimits(options: {
  maxMessageSize?: number;
  closeTimeout?: number;
  idleTimeout?: number;
  maxFragments?: number;
  pingInterval?: number;
  handshakeTimeout?: number;
  maxHeadSize?: number;
}): ConnectionLimits {
  return {
    ...resolveSocketLimits(options),
    maxFragments: integerOption(
      "maxFragments",
      options.maxFragments,
      undefined,
    ),
    pingInterval: timeoutOption(
      "pingInterval",
      options.pingInterval,
      DEFAULT_PING_INTERVAL,
      "off",
    ),
    handshakeTimeout: timeoutOption(
      "handshakeTimeout",
      options.handshakeTimeout,
      DEFAULT_HANDSHAKE_TIMEOUT,
      "refused",
    ),
    maxHeadSize: integerOption(
      "maxHeadSize",
      options.maxHeadSize,
      DEFAULT_MAX_HEAD_SIZE,
    ),
  };
}

/**
 * Resolves what `send()` and publications do past a socket's limit
 * (`maxBackpressure`, `backpressure`), for `serve()` and
 * `upgradeWebSocket()`.
 *
 * @example
 * ```ts ignore
 * resolveSendPolicy({ backpressure: "drop" }); // 1 MiB, "drop"
 * ```
 */
export function resolveSendPolicy(
  options: Partial<SocketOptions>,
): SocketOptions {
  return {
    maxBackpressure: integerOption(
      "maxBackpressure",
      options.maxBackpressure,
      DEFAULT_SOCKET_OPTIONS.maxBackpressure,
    ),
    backpressure: choiceOption(
      "backpressure",
      options.backpressure,
      ["close", "drop"],
      DEFAULT_SOCKET_OPTIONS.backpressure,
    ),
  };
}
